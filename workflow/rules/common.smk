# Config validation and the few helpers the rules share.
import hashlib
import json
import re
import shlex
from pathlib import Path

from tomlab.bigtom.conditions import MAIN_TASK, steering_pairs  # the paper's probing task; its directions are also tried on the others
from tomlab.panel import bench_model, experiment_panel, is_served, model_panel, resolve_spec, run_models
from tomlab.schema import validate_config
from tomlab.schema import default as schema_default
from tomlab.team import AGENT_TYPES, LLM_TYPES


validate_config(config, workflow.configfiles)  # size, keys, model specs, integers; then the schema, with its defaults

if config["stories"]["source"] == "bigtom" and not config.get("bigtom_csv"):
    raise ValueError(
        "config key 'bigtom_csv' is required when stories.source is 'bigtom': "
        "pass it with --config bigtom_csv=PATH/bigtom.csv"
    )
if config.get("bigtom_csv") and not Path(config["bigtom_csv"]).is_file():
    raise ValueError(f"config key 'bigtom_csv': no such file: {config['bigtom_csv']}")

ENV = "../envs/tomlab.yaml"  # relative to the rule files
SITES = config["activations"]["sites"]
TASKS = config["probing"]["tasks"]
STEER = config["steering"]
if STEER["site"] not in SITES:
    raise ValueError(
        f"config key 'steering.site': {STEER['site']!r} is not among activations.sites {SITES}"
    )
# every direction kind some rule needs, in a stable order
DIRECTION_KINDS = list(
    dict.fromkeys(
        STEER["directions"]
        + STEER["sweep"]["directions"]
        + [STEER["mechanism"]["projection_direction"]]
        + STEER["free_text"]["directions"]
        + [config["stress"]["behaviour"]["direction"]]
    )
)
# (source task of the directions, task evaluated): each task on itself (Table 1), then the
# forward-belief directions on the other tasks (Table 2)
STEER_PAIRS = [f"{s}:{t}" for s, t in steering_pairs(TASKS)]
EVAL = config["evaluation"]
# None: the evaluation protocol's choice, which the command reads from the items
CHAT = {True: "--chat-template", False: "--no-chat-template", None: ""}[EVAL["chat_template"]]
SHARED_PREFIX = "--shared-prefix" if STEER["shared_prefix"] else "--no-shared-prefix"
COMPLETION_CACHE = "results/cache/completions"  # content-addressed; shared by the model rules
REPORT_DIR = Path(workflow.basedir) / "report"
REPORT_SOURCES = sorted(
    str(p) for p in REPORT_DIR.iterdir() if p.is_file() and not p.name.startswith(".")
)

# --- the panel of models ---------------------------------------------------------------------------
# Every model-dependent result lives under results/models/{model}/; the rest is made once.
PANEL = model_panel(config)  # name -> spec: `models:`, or `model:` alone as a panel of one
PROBE_MODELS = experiment_panel(config, "probing", PANEL)
EVAL_MODELS = experiment_panel(config, "evaluation", PANEL)
STEER_MODELS = experiment_panel(config, "steering", PANEL)
STRESS_MODELS = experiment_panel(config, "stress", PANEL)
# the benchmarks measure the panel's first model that is both probed and steered (none: no benchmark)
BENCH_MODEL = bench_model(config, PANEL)


# the team's and the debate's models (a role setting's model, else the experiment's panel), then every model
TEAM_SPECS, DEBATE_SPECS, ALL_SPECS = run_models(config, PANEL)


wildcard_constraints:
    model="|".join(re.escape(m) for m in ALL_SPECS),


def model_json(wildcards):
    return json.dumps(ALL_SPECS[wildcards.model], sort_keys=True)


def plays_local(specs):
    """Threads and GPUs of a job that plays these models: on a GPU (the largest request) a few cores
    (model.gpu_threads), so CPU rules overlap it; on a CPU every core; one core for a client waiting on a
    server."""
    local = [s for s in specs if s and not is_served(s)]
    if not local:
        return (1, 0)
    gpus = max(s.get("gpu", 0) for s in local)
    threads = max(s.get("gpu_threads", schema_default("model.gpu_threads")) for s in local)
    return (min(workflow.cores, threads), gpus) if gpus else (workflow.cores, 0)


def model_threads(wildcards):
    return plays_local([ALL_SPECS[wildcards.model]])[0]


def model_gpus(wildcards):
    return plays_local([ALL_SPECS[wildcards.model]])[1]


def prepared(*names):
    """The prepare_model outputs of those of ``names`` that are local panel models (served ones need none)."""
    return [expand(rules.prepare_model.output.info, model=n)[0] for n in dict.fromkeys(names)
            if n in ALL_SPECS and not is_served(ALL_SPECS[n])]


