"""The plan's counts of the team game (rule team_play_llm) and the debate (rule debate_run) against what the
rules' commands really ask of a tiny random model (the meter of ``tomlab --usage``), and against the jobs a
Snakemake dry run lists."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tomlab.cli.main import main
from tomlab.panel import resolve_spec
from tomlab.plan import debate as plan_debate
from tomlab.plan import team as plan_team
from tomlab.plan.context import PlanContext
from tomlab.schema import merged_config

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "config" / "smoke.yaml"
PANEL = REPO / "config" / "smoke-panel.yaml"


def _config(*overrides: str, files: tuple[Path, ...] = (SMOKE,)) -> dict:
    return merged_config(files, [MODEL, *overrides])


def _totals(works) -> dict[str, float]:
    passes = [p for w in works for p in w.passes]
    return {"prompts": sum(p.rows for p in passes), "prompt_tokens": sum(p.prefill_tokens for p in passes),
            "completion_tokens": sum(p.decode_tokens for p in passes)}


#: The tests' model: the smoke config's random llama with a SentencePiece-style tokenizer (short prompts).
MODEL = "model={random_tokenizer: sentencepiece_inst}"


def _unmerged(tokenizer) -> list[bool]:
    """Per token id: a printable one-character token that no merge involves (no quote, brace or backslash), so
    a run of them reads back as as many tokens wherever a prompt quotes it."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    merged = {c for m in state.get("merges", []) for part in (m.split(" ") if isinstance(m, str) else m) for c in part}
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [len(t) == 1 and 0x21 <= ord(t) <= 0x7E and t not in merged and t not in '"{}\\' for t in tokens]


def _printable_replies(lm) -> None:
    """Let the random model write only :func:`_unmerged` tokens (no space, no end token), so every reply
    takes its whole max_new_tokens, reads back as as many tokens in a later prompt and names no action."""
    import torch

    head = lm.model.get_output_embeddings().weight
    assert head.data_ptr() != lm.model.get_input_embeddings().weight.data_ptr(), "tied head: the prompt would change"
    keep = torch.tensor(_unmerged(lm.tokenizer))
    assert head.shape[0] == len(keep) and keep.sum() > 20
    with torch.no_grad():  # sampling too (self-consistency) keeps to the allowed tokens' far larger logits
        head[~keep] = 0.0
        head[keep] *= 1000.0


@pytest.fixture
def printable(monkeypatch):
    """Every backend a command builds writes printable garbage; the built backends, for their tokenizers."""
    import tomlab.backends.build as build

    original, built = build.build_backend, []

    def patched(spec, **kwargs):
        lm = original(spec, **kwargs)
        _printable_replies(lm)
        built.append(lm)
        return lm

    monkeypatch.setattr(build, "build_backend", patched)
    return built


# --- the team game -------------------------------------------------------------------------------------


def _team_play(cfg: dict, agent_type: str, out: Path) -> tuple[dict, list[dict]]:
    """The rule's command (its flags as common.smk builds them, no completion cache): the meter and the
    transcripts' rows."""
    team = cfg["team"]
    panel = PlanContext(cfg, out / "ctx").panel
    model = next(iter(panel.values()))
    llm = {**{k: v for k, v in team["llm"].items() if k != "batch_size"}, "prompts": team["prompts"]}
    agents = {a: resolve_spec(s, panel, a) for a, s in team["agent_models"].items() if s}
    argv = ["--usage", str(out / "usage.json"), "team-play", "--agent-type", agent_type,
            "--team-json", json.dumps({k: team[k] for k in plan_team.TEAM_RULES}), "--seeds", str(team["seeds"]),
            "--model-json", json.dumps(model), "--llm-json", json.dumps(llm), "--agent-models-json", json.dumps(agents),
            "--batch-size", str(team["llm"]["batch_size"]), "--out-episodes", str(out / "episodes.parquet"),
            "--out-tom", str(out / "tom.parquet"), "--transcripts", str(out / "transcripts")]
    assert main(argv) == 0
    rows = [json.loads(line) for f in sorted((out / "transcripts").glob("*.jsonl")) for line in f.open()]
    return json.loads((out / "usage.json").read_text()), rows


def _team_works(cfg: dict, tmp_path: Path, agent_type: str, replies: str = plan_team.LIMIT):
    works = plan_team.jobs_assuming(PlanContext(cfg, tmp_path / "plan"), replies)
    return [w for w in works if w.job.endswith(f"/{agent_type}")]


