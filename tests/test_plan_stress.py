"""The plan's counts of the stress tests', the benchmarks' and prepare_model's jobs (tomlab.plan.stress,
tomlab.plan.bench) against the workflow and against what the commands really ask of the model.

The workflow's own dry run gives the jobs: on the smoke config, the job list the plan must match; on a
smaller run (:data:`SMALL` over the smoke config), the shell lines of the counted jobs and of every job
upstream of them, run in-process (``tomlab.cli.main.main``) in a temporary folder as Snakemake would run
them, and each counted job's ``--usage`` file (the meter) compared with its plan.

How a plan's passes read on the meter (:mod:`tomlab.backends.meter`):

- a ``generate`` pass: ``rows`` prompts of ``prompt_tokens`` tokens;
- a ``branch`` pass: the prefix (every token but the last) once per prompt, then each of ``branches``
  interventions decodes from the prompt's last token: ``rows * branches`` prompts and
  ``rows * (prompt_tokens - 1) + rows * branches`` prompt tokens; one that decodes nothing (the scoring
  branches' own prefix) adds its prefix tokens and no prompt;
- a ``score`` pass: ``rows`` scored sequences of ``prompt_tokens`` tokens;
- decoded tokens: the plan's are the limit (``max_new_tokens``), the meter's what the model produced.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tomlab.panel import bench_model
from tomlab.plan import bench as plan_bench
from tomlab.plan import stress as plan_stress
from tomlab.plan.context import PlanContext
from tomlab.plan.work import JobWork, meter_counts
from tomlab.schema import merged_config

REPO = Path(__file__).resolve().parents[1]
# the workflow loads config/config.yaml itself (its configfile directive); --configfile layers on top
SMOKE = (REPO / "config" / "config.yaml", REPO / "config" / "smoke.yaml")
RULES = ("stress_extract", "stress_minds_extract", "stress_behaviour", "bench_extract", "bench_steering",
         "bench_generation", "prepare_model")
_RULE = re.compile(r"^(?:local)?rule (\w+):$")


# --- the workflow's dry run, and its jobs run in-process ----------------------------------------------

@dataclass
class DryJob:
    rule: str
    job: str
    inputs: list[str]
    outputs: list[str]
    shell: str


def _paths(line: str) -> list[str]:
    return [p.strip() for p in line.split(":", 1)[1].split(",") if p.strip()]


def dry_run(workdir: Path, configfiles: tuple[Path, ...]) -> list[DryJob]:
    """Every job ``snakemake -n`` plans on ``configfiles`` (after the workflow's own), with its shell line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    files = [str(f) for f in configfiles if f.name != "config.yaml"]
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
                           "--cores", "2", "-n", "--configfile", *files], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs: list[DryJob] = []
    current: DryJob | None = None
    for line in proc.stdout.splitlines():
        found = _RULE.match(line)
        if found:
            current = DryJob(found.group(1), "", [], [], "")
            jobs.append(current)
        elif current is None:
            continue
        elif line.startswith("    input:"):
            current.inputs = _paths(line)
        elif line.startswith("    output:"):
            current.outputs = _paths(line)
        elif line.startswith("    benchmark:"):
            rel = Path(line.split(":", 1)[1].strip()).relative_to("results/benchmarks").with_suffix("")
            current.job = "/".join(rel.parts[1:])
        elif line.startswith("Shell command:"):
            current.shell = line.removeprefix("Shell command:").strip()
    return jobs


def _argv(shell: str) -> list[str]:
    """The command's arguments after ``tomlab``, without the log redirection."""
    words = shlex.split(shell)
    assert words[0] == "tomlab", shell
    return words[1:words.index(">")] if ">" in words else words[1:]


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _with(argv: list[str], flag: str, value: str | None = None, *, drop: int = 0) -> list[str]:
    """``argv`` with ``flag``'s value replaced (or, with ``drop``, the flag and its ``drop`` values removed)."""
    i = argv.index(flag)
    if drop:
        return argv[:i] + argv[i + 1 + drop:]
    return [*argv[:i + 1], str(value), *argv[i + 2:]]


