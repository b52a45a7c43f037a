# Config validation and the few helpers the rules share.
import hashlib
import json
import shlex
from pathlib import Path

from snakemake.utils import validate

from tomlab.bigtom.conditions import MAIN_TASK  # the paper's probing task; its directions are also tried on the others
from tomlab.schema import SCHEMA_PATH, check_keys, check_model_specs
from tomlab.team import AGENT_TYPES, LLM_TYPES


check_keys(config)  # a misspelt key is named, with the nearest valid ones
check_model_specs(config)  # served models: allowed keys and types, no secret in the config or the URL
validate(config, schema=str(SCHEMA_PATH), set_default=True)

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
STEER_PAIRS = [f"{t}:{t}" for t in TASKS] + [f"{MAIN_TASK}:{t}" for t in TASKS if t != MAIN_TASK]
EVAL = config["evaluation"]
# None: the evaluation protocol's choice, which the command reads from the items
CHAT = {True: "--chat-template", False: "--no-chat-template", None: ""}[EVAL["chat_template"]]
SHARED_PREFIX = "--shared-prefix" if STEER["shared_prefix"] else "--no-shared-prefix"
COMPLETION_CACHE = "results/cache/completions"  # content-addressed; shared by the model rules
REPORT_DIR = Path(workflow.basedir) / "report"
REPORT_SOURCES = sorted(
    str(p) for p in REPORT_DIR.iterdir() if p.is_file() and not p.name.startswith(".")
)
CONFIG_JSON = json.dumps(config, sort_keys=True)
CONFIG_HASH = hashlib.sha256(CONFIG_JSON.encode()).hexdigest()[:12]
MODEL_JSON = json.dumps(config["model"], sort_keys=True)
GPUS = config["model"]["gpu"]


def slug(kind):
    """File- and command-line-safe name of a direction kind ("-oracle" -> "minus_oracle")."""
    return {"+": "plus_", "-": "minus_"}.get(kind[0], "") + kind.lstrip("+-")


def slugs(kinds):
    return " ".join(slug(k) for k in kinds)


def task_args(paths):
    """TASK=PATH command-line arguments, one path per task (in the order of TASKS)."""
    return " ".join(f"{t}={shlex.quote(str(p))}" for t, p in zip(TASKS, paths, strict=True))


def activations(task, site):
    """One task's activations at one site (extract_activations writes every site of a task at once)."""
    return expand(rules.extract_activations.output.acts[SITES.index(site)], task=task)[0]


# --- the team game -------------------------------------------------------------------------
TEAM = config["team"]
TEAM_RULES = ("rules", "map", "bomb_phases", "colours", "agents", "max_rounds", "deadlock_rounds", "stall_rounds",
              "wrong_cutter", "points_per_phase")
TEAM_JSON = json.dumps({k: TEAM[k] for k in TEAM_RULES}, sort_keys=True)
TEAM_LLM = {k: v for k, v in TEAM["llm"].items() if k != "batch_size"}
TEAM_MODEL = TEAM["model"] or config["model"]  # the LLM agents' model: the main one unless the team names its own
TEAM_AGENTS = TEAM["agent_types"]
LLM_AGENTS = LLM_TYPES


TEAM_AGENT_MODELS = {a: spec for a, spec in TEAM["agent_models"].items() if spec}


def team_play_inputs(wildcards):
    """A MAPPO team needs its trained policies; an LLM team needs the local model unless every agent is served."""
    if wildcards.agent == "mappo":
        return {"policies": rules.team_train_mappo.output.policies}
    specs = [TEAM_AGENT_MODELS.get(a, TEAM_MODEL) for a in TEAM["agents"]]
    if wildcards.agent in LLM_AGENTS and any("base_url" not in s for s in specs):  # served models need no weights
        return {"model": rules.prepare_model.output.info}
    return {}


def team_play_args(wildcards, input):
    if wildcards.agent == "mappo":
        return f"--policies {shlex.quote(input.policies)}"
    if wildcards.agent in LLM_AGENTS:
        return (f"--model-json {shlex.quote(json.dumps(TEAM_MODEL, sort_keys=True))} --llm-json {shlex.quote(json.dumps(TEAM_LLM))}"
                f" --agent-models-json {shlex.quote(json.dumps(TEAM_AGENT_MODELS, sort_keys=True))}"
                f" --batch-size {TEAM['llm']['batch_size']} --completion-cache {shlex.quote(COMPLETION_CACHE)}")
    return ""


# --- the debate ----------------------------------------------------------------------------------
DEBATE = config["debate"]
DEBATE_TASKS = DEBATE["tasks"]
DEBATE_METHODS = DEBATE["methods"]
DEBATE_MODELS_JSON = json.dumps(
    {"default": DEBATE["models"]["default"] or config["model"],
     **{r: DEBATE["models"][r] for r in ("affirmative", "negative", "judge")}},
    sort_keys=True,
)
DEBATE_SETTINGS = json.dumps(
    {k: v for k, v in DEBATE.items() if k not in ("tasks", "methods", "arithmetic", "translation", "models", "n_boot", "batch_size")},
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
# Named report inputs that are every output of one plot; the manifest keys their PNGs by output name
# without "_png" (plot_steering's sweep_png becomes "sweep").
REPORT_FIGURES = {"steering_figures": "plot_steering", "stress_figures": "plot_stress", "team_figures": "plot_team",
                  "debate_figures": "plot_debate"}


def debate_arithmetic(pattern, method=None):
    """One output of the arithmetic debate (of one method); nothing when that task or method is not run."""
    if not DEBATE_ARITHMETIC or (method is not None and method not in DEBATE_METHODS):
        return []
    return expand(pattern, task="arithmetic", **({} if method is None else {"method": method}))[0]


def report_manifest(wildcards, input):
    """The report's manifest as JSON: each named input (but the report's own sources) by name, the
    lists of REPORT_KEYED as mappings, the plots of REPORT_FIGURES as mappings from output name to PNG."""
    manifest = {}
    for name, value in input.items():
        if name == "sources" or (not value and not isinstance(value, str)):
            continue
        if name in REPORT_KEYED:
            manifest[name] = dict(zip(REPORT_KEYED[name], value, strict=True))
        elif name in REPORT_FIGURES:
            output = getattr(rules, REPORT_FIGURES[name]).output
            manifest[name] = {k.removesuffix("_png"): v for k, v in output.items() if k.endswith("_png")}
        else:
            manifest[name] = value if isinstance(value, str) else list(value)
    return json.dumps(manifest, sort_keys=True)


# Where the rules write their Snakemake benchmark files and the model usage of their commands
# (`tomlab --usage`); the cost rule reads both.
BENCHMARKS = "results/benchmarks"
USAGE = "results/logs/usage"


def rule_experiments(wildcards):
    """JSON: the experiment of every workflow rule, which is the name of the file that defines it."""
    return json.dumps({r.name: Path(str(r.snakefile)).stem for r in workflow.rules}, sort_keys=True)