def _action_tokens(rows: list[dict], lm, rnd: int) -> float:
    """Mean tokens of the action prompts of round ``rnd`` as the backend encodes them."""
    from tomlab.backends.lm import GenerationConfig

    prompts = [r["prompt"] for r in rows if r.get("kind") == "action" and r.get("round") == rnd]
    return sum(len(lm.encode(p, GenerationConfig())) for p in prompts) / len(prompts)


def _pass_tokens(works, rnd: int, purpose: str = "action") -> float:
    (p,) = [p for w in works for p in w.passes
            if p.what.startswith(f"round {rnd} of") and plan_team._WHAT[purpose] in p.what]
    return p.prompt_tokens


@pytest.mark.parametrize("agent_type", ["llm", "llm_belief"])
def test_team_plan_bounds_the_game_and_replays_an_unreadable_model_round_by_round(tmp_path, printable, agent_type):
    cfg = _config("team={seeds: 2, max_rounds: 2, llm: {max_new_tokens: 6, belief_max_new_tokens: 5}}")
    used, rows = _team_play(cfg, agent_type, tmp_path / "run")
    limit = _team_works(cfg, tmp_path, agent_type)
    planned = _totals(limit)
    # every turn of every round of every episode asks its action, its belief update and three ToM questions
    assert planned["prompts"] == 2 * 2 * len(cfg["team"]["agents"]) * (1 + (agent_type == "llm_belief") + 3)
    assert 0 < used["prompts"] < planned["prompts"]  # the garbage names no action, so no ToM question follows
    assert 0 < used["prompt_tokens"] < planned["prompt_tokens"]
    assert 0 < used["completion_tokens"] < planned["completion_tokens"]
    # a stand-in that, like the garbage, names nothing: the same prompts, token for token
    exact = _team_works(cfg, tmp_path, agent_type, plan_team.INVALID)
    assert _totals(exact) == pytest.approx({k: used[k] for k in planned})
    (lm,) = printable
    measured = [_action_tokens(rows, lm, r) for r in (1, 2)]
    assert [_pass_tokens(exact, r) for r in (1, 2)] == pytest.approx(measured)
    # at the limit a round adds the same replies, and (without a belief state, whose conversation keeps the
    # beliefs instead of the observations) a move's result and every teammate's message at its limit
    growth, real = _pass_tokens(limit, 2) - _pass_tokens(limit, 1), measured[1] - measured[0]
    assert real > 6 and (growth > real if agent_type == "llm" else growth == pytest.approx(real))


@pytest.mark.parametrize("agent_type", ["llm", "llm_belief"])
def test_team_plan_equals_the_game_when_nothing_ends_it_early(tmp_path, printable, agent_type):
    cfg = _config("team={seeds: 1, max_rounds: 1, deadlock_rounds: null, llm: {tom: false}}")
    planned = _totals(_team_works(cfg, tmp_path, agent_type))
    used, _ = _team_play(cfg, agent_type, tmp_path / "run")
    assert planned["prompts"] == used["prompts"] == 3 * (1 + (agent_type == "llm_belief"))
    assert planned["completion_tokens"] == used["completion_tokens"]  # every reply took its max_new_tokens
    assert planned["prompt_tokens"] >= used["prompt_tokens"]  # the plan's teammates moved and wrote messages


def test_team_plan_of_a_lone_agent_equals_the_game_token_for_token(tmp_path, printable):
    cfg = _config("team={seeds: 2, max_rounds: 1, deadlock_rounds: null, agents: {Alpha: [red, green]}, "
                  "llm: {tom: false}}")
    planned = _totals(_team_works(cfg, tmp_path, "llm"))
    used, _ = _team_play(cfg, "llm", tmp_path / "run")
    assert {k: planned[k] for k in ("prompts", "prompt_tokens", "completion_tokens")} == pytest.approx(
        {k: used[k] for k in ("prompts", "prompt_tokens", "completion_tokens")})


