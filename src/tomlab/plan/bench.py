"""The benchmarks' and the model preparation's jobs, counted (``workflow/rules/bench.smk``, experiment
``bench``; ``workflow/rules/model.smk``, experiment ``model``).

- ``prepare_model``: one job per local panel model; it loads the model (and converts an embedded GGUF
  once) and runs nothing through it: one load, no pass.
- The benchmarks run on one model, :func:`bench_model` (the panel's first model that is both probed and
  steered; none: no benchmark job):

  - ``bench_extract`` (``tomlab bench extract``): a warm-up extraction of the first batch, then every
    prompt batched and every prompt one at a time (:func:`tomlab.backends.activations.bench_extract`;
    its matmul peak measurements run no model);
  - ``bench_steering`` (``tomlab bench steering``): the main task's true- and false-belief evaluation
    items (the first ``bench.steering_items``) under every sweep direction and alpha, by shared prefixes
    and token by token, no completion cache; the token-by-token path again at a quarter of the batch size
    on three interventions (the noise floor); where the model does not run in float32, a second load in
    float32 and both paths on the first few items under the first two interventions
    (:func:`tomlab.steering.bench.bench_steering`);
  - ``bench_generation`` (``tomlab bench generation``): the chain-of-thought prompts of the arithmetic
    questions generated at every batch size (:func:`tomlab.backends.throughput.generation_throughput`,
    chat template on).

Decoded tokens are limits (``max_new_tokens`` per sequence; a reply may end earlier).  Whether the model
runs in float32 follows the plan's device (:func:`runs_float32`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from tomlab.bigtom.conditions import MAIN_TASK
from tomlab.bigtom.protocol import ORIGINAL_CONDITIONS
from tomlab.debate.tasks import cot_prompts
from tomlab.panel import bench_model
from tomlab.plan.context import PlanContext
from tomlab.plan.project import run_dtype
from tomlab.plan.stress import answer_passes, answering, extract_pass, generation_ids, tokenizer_of
from tomlab.plan.work import JobWork, Pass

EXPERIMENT = "bench"


def runs_float32(ctx: PlanContext, model: str) -> bool:
    """Whether a model runs in float32 on the plan's device (``auto``: as :func:`tomlab.plan.project.run_dtype`
    chooses; with no device given, ``auto`` on ``device: cpu`` is float32 and elsewhere a GPU's bfloat16)."""
    spec = ctx.panel[model]
    if ctx.device is not None:
        return run_dtype(spec, ctx.device) == "float32"
    dtype = str(spec.get("dtype") or "auto")
    if dtype == "auto":
        return str(spec.get("device") or "auto") == "cpu"
    return dtype == "float32"


# --- prepare_model -----------------------------------------------------------------------------------

def prepare_jobs(ctx: PlanContext) -> list[JobWork]:
    """One load per local panel model, nothing run through it."""
    return [JobWork("model", "prepare_model", name, name, 1, ()) for name in ctx.panel if ctx.local(name)]


# --- the benchmarks ----------------------------------------------------------------------------------

def extract_job(ctx: PlanContext, model: str) -> JobWork:
    bench = ctx.section("bench")
    prompts = ctx.probe_samples(MAIN_TASK)["prompt"].astype(str).tolist()[: int(bench["extract_prompts"])]
    batch = int(bench["extract_batch_size"])
    passes = (extract_pass(ctx, model, prompts[: min(len(prompts), batch)], batch, "warm-up: the first batch"),
              extract_pass(ctx, model, prompts, batch, "batched extraction"),
              extract_pass(ctx, model, prompts, 1, "one prompt at a time"))
    return JobWork(EXPERIMENT, "bench_extract", "", model, 1, passes)


def steering_items(ctx: PlanContext) -> pd.DataFrame:
    """The items the steering benchmark answers."""
    from tomlab.steering.run import eval_subset

    n = int(ctx.section("bench")["steering_items"])
    return eval_subset(ctx.eval_items, MAIN_TASK, ORIGINAL_CONDITIONS, "benchmark").iloc[:n].reset_index(drop=True)


def steering_job(ctx: PlanContext, model: str) -> JobWork:
    steer = ctx.section("steering")
    k = len(steer["sweep"]["directions"]) * len(steer["sweep"]["alphas"])
    items = steering_items(ctx)
    shared = replace(answering(ctx, cached=False), shared_prefix=True)
    stepwise = replace(shared, shared_prefix=False)
    passes = answer_passes(ctx, model, items, k, shared, "shared prefixes")
    passes += answer_passes(ctx, model, items, k, stepwise, "token by token")
    picks = len({0, k // 2, k - 1})
    other = max(1, shared.batch_size // 4) if shared.batch_size > 1 else 2
    floor = replace(stepwise, batch_size=other)
    passes += answer_passes(ctx, model, items, picks, floor, f"noise floor at batch size {other}")
    loads = 1
    float32_items = int(ctx.section("bench")["float32_items"])
    if float32_items and not runs_float32(ctx, model):
        loads = 2
        first = items.iloc[:float32_items].reset_index(drop=True)
        passes += answer_passes(ctx, model, first, min(2, k), shared, "float32 copy, shared prefixes")
        passes += answer_passes(ctx, model, first, min(2, k), stepwise, "float32 copy, token by token")
    return JobWork(EXPERIMENT, "bench_steering", "", model, loads, tuple(passes))


def arithmetic_items(ctx: PlanContext) -> pd.DataFrame:
    """The arithmetic debate task's items (debate_tasks), kept in the scratch folder."""
    from tomlab.debate.tasks import generate_arithmetic, load_arithmetic_json

    path = Path(ctx._scratch) / EXPERIMENT / "arithmetic_items.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    a = ctx.section("debate")["arithmetic"]
    rows = load_arithmetic_json(a["file"]) if a.get("file") else generate_arithmetic(
        int(a["n"]), int(a["seed"]), a.get("families"))
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(path)
    return rows


def generation_job(ctx: PlanContext, model: str) -> JobWork:
    bench = ctx.section("bench")
    questions = [str(q) for q in arithmetic_items(ctx)["question"]]
    prompts = cot_prompts(questions, int(bench["generation_prompts"]))
    ids = generation_ids(tokenizer_of(ctx, model), prompts, True)
    mean = sum(len(i) for i in ids) / len(ids)
    new = int(bench["generation_max_new_tokens"])
    passes = tuple(Pass("generate", rows=len(prompts), prompt_tokens=mean, new_tokens=new, batch=int(b),
                        what=f"every prompt at batch size {b} (max_new_tokens, a limit)")
                   for b in bench["generation_batch_sizes"])
    return JobWork(EXPERIMENT, "bench_generation", "", model, 1, passes)


def jobs(ctx: PlanContext) -> list[JobWork]:
    """prepare_model for every local panel model, then the benchmarks on :func:`bench_model`."""
    out = prepare_jobs(ctx)
    model = bench_model(ctx.config, ctx.panel)
    if model is None:
        return out
    return [*out, extract_job(ctx, model), steering_job(ctx, model), generation_job(ctx, model)]