class Workflow:
    """The dry run's jobs, run on demand in ``root`` (each once, its inputs' producers first)."""

    def __init__(self, root: Path, jobs: list[DryJob]) -> None:
        self.root = root
        self.jobs = jobs
        self.producer = {out: job for job in jobs for out in job.outputs}
        self.done: set[int] = set()

    def run(self, argv: list[str]) -> dict[str, int]:
        from tomlab.cli.main import main

        if "--threads" in argv:  # one thread: tiny models gain nothing from more, and tests run side by side
            argv = _with(argv, "--threads", 1)
        with contextlib.chdir(self.root):
            assert main(argv) == 0, argv
            usage = argv[argv.index("--usage") + 1] if "--usage" in argv else None
            return json.loads(Path(usage).read_text()) if usage else {}

    def make(self, job: DryJob) -> None:
        if id(job) in self.done:
            return
        for path in job.inputs:
            if path in self.producer:
                self.make(self.producer[path])
        if job.shell:
            self.run(_argv(job.shell))
        self.done.add(id(job))

    def find(self, rule: str, name: str) -> DryJob:
        return next(j for j in self.jobs if j.rule == rule and j.job == name)

    def ready(self, rule: str, name: str) -> list[str]:
        """The job's inputs made; its arguments."""
        job = self.find(rule, name)
        for path in job.inputs:
            if path in self.producer:
                self.make(self.producer[path])
        return _argv(job.shell)


#: A smaller run than the smoke config's for the meter (fewer and shorter prompts: a BPE tokenizer with
#: Mistral-Instruct's format), the same rules.
SMALL = {
    "model": {"random_tokenizer": "sentencepiece_inst"},
    "stories": {"n": 12},
    "evaluation": {"max_stories": 1, "max_new_tokens": 4, "batch_size": 4},
    "steering": {"sweep": {"alphas": [0, 20], "directions": ["+tpfo", "random"]}},
    "stress": {"perturbations": ["names", "decoy_photo"], "generated": {"n": 4}, "minds": {"n": 4, "eval_stories": 1},
               "behaviour": {"max_stories": 1, "instantiations": 1}},
    "bench": {"extract_prompts": 6, "extract_batch_size": 4, "steering_items": 2, "generation_prompts": 3,
              "generation_batch_sizes": [1, 3], "generation_max_new_tokens": 4},
}


@pytest.fixture(scope="module")
def smoke_jobs(tmp_path_factory) -> tuple[list[DryJob], PlanContext]:
    """The dry run's jobs on the smoke config, and the plan's context of that config."""
    root = tmp_path_factory.mktemp("smoke_dry")
    return dry_run(root, SMOKE), PlanContext(merged_config(SMOKE), scratch=tmp_path_factory.mktemp("smoke_plan"))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Workflow, PlanContext]:
    """The small run's jobs, ready to run in a temporary folder, and its plan's context."""
    root = tmp_path_factory.mktemp("small_run")
    overlay = tmp_path_factory.mktemp("small_config") / "small.yaml"
    overlay.write_text(json.dumps(SMALL))  # JSON is YAML
    files = (*SMOKE, overlay)
    ctx = PlanContext(merged_config(files), scratch=tmp_path_factory.mktemp("small_plan"))
    return Workflow(root, dry_run(root, files)), ctx


@pytest.fixture(autouse=True)
def _no_peak(monkeypatch):
    # the extraction benchmark's matmul peak runs no model: not timed here
    monkeypatch.setattr("tomlab.backends.activations._peak", lambda lm: 1.0)


# --- the meter's reading of a plan --------------------------------------------------------------------

def assert_matches(job: JobWork, usage: dict[str, int]) -> None:
    want = meter_counts(job)
    got = {k: usage[k] for k in ("prompts", "prompt_tokens", "scored_sequences", "scored_tokens")}
    assert got == {k: round(want[k]) for k in got}, (job.rule, job.job, got, want)
    for k in got:
        assert want[k] == pytest.approx(round(want[k]), abs=1e-6)  # the means times the rows are whole
    assert usage["cache_hits"] == 0
    assert usage["completion_tokens"] <= want["decode_limit"]  # a limit: replies may end early
    assert (usage["completion_tokens"] > 0) == (want["decode_limit"] > 0)


def _planned(jobs: list[JobWork], rule: str, name: str) -> JobWork:
    found = [j for j in jobs if j.rule == rule and j.job == name]
    assert len(found) == 1, (rule, name, [(j.rule, j.job) for j in jobs])
    return found[0]


def _plan(ctx: PlanContext) -> list[JobWork]:
    return plan_stress.jobs(ctx) + plan_bench.jobs(ctx)