def test_team_rounds_past_the_built_ones_grow_as_the_last_two(tmp_path, monkeypatch):
    cfg = _config("team={seeds: 1, max_rounds: 5, agent_types: [llm]}")
    built = _team_works(cfg, tmp_path, "llm")
    monkeypatch.setattr(plan_team, "EXACT_ROUNDS", 3)
    grown = _team_works(cfg, tmp_path, "llm")
    assert [p.rows for w in grown for p in w.passes] == [p.rows for w in built for p in w.passes]
    step = _pass_tokens(built, 3) - _pass_tokens(built, 2)
    assert _pass_tokens(grown, 5) == pytest.approx(_pass_tokens(built, 3) + 2 * step)
    assert _pass_tokens(grown, 5) == pytest.approx(_pass_tokens(built, 5), rel=0.02)  # near the one built
    assert _pass_tokens(grown, 3) == _pass_tokens(built, 3) and "extrapolated" in grown[0].passes[-1].what


def test_team_episodes_past_the_played_ones_count_as_many_prompts(tmp_path):
    one = _team_works(_config("team={seeds: 1, max_rounds: 2}"), tmp_path / "one", "llm_belief")
    many = _team_works(_config("team={seeds: 7, max_rounds: 2}"), tmp_path / "many", "llm_belief")
    assert plan_team.SIMULATED_SEEDS < 7
    assert [7 * p.rows for w in one for p in w.passes] == [p.rows for w in many for p in w.passes]
    assert [p.prompt_tokens for w in many for p in w.passes] == pytest.approx(
        [p.prompt_tokens for w in one for p in w.passes], rel=0.05)  # seeds differ only by the map's draw


def test_team_agent_with_its_own_model_is_counted_on_it(tmp_path):
    cfg = _config("team={seeds: 1, max_rounds: 2, agent_types: [llm], agent_models: {Bravo: gemma}}",
                  files=(SMOKE, PANEL))
    works = plan_team.jobs(PlanContext(cfg, tmp_path))
    assert {(w.job, w.model) for w in works} == {("random-llama/llm", "random-llama"), ("random-llama/llm", "gemma"),
                                                 ("gemma/llm", "gemma")}
    mine = {w.model: w.prompts for w in works if w.job == "random-llama/llm"}
    assert mine["random-llama"] == 2 * mine["gemma"] > 0  # Alpha and Charlie on the job's model, Bravo on gemma
    (alone,) = [w for w in works if w.job == "gemma/llm"]
    assert alone.prompts == sum(mine.values())


# --- the debate ----------------------------------------------------------------------------------------


def _debate_run(cfg: dict, task: str, method: str, out: Path) -> dict:
    """The debate_tasks and debate_run rules' commands (their flags as common.smk builds them): the meter."""
    deb = cfg["debate"]
    items = out / "items.parquet"
    args = ["--n", str(deb["arithmetic"]["n"]), "--seed", str(deb["arithmetic"]["seed"])] if task == "arithmetic" else (
        ["--max-items", str(deb["translation"]["max_items"])])
    assert main(["debate-tasks", "--task", task, *args, "--out", str(items)]) == 0
    default = next(iter(PlanContext(cfg, out / "ctx").panel.values()))
    models = {"default": default, **{r: deb["models"][r] for r in plan_debate.ROLES}}
    settings = {k: v for k, v in deb.items() if k not in plan_debate.NOT_SETTINGS}
    argv = ["--usage", str(out / "usage.json"), "debate-run", "--task", task, "--tasks", str(items), "--method", method,
            "--models-json", json.dumps(models), "--debate-json", json.dumps(settings), "--batch-size",
            str(deb["batch_size"]), "--out", str(out / "a.parquet"), "--out-turns", str(out / "t.parquet"),
            "--out-judge", str(out / "j.parquet"), "--transcripts", str(out / "t.jsonl")]
    assert main(argv) == 0
    return json.loads((out / "usage.json").read_text())


@pytest.mark.parametrize(("task", "rounds", "methods"), [
    ("arithmetic", 1, ["direct", "cot", "self_consistency", "self_reflection", "debate", "debate_forced"]),
    ("translation", 2, ["debate", "debate_forced"]),
])
def test_debate_plan_equals_what_the_run_asks(tmp_path, printable, task, rounds, methods):
    cfg = _config(f"debate={{rounds: {rounds}, sc_samples: 3, reflection_iterations: 2, tasks: [{task}], "
                  "arithmetic: {n: 2}}")
    works = plan_debate.jobs(PlanContext(cfg, tmp_path / "plan"))
    for method in methods:
        planned = _totals([w for w in works if w.job == f"random-llama/{task}_{method}"])
        used = _debate_run(cfg, task, method, tmp_path / method)
        # garbage never convinces the judge, so a debate runs to its round limit, and every reply is full
        assert planned == pytest.approx({k: used[k] for k in planned}), method


