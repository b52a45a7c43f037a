"""The plan's counts of the evaluation, extraction and steering rules against what the rules really do.

Each job's command is taken from a Snakemake dry run (``-n``) of the config, run in-process into a
temporary folder (its inputs built by the library calls of the upstream rules; the steering directions
are stand-ins of the same file format, since the counts do not depend on their values), and its
``--usage`` meter compared with the plan's passes.  The completion cache is emptied before each command,
as a first run finds it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tomlab import io
from tomlab.plan import bigtom, steering
from tomlab.plan.context import PlanContext
from tomlab.plan.work import JobWork, meter_counts
from tomlab.schema import merged_config

REPO = Path(__file__).resolve().parents[1]
BASE = [REPO / "config" / "config.yaml", REPO / "config" / "smoke.yaml"]  # as Snakemake layers --configfile
RULES = ("evaluate_baseline", "evaluate_served", "extract_activations", "steer", "alpha_sweep", "mechanism",
         "free_text")
BENCHMARKS = Path("results/benchmarks")


@dataclass(frozen=True)
class DryJob:
    rule: str
    job: str
    argv: tuple[str, ...]  # the command's arguments after ``tomlab`` (no --threads)


def _job_name(rule: str, benchmark: str) -> str:
    """The job's benchmark path below ``results/benchmarks/<rule>/`` without ``.tsv`` ("" for ``<rule>.tsv``)."""
    parts = Path(benchmark).relative_to(BENCHMARKS).with_suffix("").parts
    assert parts[0] == rule, (rule, benchmark)
    return "/".join(parts[1:])


def _argv(shell: str) -> tuple[str, ...]:
    words = shlex.split(shell)
    words = words[: words.index(">")] if ">" in words else words
    assert words[0] == "tomlab", shell
    words = words[1:]
    if "--threads" in words:  # the test process keeps its own torch threads
        i = words.index("--threads")
        words = words[:i] + words[i + 2:]
    return tuple(words)


def _parse_dry_run(text: str) -> list[DryJob]:
    out, rule, bench = [], None, None
    for line in text.splitlines():
        head = line.strip()
        if not line.startswith(" ") and head.endswith(":") and head.split()[0] in ("rule", "localrule"):
            rule, bench = head.split()[1].rstrip(":"), None
        elif head.startswith("benchmark:"):
            bench = head.split(":", 1)[1].strip()
        elif head.startswith("Shell command:") and rule in RULES:
            assert bench is not None, f"{rule}: no benchmark in the dry run"
            out.append(DryJob(rule, _job_name(rule, bench), _argv(head.split(":", 1)[1].strip())))
    return out


def dry_run(workdir: Path, files: list[Path]) -> list[DryJob]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "1", "-n",
           "--configfile", *map(str, files)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return _parse_dry_run(proc.stdout + proc.stderr)


def plan_jobs(ctx: PlanContext) -> dict[tuple[str, str], JobWork]:
    found = bigtom.jobs(ctx) + steering.jobs(ctx)
    keyed = {(j.rule, j.job): j for j in found}
    assert len(keyed) == len(found), "a job counted twice"
    return keyed


# --- running a job's command and reading its meter ---------------------------------------------------


def _flag(argv: tuple[str, ...], name: str) -> list[str]:
    """The values after ``name`` up to the next flag."""
    if name not in argv:
        return []
    values = []
    for word in argv[argv.index(name) + 1:]:
        if word.startswith("--"):
            break
        values.append(word)
    return values


def _task_paths(values: list[str]) -> list[str]:
    return [v.partition("=")[2] or v for v in values]


def _stand_in_directions(path: Path, acts: Path, top_k: int) -> None:
    """Direction sets of every kind at the activations' geometry (the file the directions rule writes)."""
    from tomlab.steering.directions import KIND_SLUGS, DirectionSet, random_directions, save_direction_sets

    _, n_layers, n_heads, width = np.load(acts, mmap_mode="r").shape
    heads = np.array([(layer, head) for layer in range(n_layers) for head in range(n_heads)][:top_k])
    seed = zlib.crc32(str(path).encode())  # each task's file its own directions, as the probes give them
    save_direction_sets(path, {kind: DirectionSet(random_directions(n_layers, n_heads, width, seed=seed + i), heads)
                               for i, kind in enumerate(KIND_SLUGS)})


def prepare_inputs(job: DryJob, ctx: PlanContext, workdir: Path) -> None:
    """The job's inputs as the upstream rules make them (activations: by an extract command run before)."""
    for path in _flag(job.argv, "--items"):
        if not (workdir / path).exists():
            io.write_parquet(workdir / path, ctx.eval_items)
    for path in _flag(job.argv, "--samples"):
        if not (workdir / path).exists():
            io.write_parquet(workdir / path, ctx.probe_samples(job.job.split("/")[1]))
    directions = _task_paths(_flag(job.argv, "--directions"))
    activations = _task_paths(_flag(job.argv, "--activations"))
    for d, a in zip(directions, activations):
        assert (workdir / a).exists(), f"{job.rule}: {a} not extracted"
        if not (workdir / d).exists():
            _stand_in_directions(workdir / d, workdir / a, int(ctx.section("steering")["top_k"]))