def _variant(ctx: PlanContext, tmp_path: Path, **sections: dict) -> PlanContext:
    """``ctx``'s config with some sections' keys replaced, as a plan sees it."""
    config = json.loads(json.dumps(ctx.config))
    for key, value in sections.items():
        config[key] = {**config[key], **value}
    return PlanContext(config, scratch=tmp_path / "plan")


# --- the job list ---------------------------------------------------------------------------------

def _listed(dry: list[DryJob]) -> list[tuple[str, str]]:
    return sorted((j.rule, j.job) for j in dry if j.rule in RULES)


def test_the_plan_lists_exactly_the_dry_runs_jobs_of_these_rules(smoke_jobs):
    dry, ctx = smoke_jobs
    planned = _plan(ctx)
    assert sorted((j.rule, j.job) for j in planned) == _listed(dry)
    # the benchmarks measure the model the workflow gives them
    bench_inputs = {p for j in dry if j.rule.startswith("bench_") and j.rule != "bench_probing"
                    for p in j.inputs if p.endswith("/info.json")}
    assert bench_inputs == {f"results/models/{j.model}/info.json" for j in planned if j.rule.startswith("bench_")}


def test_on_a_panel_the_jobs_follow_the_experiments_panels(tmp_path):
    # two models; the second alone is steered and stress-tested, so the benchmarks measure it
    extra = tmp_path / "panels.yaml"
    extra.write_text("steering: {panel: [gemma]}\nstress: {panel: [gemma]}\n")
    files = (*SMOKE, REPO / "config" / "smoke-panel.yaml", extra)
    ctx = PlanContext(merged_config(files), scratch=tmp_path / "plan")
    planned = _plan(ctx)
    dry = dry_run(tmp_path / "run", files)
    assert sorted((j.rule, j.job) for j in planned) == _listed(dry)
    assert bench_model(ctx.config, ctx.panel) == "gemma"
    assert {j.model for j in planned if j.experiment == "stress"} == {"gemma"}
    assert {j.job for j in planned if j.rule == "prepare_model"} == {"random-llama", "gemma"}


def test_no_model_both_probed_and_steered_means_no_benchmark(tmp_path):
    ctx = PlanContext(merged_config((*SMOKE, REPO / "config" / "smoke-panel.yaml"),
                                    ['probing={"panel": ["random-llama"]}', 'steering={"panel": ["gemma"]}']),
                      scratch=tmp_path)
    assert bench_model(ctx.config, ctx.panel) is None
    assert [j.rule for j in plan_bench.jobs(ctx)] == ["prepare_model", "prepare_model"]


# --- the counts against the meter -------------------------------------------------------------------

def _one(jobs: list[JobWork], rule: str) -> str:
    return next(j.job for j in jobs if j.rule == rule)


@pytest.mark.parametrize("rule", ["stress_extract", "stress_minds_extract", "stress_behaviour", "bench_extract",
                                  "bench_steering", "bench_generation", "prepare_model"])
def test_each_rules_counts_are_what_its_command_asks(small, rule):
    workflow, ctx = small
    planned = _plan(ctx)
    names = [j.job for j in planned if j.rule == rule] if rule == "stress_extract" else [_one(planned, rule)]
    for name in names:
        job = _planned(planned, rule, name)
        usage = workflow.run(workflow.ready(rule, name))
        assert job.loads == 1
        if rule == "prepare_model":
            assert job.passes == () and all(usage[k] == 0 for k in ("prompts", "scored_sequences"))
        else:
            assert_matches(job, usage)


@pytest.mark.parametrize("variant", ["no_shared_prefix", "log_likelihood_only", "generation_only", "chat_template"])
def test_stress_behaviour_counts_follow_its_settings(small, tmp_path, variant):
    workflow, ctx = small
    model = "random-llama"
    argv = _with(workflow.ready("stress_behaviour", model), "--completion-cache", tmp_path / "cache")
    argv = _with(argv, "--usage", tmp_path / "usage.json")
    argv = _with(_with(argv, "--out", tmp_path / "s.parquet"), "--out-table", tmp_path / "t.parquet")
    modes = ["generation", "log-likelihood"]
    sections: dict[str, dict] = {}
    if variant == "no_shared_prefix":
        argv[argv.index("--shared-prefix")] = "--no-shared-prefix"
        sections["steering"] = {"shared_prefix": False}
    elif variant == "chat_template":
        argv.insert(argv.index("--batch-size"), "--chat-template")
        sections["evaluation"] = {"chat_template": True}
    else:
        modes = ["log-likelihood"] if variant == "log_likelihood_only" else ["generation"]
        argv = _with(argv, "--modes", drop=2)
        argv[argv.index("--n-boot"):argv.index("--n-boot")] = ["--modes", *modes]
        sections["evaluation"] = {"modes": modes}
    job = _planned(plan_stress.jobs(_variant(ctx, tmp_path, **sections)), "stress_behaviour", model)
    usage = workflow.run(argv)
    assert_matches(job, usage)
    kinds = sorted(p.kind for p in job.passes)
    assert kinds == {"no_shared_prefix": ["generate", "score"], "log_likelihood_only": ["branch", "score"],
                     "generation_only": ["branch"], "chat_template": ["branch", "score"]}[variant]