def _turn_tokens(tmp_path: Path, max_new_tokens: int) -> list[float]:
    cfg = _config("debate={rounds: 3, tasks: [arithmetic], methods: [debate_forced], "
                  f"max_new_tokens: {max_new_tokens}}}")
    (work,) = plan_debate.jobs(PlanContext(cfg, tmp_path))
    turns = [p for p in work.passes if "debaters' turns" in p.what]
    assert [p.rows for p in turns] == [4 * 2] * 3 and all(p.new_tokens == max_new_tokens for p in turns)
    return [p.prompt_tokens for p in turns]


def test_debate_transcript_grows_by_a_round_of_replies_at_their_limit(tmp_path):
    short, long = _turn_tokens(tmp_path, 10), _turn_tokens(tmp_path, 30)
    assert short[0] < short[1] < short[2]
    # each later round quotes two more replies (each debater's), each 20 tokens longer at the higher limit
    assert [b - a for a, b in zip(short, long)] == pytest.approx([20 * 0.5, 20 * 2.5, 20 * 4.5])


def test_debate_judge_with_its_own_model_is_counted_on_it(tmp_path):
    cfg = _config("debate={tasks: [arithmetic], methods: [direct, debate], models: {judge: gemma}}",
                  files=(SMOKE, PANEL))
    works = plan_debate.jobs(PlanContext(cfg, tmp_path))
    judged = {(w.job, w.model): w for w in works}
    assert set(judged) == {(f"{m}/arithmetic_{x}", n) for m in ("random-llama", "gemma")
                           for x in ("direct", "debate") for n in {m, "gemma"}}
    assert judged["random-llama/arithmetic_direct", "gemma"].prompts == 0  # built, as the command builds every role
    on_judge = judged["random-llama/arithmetic_debate", "gemma"].passes
    assert on_judge and all("the judge's" in p.what for p in on_judge)
    on_sides = judged["random-llama/arithmetic_debate", "random-llama"].passes
    assert on_sides and all("debaters' turns" in p.what for p in on_sides)
    assert "a limit" not in on_sides[0].what and "a limit" in on_sides[-1].what  # the judge may end it after round 1


# --- the jobs a dry run lists ----------------------------------------------------------------------------


def _dry_run(workdir: Path, *files: Path) -> list[tuple[str, str, list[str]]]:
    """(rule, job, shell words) of every job ``snakemake -n`` lists."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "1", "-n",
           "--configfile", *map(str, files)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs, rule, bench = [], None, None
    for line in proc.stdout.splitlines():
        if line.startswith("rule "):
            rule, bench = line.removeprefix("rule ").rstrip(":"), None
        elif line.strip().startswith("benchmark: results/benchmarks/"):  # below the rule's benchmark folder
            bench = line.strip().removeprefix("benchmark: results/benchmarks/").split("/", 1)[-1].removesuffix(".tsv")
        elif line.startswith("Shell command:") and rule:
            jobs.append((rule, bench, shlex.split(line.removeprefix("Shell command:"))))
    return jobs


def _flag(words: list[str], flag: str):
    return json.loads(words[words.index(flag) + 1])


def test_dry_run_lists_exactly_the_planned_game_jobs(tmp_path):
    files = (SMOKE, PANEL)
    listed = [j for j in _dry_run(tmp_path / "dry", *files) if j[0] in ("team_play_llm", "debate_run")]
    ctx = PlanContext(merged_config(files), tmp_path / "plan")
    planned = plan_team.jobs(ctx) + plan_debate.jobs(ctx)
    assert {(r, j) for r, j, _ in listed} == {(w.rule, w.job) for w in planned}
    assert len(listed) == len({(w.rule, w.job) for w in planned}) == 2 * (2 + 2 * 6)
    team, deb = ctx.section("team"), ctx.section("debate")
    for rule, _, words in listed:  # the settings the plan counts with are the ones the rules pass
        if rule == "team_play_llm":
            assert _flag(words, "--team-json") == {k: team[k] for k in plan_team.TEAM_RULES}
        else:
            assert _flag(words, "--debate-json") == {k: v for k, v in deb.items() if k not in plan_debate.NOT_SETTINGS}