def run_job(job: DryJob, ctx: PlanContext, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    from tomlab.cli.main import main

    prepare_inputs(job, ctx, workdir)
    shutil.rmtree(workdir / "results" / "cache", ignore_errors=True)  # a first run's empty completion cache
    monkeypatch.chdir(workdir)
    assert main(list(job.argv)) == 0, f"{job.rule} {job.job} failed"
    return json.loads((workdir / _flag(job.argv, "--usage")[0]).read_text())


def assert_meter_matches(work: JobWork, usage: dict[str, int]) -> None:
    view = meter_counts(work)
    where = f"{work.rule} {work.job}"
    assert usage["prompts"] == view["prompts"], where
    assert usage["prompt_tokens"] == pytest.approx(view["prompt_tokens"], rel=1e-9), where
    assert usage["scored_sequences"] == view["scored_sequences"], where
    assert usage["scored_tokens"] == pytest.approx(view["scored_tokens"], rel=1e-9), where
    assert usage["completion_tokens"] <= view["decode_limit"], where
    assert (usage["completion_tokens"] > 0) == (view["decode_limit"] > 0), where  # a reply of no token at all: rare


# --- fixtures -------------------------------------------------------------------------------------------


@dataclass
class Run:
    ctx: PlanContext
    work: dict[tuple[str, str], JobWork]
    dry: list[DryJob]
    workdir: Path


def _run(tmp: Path, files: list[Path]) -> Run:
    config = merged_config(files)
    ctx = PlanContext(config, scratch=tmp / "scratch")
    workdir = tmp / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    return Run(ctx, plan_jobs(ctx), dry_run(workdir, files), workdir)


def _variant(tmp: Path, *texts: str) -> Run:
    files = list(BASE)
    for i, text in enumerate(texts):
        files.append(tmp / f"variant{i}.yaml")
        files[-1].write_text(text)
    return _run(tmp, files)


#: What the meter tests run: the smoke config, smaller (one evaluation story, short replies, two probe
#: stories, two tasks, two kinds of direction) and with a SentencePiece tokenizer (options that merge with
#: the space before them).
SMALL = """
model: {random_tokenizer: sentencepiece_inst}
evaluation: {max_stories: 1, max_new_tokens: 4}
activations: {max_stories: 2}
probing: {tasks: [forward_belief, backward_belief]}
steering: {directions: [random, +tpfo], free_text: {max_new_tokens: 4}}
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _variant(tmp_path_factory.mktemp("small"), SMALL)


@pytest.fixture(scope="module")
def extracted(small: Run) -> dict[str, dict[str, int]]:
    """The extract commands, run once (the steering jobs read their activations): job -> usage."""
    mp = pytest.MonkeyPatch()
    try:
        return {j.job: run_job(j, small.ctx, small.workdir, mp) for j in small.dry if j.rule == "extract_activations"}
    finally:
        mp.undo()


def _with_activations(run: Run, small: Run) -> Run:
    """A variant's workdir given the small run's activations (the probe samples do not change)."""
    models = small.workdir / "results" / "models"
    for acts in models.glob("*/activations"):
        shutil.copytree(acts, run.workdir / acts.relative_to(small.workdir), dirs_exist_ok=True)
    return run


# --- the job lists ----------------------------------------------------------------------------------------


def test_the_plan_has_exactly_the_dry_runs_jobs_on_the_smoke_config(tmp_path):
    smoke = _run(tmp_path, list(BASE))
    dry = {(j.rule, j.job) for j in smoke.dry}
    assert set(smoke.work) == dry
    assert {r for r, _ in dry} == set(RULES) - {"evaluate_served"}
    assert all(w.model == "random-llama" and w.loads == 1 for w in smoke.work.values())


PANEL = """
models:
  srv: {base_url: "http://127.0.0.1:8000/v1", model: some/served-model, api_key_env: null}
probing: {panel: [gemma]}
steering: {panel: [gemma], sweep: {directions: [+tpfo]}}
stress: {panel: [random-llama]}
evaluation: {panel: [srv, random-llama]}
"""


def test_the_plan_has_exactly_the_dry_runs_jobs_on_a_panel_with_served_models(tmp_path):
    files = [*BASE, REPO / "config" / "smoke-panel.yaml", REPO / "config" / "served.yaml"]
    (tmp_path / "panel.yaml").write_text(PANEL)
    run = _run(tmp_path, [*files, tmp_path / "panel.yaml"])
    assert set(run.work) == {(j.rule, j.job) for j in run.dry}
    # every task of the steered model, the main task of the stress-tested one, nothing of the served one
    assert {k for r, k in run.work if r == "extract_activations"} == {
        "gemma/forward_belief", "gemma/forward_action", "gemma/backward_belief", "random-llama/forward_belief"}
    served = run.work["evaluate_served", ""]
    assert (served.model, served.loads, [p.kind for p in served.passes]) == ("", 0, ["generate"])
    srv = run.work["evaluate_baseline", "srv"]
    assert srv.loads == 0 and [p.kind for p in srv.passes] == ["generate"]  # no log-likelihood over a server
    assert run.work["evaluate_baseline", "random-llama"].loads == 1
    assert len(run.work["evaluate_baseline", "random-llama"].passes) == 2
    assert {"srv", "Llama-3.1-8B-Instruct"} <= run.ctx.estimated  # a server's tokens are estimated


# --- the counts against the meter -------------------------------------------------------------------------


def test_extraction_counts_equal_the_meter(small, extracted):
    assert len(extracted) == 2
    for job, usage in extracted.items():
        work = small.work["extract_activations", job]
        assert_meter_matches(work, usage)
        assert usage["scored_sequences"] == len(small.ctx.probe_samples(job.split("/")[1]))


def test_evaluation_counts_equal_the_meter(small, monkeypatch):
    (job,) = [j for j in small.dry if j.rule == "evaluate_baseline"]
    usage = run_job(job, small.ctx, small.workdir, monkeypatch)
    work = small.work["evaluate_baseline", job.job]
    assert_meter_matches(work, usage)
    items = small.ctx.eval_items
    assert usage["scored_sequences"] == 2 * len(items)
    assert work.prompts == items["prompt"].nunique() < len(items)  # repeated prompts are generated once


def _check_steering(run: Run, monkeypatch: pytest.MonkeyPatch, rules: tuple[str, ...], one_site: bool) -> None:
    done = set()
    for job in run.dry:
        if job.rule not in rules or (one_site and job.rule in done):
            continue
        done.add(job.rule)
        usage = run_job(job, run.ctx, run.workdir, monkeypatch)
        work = run.work[job.rule, job.job]
        assert_meter_matches(work, usage)  # the mechanism view's per-token projections included
    assert done == set(rules)


def test_shared_prefix_steering_counts_equal_the_meter(small, extracted, monkeypatch):
    _check_steering(small, monkeypatch, ("steer", "alpha_sweep", "mechanism", "free_text"), one_site=False)
    steer = small.work["steer", "random-llama/attn_out"]
    kinds = len(small.ctx.section("steering")["directions"])
    # the main task under its own directions; each other task under its own and the main task's
    assert [p.branches for p in steer.passes if p.kind == "branch"] == [kinds, 2 * kinds]


TOKEN_BY_TOKEN = """
evaluation: {protocol: tomlab}
steering:
  shared_prefix: false
  sweep: {alphas: [0, 20, 0]}
  free_text: {alphas: [0, 20]}
"""


def test_token_by_token_steering_with_the_chat_template_counts_equal_the_meter(small, extracted, monkeypatch,
                                                                             tmp_path):
    run = _with_activations(_variant(tmp_path, SMALL, TOKEN_BY_TOKEN), small)
    assert bigtom.chat_of(run.ctx)  # the tomlab protocol renders with the chat template
    _check_steering(run, monkeypatch, ("steer", "alpha_sweep", "mechanism", "free_text"), one_site=True)
    sweep = run.work["alpha_sweep", "random-llama"]
    distinct = run.ctx.eval_items.query("task == 'forward_belief' and condition in ['true_belief', 'false_belief']")
    # two kinds at three alphas: six scorings, but both kinds' strength 0 share the plain cache namespace
    assert sweep.passes[0].rows == distinct["prompt"].nunique() * 3
    assert sweep.passes[1].rows == 2 * len(distinct) * 6


SCORING_ONLY = """
evaluation: {modes: [log-likelihood]}
"""


def test_shared_prefix_scoring_only_counts_equal_the_meter(small, extracted, monkeypatch, tmp_path):
    run = _with_activations(_variant(tmp_path, SMALL, SCORING_ONLY), small)
    _check_steering(run, monkeypatch, ("evaluate_baseline", "steer", "alpha_sweep"), one_site=True)
    sweep = run.work["alpha_sweep", "random-llama"]
    assert [(p.kind, p.new_tokens) for p in sweep.passes] == [("branch", 0), ("score", 0)]


# --- small pieces -----------------------------------------------------------------------------------------


def test_steer_pairs_put_each_task_on_itself_then_the_main_tasks_directions_on_the_others():
    from tomlab.bigtom.conditions import steering_pairs

    pairs = steering_pairs(["forward_action", "forward_belief", "backward_belief"])
    assert pairs == [("forward_action", "forward_action"), ("forward_belief", "forward_belief"),
                     ("backward_belief", "backward_belief"), ("forward_belief", "forward_action"),
                     ("forward_belief", "backward_belief")]


def test_strength_zero_shares_the_plain_namespace():
    assert steering.namespace(0, "+tpfo") == steering.namespace(0.0, "random") is None
    assert steering.namespace(20, "+tpfo") != steering.namespace(20, "random")
    assert steering.namespace(20, "+tpfo") == steering.namespace(20.0, "+tpfo")