def test_a_model_not_in_float32_runs_the_steering_benchmark_twice_loaded(small, tmp_path):
    workflow, ctx = small
    spec = json.loads(_flag(workflow.ready("bench_steering", ""), "--model-json"))
    job = _planned(plan_bench.jobs(_variant(ctx, tmp_path, model={"dtype": "bfloat16"})), "bench_steering", "")
    argv = _with(workflow.ready("bench_steering", ""), "--model-json", json.dumps({**spec, "dtype": "bfloat16"}))
    argv = _with(_with(argv, "--usage", tmp_path / "usage.json"), "--out", tmp_path / "steering.json")
    usage = workflow.run(argv)
    assert job.loads == 2
    assert_matches(job, usage)
    same = _planned(plan_bench.jobs(_variant(ctx, tmp_path / "f32", model={"dtype": "float32"})), "bench_steering", "")
    assert same.loads == 1 and len(same.passes) < len(job.passes)


def test_a_model_without_a_tokenizer_at_hand_is_estimated_with_the_same_rows(small, tmp_path):
    _, ctx = small
    config = json.loads(json.dumps(ctx.config))
    config["models"] = {"random-llama": dict(config["model"]), "elsewhere": {"name": "nobody/not-in-any-cache"}}
    other = PlanContext(config, scratch=tmp_path)
    jobs = plan_stress.jobs(other)
    assert other.estimated == {"elsewhere"}
    by = {(j.rule, j.job.split("/", 1)[-1] if j.rule == "stress_extract" else "", j.model): j for j in jobs}
    for (rule, shift, model), job in by.items():
        if model != "elsewhere":
            continue
        known = by[rule, shift, "random-llama"]
        assert [p.rows for p in job.passes] == [p.rows for p in known.passes]
        assert all(p.prompt_tokens > 0 for p in job.passes)


@pytest.mark.parametrize("path", ["shared_prefix", "token_by_token_cached", "token_by_token_uncached"])
def test_a_prompt_asked_twice_is_counted_as_the_command_asks_it(small, tmp_path, path):
    import pandas as pd

    from tomlab.plan.stress import answer_passes, answering

    workflow, ctx = small
    model = "random-llama"
    argv = workflow.ready("stress_behaviour", model)
    items = pd.read_parquet(workflow.root / _flag(argv, "--items"))
    again = items[items["set"] != "original"]  # the original items stay one per story (the table pairs with them)
    twice = pd.concat([items, again.assign(item_id=again["item_id"] + "#again")], ignore_index=True)
    twice.to_parquet(tmp_path / "items.parquet")
    argv = _with(_with(argv, "--items", tmp_path / "items.parquet"), "--usage", tmp_path / "usage.json")
    argv = _with(_with(argv, "--out", tmp_path / "s.parquet"), "--out-table", tmp_path / "t.parquet")
    if path == "token_by_token_uncached":
        argv = _with(argv, "--completion-cache", drop=1)
    else:
        argv = _with(argv, "--completion-cache", tmp_path / "cache")
    if path != "shared_prefix":
        argv[argv.index("--shared-prefix")] = "--no-shared-prefix"
    how = replace(answering(ctx, cached=path != "token_by_token_uncached"), shared_prefix=path == "shared_prefix")
    passes = answer_passes(ctx, model, twice, 2, how, "twice")
    usage = workflow.run(argv)
    assert_matches(JobWork("stress", "stress_behaviour", model, model, 1, tuple(passes)), usage)
    asked = sum(p.rows for p in passes if p.kind != "score")
    per_intervention = len(twice) if path == "token_by_token_uncached" else len(items)
    assert asked == per_intervention * (1 if path == "shared_prefix" else 2)