def model_config(name):
    """The config as one panel model sees it: `model` is that model, the team's and the debate's model too
    when it plays them; no panel lists (adding a model changes nothing of the others' jobs)."""
    out = {k: v for k, v in config.items() if k != "models"}
    out = {k: ({kk: vv for kk, vv in v.items() if kk != "panel"} if isinstance(v, dict) else v) for k, v in out.items()}
    out["model"] = ALL_SPECS[name]
    if name in TEAM_SPECS:
        out["team"] = {**out["team"], "model": TEAM_SPECS[name]}
    if name in DEBATE_SPECS:
        out["debate"] = {**out["debate"], "models": {**out["debate"]["models"], "default": DEBATE_SPECS[name]}}
    return json.dumps(out, sort_keys=True)


def slug(kind):
    """File- and command-line-safe name of a direction kind ("-oracle" -> "minus_oracle")."""
    return {"+": "plus_", "-": "minus_"}.get(kind[0], "") + kind.lstrip("+-")


def slugs(kinds):
    return " ".join(slug(k) for k in kinds)


def task_args(paths):
    """TASK=PATH command-line arguments, one path per task (in the order of TASKS)."""
    return " ".join(f"{t}={shlex.quote(str(p))}" for t, p in zip(TASKS, paths, strict=True))


def activations(task, site, model="{model}"):
    """One task's activations at one site of one model (extract_activations writes every site of a task at
    once); with the model left as a wildcard for a rule's static input."""
    return expand(rules.extract_activations.output.acts[SITES.index(site)], task=task, model=model)[0]


# --- the team game -------------------------------------------------------------------------
TEAM = config["team"]
TEAM_RULES = ("rules", "map", "bomb_phases", "colours", "agents", "max_rounds", "deadlock_rounds", "stall_rounds",
              "wrong_cutter", "points_per_phase")
TEAM_JSON = json.dumps({k: TEAM[k] for k in TEAM_RULES}, sort_keys=True)
TEAM_LLM = {**{k: v for k, v in TEAM["llm"].items() if k != "batch_size"}, "prompts": TEAM["prompts"]}
TEAM_AGENTS = TEAM["agent_types"]
LLM_AGENTS = LLM_TYPES
TEAM_LLM_AGENTS = [a for a in TEAM_AGENTS if a in LLM_AGENTS]
TEAM_OTHER_AGENTS = [a for a in TEAM_AGENTS if a not in LLM_AGENTS]  # no language model: played once
# an agent's own model (a panel name stays a name, so its prepared weights are an input)
TEAM_AGENT_NAMES = {a: s for a, s in TEAM["agent_models"].items() if isinstance(s, str)}
TEAM_AGENT_MODELS = {a: resolve_spec(s, PANEL, f"team.agent_models.{a}") for a, s in TEAM["agent_models"].items() if s}


def team_play_inputs(wildcards):
    """A MAPPO team needs its trained policies; the other kinds without a language model need nothing."""
    return {"policies": rules.team_train_mappo.output.policies} if wildcards.agent == "mappo" else {}


def team_play_args(wildcards, input):
    return f"--policies {shlex.quote(input.policies)}" if wildcards.agent == "mappo" else ""


def team_resources(wildcards):
    """(threads, GPUs) of an LLM team: every model its agents play counts."""
    return plays_local([ALL_SPECS[wildcards.model], *TEAM_AGENT_MODELS.values()])


def team_llm_models(wildcards):
    """An LLM team needs the prepared weights of every local panel model one of its agents plays."""
    names = [TEAM_AGENT_NAMES.get(a, wildcards.model) for a in TEAM["agents"] if a not in TEAM_AGENT_MODELS or a in TEAM_AGENT_NAMES]
    return prepared(*names)


# --- the debate ----------------------------------------------------------------------------------
DEBATE = config["debate"]
DEBATE_TASKS = DEBATE["tasks"]
DEBATE_METHODS = DEBATE["methods"]
DEBATE_ROLES = ("affirmative", "negative", "judge")


DEBATE_ROLE_SPECS = {r: resolve_spec(DEBATE["models"][r], PANEL, f"debate.models.{r}") for r in DEBATE_ROLES}


def debate_models_json(wildcards):
    """Every role's model for one debate model: its own spec, or the role's (a panel name resolved)."""
    return json.dumps({"default": DEBATE_SPECS[wildcards.model], **DEBATE_ROLE_SPECS}, sort_keys=True)


