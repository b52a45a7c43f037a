"""A plan before the run: what each job of a config will ask of its model, and what that costs on a device.

:func:`plan_table` counts every model job of the workflow (one function per experiment,
``tomlab.plan.<experiment>.jobs``) and projects each onto a device (:mod:`tomlab.plan.project`);
:func:`summary` says it in a few lines.  Nothing here loads weights: a model's geometry comes from
:mod:`tomlab.plan.geometry`, offline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tomlab.panel import is_served
from tomlab.plan import bench, bigtom, debate, steering, stress, team
from tomlab.plan.context import CHARS_PER_TOKEN, PlanContext
from tomlab.plan.devices import Device
from tomlab.plan.geometry import Geometry, geometry_of
from tomlab.plan.project import job_row
from tomlab.plan.work import JobWork

#: The modules that count the model jobs of each rule file, in the workflow's order.
COUNTERS = (bench, bigtom, steering, stress, team, debate)

#: The plan table's columns, in order.
PLAN_COLUMNS: tuple[str, ...] = (
    "experiment", "rule", "job", "model", "device", "dtype", "loads", "prompts", "prefill_tokens", "decode_tokens",
    "scored_sequences", "scored_tokens", "tokens", "rows_per_pass", "forward_passes", "peak_memory_gb", "projected_s",
)


def count_jobs(ctx: PlanContext) -> list[JobWork]:
    """Every model job the config's workflow runs, counted."""
    jobs: list[JobWork] = []
    for counter in COUNTERS:
        jobs += counter.jobs(ctx)
    return jobs


def spec_of(ctx: PlanContext, job: JobWork) -> Mapping[str, Any]:
    """The spec of the model a job runs: its own where it carries one, else the run's model of that name."""
    if job.spec is not None:
        return job.spec
    if job.model not in ctx.specs:
        raise ValueError(f"the plan of rule {job.rule} names model {job.model!r}, which the run does not have")
    return ctx.specs[job.model]


def _geometry(spec: Mapping[str, Any], model: str, found: dict[str, Geometry | None]) -> Geometry | None:
    """The geometry of a local model's spec (None for a served one), each spec read once."""
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in found:
        found[key] = None if is_served(spec) else geometry_of(spec, f"models.{model}")
    return found[key]


def plan_table(ctx: PlanContext, dev: Device, host_bytes: int | None = None) -> pd.DataFrame:
    """One row per model job: counts, rows per pass, peak memory (GiB) and projected seconds on ``dev``
    (``host_bytes``: the memory a CPU run has, where ``dev`` is the CPU)."""
    found: dict[str, Geometry | None] = {}
    rows = []
    for job in count_jobs(ctx):
        spec = spec_of(ctx, job) if job.model else {}
        geometry = _geometry(spec, job.model, found) if job.model else None
        rows.append(job_row(job, geometry, spec, dev, host_bytes))
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS))


def summary(table: pd.DataFrame, dev: Device, estimated: set[str] = frozenset()) -> str:
    """A few lines: per experiment and model the projected minutes, the largest peak memory, and the total."""
    lines = [f"plan on {dev.name} ({dev.source})"]
    local = table[table["device"] != "served"]
    by = local.groupby(["model", "experiment"], sort=False).agg(
        jobs=("rule", "size"), minutes=("projected_s", lambda s: s.sum() / 60), peak=("peak_memory_gb", "max"),
        tokens=("tokens", "sum"))
    for (model, experiment), r in by.iterrows():
        lines.append(f"  {model:<28} {experiment:<12} {int(r.jobs):>3} jobs  {int(r.tokens):>12,} tokens  "
                     f"{r.minutes:8.1f} min  peak {r.peak:6.2f} GiB")
    served = table[table["device"] == "served"]
    if len(served):
        lines.append(f"  served models: {len(served)} jobs, {int(served['tokens'].sum()):,} tokens (no local time)")
    if estimated:
        lines.append(f"  tokens estimated at {CHARS_PER_TOKEN:g} characters per token (no tokenizer at hand): "
                     f"{', '.join(sorted(estimated))}")
    total_h = local["projected_s"].sum() / 3600
    lines.append(f"projected total: {total_h:.2f} hours of model-job time on one {dev.name} "
                 "(jobs run one after another; CPU-only rules not counted)")
    return "\n".join(lines)