def debate_resources(wildcards):
    """(threads, GPUs) of a debate job: every model its roles play counts."""
    return plays_local([DEBATE_SPECS[wildcards.model], *DEBATE_ROLE_SPECS.values()])


def debate_prepared(wildcards):
    names = [wildcards.model] + [DEBATE["models"][r] for r in DEBATE_ROLES if isinstance(DEBATE["models"][r], str)]
    return prepared(*names)
DEBATE_SETTINGS = json.dumps(
    {k: v for k, v in DEBATE.items() if k not in ("tasks", "methods", "arithmetic", "translation", "models", "n_boot", "batch_size", "panel")},
    sort_keys=True,
)


def debate_task_args(wildcards):
    """Command-line arguments that build a debate task's items (from a file, or generated)."""
    if wildcards.task == "arithmetic":
        a = DEBATE["arithmetic"]
        if a["file"]:
            return f"--file {shlex.quote(a['file'])}"
        fam = f" --families {' '.join(a['families'])}" if a["families"] else ""
        return f"--n {a['n']} --seed {a['seed']}{fam}"
    t = DEBATE["translation"]
    out = f"--file {shlex.quote(t['file'])}" if t["file"] else ""
    return out + (f" --max-items {t['max_items']}" if t["max_items"] else "")


# --- the stress tests ---------------------------------------------------------------------------
STRESS = config["stress"]
PERTURBS = STRESS["perturbations"]
SHIFTS = PERTURBS + ["generated"]  # perturbed originals (doubt 3), then other stories (doubt 2)
SYMBOLIC = [f"names@{i}" for i in range(STRESS["behaviour"]["instantiations"])]  # GSM-Symbolic draws
# the names draws replace the names perturbation's own items in behaviour (with seed 0 they are the same)
BEHAVIOUR_SETS = [p for p in PERTURBS if p != "names" or not SYMBOLIC] + SYMBOLIC
STRESS_SITE = SITES[0]


def shift_raw(wildcards):
    if wildcards.shift in PERTURBS:
        return rules.stress_perturb.output.raw
    if wildcards.shift in SYMBOLIC:
        return expand(rules.stress_symbolic.output.raw, seed=wildcards.shift.removeprefix("names@"))[0]
    return rules.stress_generated.output.raw


def shift_pairing(wildcards):
    """A perturbation's samples are paired with the original validation samples they came from."""
    if wildcards.shift not in PERTURBS:
        return {}
    return {"origin": rules.stress_perturb.output.origin,
            "original": expand(rules.probe_samples.output.samples, task=MAIN_TASK)[0],
            "split": rules.stress_split.output.split}


def shift_pairing_args(wildcards, input):
    if wildcards.shift not in PERTURBS:
        return ""
    return (f"--origin {shlex.quote(input.origin)} --original-samples {shlex.quote(input.original)}"
            f" --split {shlex.quote(input.split)}")


def origin_of(shift):
    if shift in SYMBOLIC:
        return expand(rules.stress_symbolic.output.origin, seed=shift.removeprefix("names@"))[0]
    return expand(rules.stress_perturb.output.origin, shift=shift)[0]


# the names draws replace the names perturbation's own items in behaviour (with seed 0 they are the same)
BEHAVIOUR_SETS = [p for p in PERTURBS if p != "names" or not SYMBOLIC] + SYMBOLIC


# --- the report -----------------------------------------------------------------------------------
DEBATE_ARITHMETIC = "arithmetic" in DEBATE_TASKS
# Named report inputs whose list holds one path per site, task, agent type or method; the manifest
# keys them by it.
REPORT_KEYED = {
    "heads": SITES,
    "layers": SITES,
    "top": SITES,
    "probing_accuracy_figures": SITES,
    "probing_selectivity_figures": SITES,
    "lexical": TASKS,
    "team_transcripts": [a for a in TEAM_AGENTS if a in LLM_AGENTS],
    "debate_accuracy": DEBATE_TASKS,
    "debate_answers": [m for m in ("debate", "debate_forced") if m in DEBATE_METHODS],
}


def debate_arithmetic(pattern, method=None):
    """One output of the arithmetic debate (of one method); nothing when that task or method is not run."""
    if not DEBATE_ARITHMETIC or (method is not None and method not in DEBATE_METHODS):
        return []
    return expand(pattern, task="arithmetic", allow_missing=True, **({} if method is None else {"method": method}))[0]


def figures(output):
    """A plot's PNGs by output name without "_png" (plot_steering's sweep_png becomes "sweep")."""
    return {k.removesuffix("_png"): v for k, v in output.items() if k.endswith("_png")}


def for_model(value, model):
    """A report input (a path, a list or a mapping of them) with its {model} wildcard filled in."""
    if isinstance(value, dict):
        return {k: for_model(v, model) for k, v in value.items()}
    if isinstance(value, str):
        return expand(value, model=model)[0]
    return [for_model(v, model) for v in value]


def manifest_entries(named):
    """Named report inputs as manifest entries: the lists of REPORT_KEYED as mappings by their key; empty
    inputs (an experiment or task not run) left out."""
    out = {}
    for name, value in named.items():
        if not value and not isinstance(value, str):
            continue
        if name in REPORT_KEYED:
            out[name] = dict(zip(REPORT_KEYED[name], value, strict=True))
        else:
            out[name] = value if isinstance(value, (str, dict)) else list(value)
    return out


def flat(entries):
    """Every path of some manifest entries, for a rule's input."""
    paths = []
    for value in entries.values():
        paths += [value] if isinstance(value, str) else list(value.values()) if isinstance(value, dict) else list(value)
    return paths


def model_results(model):
    """Every result of one panel model the report shows, by the name its sections use (nothing of an
    experiment the model does not play)."""
    r = dict(setup=rules.setup_summary.output.setup)
    if model in PROBE_MODELS:
        r.update(
            heads=expand(rules.probe.output.heads, task=MAIN_TASK, site=SITES, allow_missing=True),
            layers=expand(rules.probe.output.layers, task=MAIN_TASK, site=SITES, allow_missing=True),
            top=expand(rules.probe.output.top, task=MAIN_TASK, site=SITES, allow_missing=True),
            probing_accuracy_figures=expand(rules.plot_probing.output.accuracy_png, task=MAIN_TASK, site=SITES, allow_missing=True),
            probing_selectivity_figures=expand(
                rules.plot_probing.output.selectivity_png, task=MAIN_TASK, site=SITES, allow_missing=True
            ),
        )
    if model in EVAL_MODELS or model in STEER_MODELS:
        r.update(baseline=rules.evaluate_baseline.output.table, baseline_scored=rules.evaluate_baseline.output.scored)
    if model in STEER_MODELS:
        r.update(
            steering=rules.steering_tables.output.table,
            sweep=rules.alpha_sweep.output.table,
            cross=rules.cross_task.output.correlations,
            letters=rules.mechanism.output.letters,
            free_text=rules.free_text.output.texts,
            steering_figures=figures(rules.plot_steering.output),
        )
    if model in STRESS_MODELS:
        r.update(
            stress_decodability=rules.stress_decodability.output.correct,
            stress_verdicts=rules.stress_verdicts.output.verdicts,
            stress_transfer=rules.stress_transfer.output.stats,
            stress_minds=rules.stress_minds_probe.output.stats,
            stress_behaviour=rules.stress_behaviour.output.table,
            stress_figures=figures(rules.plot_stress.output),
        )
    if model in TEAM_SPECS:
        r.update(
            team_episodes=rules.team_tables.output.episodes,
            team_summary=rules.team_tables.output.summary,
            team_tom=rules.team_tables.output.tom,
            team_transcripts=expand(rules.team_play_llm.output.transcripts, agent=TEAM_LLM_AGENTS, allow_missing=True),
            team_figures=figures(rules.plot_team.output),
        )
    if model in DEBATE_SPECS:
        r.update(
            debate_accuracy=expand(rules.debate_tables.output.accuracy, task=DEBATE_TASKS, allow_missing=True),
            debate_scored=debate_arithmetic(rules.debate_tables.output.scored),
            debate_disagreement=debate_arithmetic(rules.debate_tables.output.disagreement),
            debate_judge_preference=debate_arithmetic(rules.debate_tables.output.judge),
            debate_answers=[debate_arithmetic(rules.debate_run.output.answers, m) for m in REPORT_KEYED["debate_answers"]]
            if DEBATE_ARITHMETIC
            else [],
            debate_turns=debate_arithmetic(rules.debate_run.output.turns, "debate"),
            debate_judge=debate_arithmetic(rules.debate_run.output.judge, "debate"),
            debate_transcripts=debate_arithmetic(rules.debate_run.output.transcripts, "debate"),
            debate_figures=figures(rules.plot_debate.output) if DEBATE_ARITHMETIC else {},
        )
    return manifest_entries(for_model(r, model))


# Where the rules write their Snakemake benchmark files and the model usage of their commands
# (`tomlab --usage`); the cost rule reads both.
BENCHMARKS = "results/benchmarks"
USAGE = "results/logs/usage"


def rule_experiments(wildcards):
    """JSON: the experiment of every workflow rule, which is the name of the file that defines it."""
    return json.dumps({r.name: Path(str(r.snakefile)).stem for r in workflow.rules}, sort_keys=True)
