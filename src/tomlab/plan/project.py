"""From counted work to tokens, memory and time on a device: the plan's projection.

For one job (:class:`tomlab.plan.work.JobWork`) on one model (:class:`tomlab.plan.geometry.Geometry`)
and device (:class:`tomlab.plan.devices.Device`):

- **rows per pass** follow the backend's own memory plan (:mod:`tomlab.backends.memory`: the row bytes
  of :func:`~tomlab.backends.memory.row_bytes`, the budget a share of the memory left beside the
  weights, or ``model.memory_budget_gb``) and its ``auto`` batch (:func:`~tomlab.backends.batching.auto_batch_size`);
- **prefill and scoring** cost their FLOPs at the device's peak times its compute efficiency, and at
  least one read of the weights per pass;
- **decoding** costs each step the larger of its FLOPs and its bytes (the weights and the rows' KV cache)
  at the device's rates, plus a fixed cost per layer;
- **loads** cost the weights' bytes at the load rate; every job a fixed overhead;
- **peak memory** is the weights plus the largest pass's rows.

A served model's jobs get their tokens counted and no local memory or time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from tomlab.plan.devices import Device
from tomlab.plan.geometry import DTYPE_BYTES, Geometry
from tomlab.plan.work import JobWork, Pass

GIB = 2**30


def run_dtype(spec: Mapping[str, Any], dev: Device) -> str:
    """The dtype a model section runs in on ``dev`` (``auto``: bfloat16 on CUDA and on a CPU with
    AVX512-BF16, else float32, as :func:`tomlab.backends.models.resolve_dtype` chooses)."""
    dtype = str(spec.get("dtype") or "auto")
    if dtype == "auto":
        return "bfloat16" if dev.native_bf16 else "float32"
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"model.dtype {dtype!r}: the plan knows {sorted(DTYPE_BYTES)} and auto")
    return dtype


def planned_lm(geometry: Geometry, dtype: str, dev: Device, spec: Mapping[str, Any], host_bytes: int | None = None) -> Any:
    """A stand-in for a loaded model with ``geometry`` that the backend's batching and memory functions
    read (its config's widths, its dtype and device, and its memory plan with a budget in bytes)."""
    import torch

    from tomlab.backends.memory import MemoryPlan

    weights = geometry.weight_bytes(dtype)
    total = dev.memory_gib * GIB if dev.memory_gib is not None else float(host_bytes or 0)
    plan = MemoryPlan.from_spec(spec)
    budget = plan.budget_bytes if plan.budget_bytes is not None else int(plan.share * max(total - weights, 0))
    config = SimpleNamespace(num_key_value_heads=geometry.kv_heads, intermediate_size=geometry.intermediate,
                             vocab_size=geometry.vocab)
    return SimpleNamespace(model=SimpleNamespace(config=config), n_layers=geometry.layers, n_heads=geometry.heads,
                           head_dim=geometry.head_dim, hidden_size=geometry.hidden, dtype=getattr(torch, dtype),
                           device="cuda" if dev.kind == "cuda" else "cpu",
                           memory=MemoryPlan(share=plan.share, budget_bytes=max(int(budget), 1)))


@dataclass(frozen=True)
class PassCost:
    rows_per_pass: int
    passes: int
    seconds: float
    peak_bytes: int


def _rows(p: Pass, lm: Any) -> int:
    """Rows one forward pass of ``p`` holds: its batch (``auto``: the backend's), capped by the memory plan."""
    from tomlab.backends.batching import auto_batch_size
    from tomlab.backends.memory import plan_of

    per_prompt = p.branches if p.kind == "branch" else 1
    batch = (p.batch or auto_batch_size(lm)) * per_prompt
    tokens = math.ceil(p.context + p.prompt_tokens) + p.new_tokens
    fit = plan_of(lm).max_rows(lm, tokens, p.logits if p.kind == "score" else 1)
    return max(1, min(batch, fit, max(p.sequences, 1)))


def pass_cost(p: Pass, geometry: Geometry, dtype: str, dev: Device, lm: Any, matmul_precision: str = "highest") -> PassCost:
    """Time and memory of one :class:`Pass` on ``dev``."""
    from tomlab.backends.batching import kv_bytes_per_token
    from tomlab.backends.memory import row_bytes

    if p.rows == 0:
        return PassCost(0, 0, 0.0, 0)
    flops = dev.flops(dtype, matmul_precision) * dev.compute_efficiency
    bandwidth = dev.bandwidth * dev.bandwidth_efficiency
    weights = geometry.weight_bytes(dtype)
    rows = _rows(p, lm)
    per_prompt = p.branches if p.kind == "branch" else 1
    # prefill (or scoring): every prompt once; a pass reads the weights at least once
    prompts_per_pass = max(1, rows // per_prompt)
    prefill_passes = math.ceil(p.rows / prompts_per_pass)
    logits = p.logits if p.kind == "score" else 1
    head_flops = 2.0 * geometry.vocab * geometry.hidden  # the LM head at one position whose logits are kept
    prefill_flops = p.rows * (p.prompt_tokens * geometry.flops_per_token(p.context + p.prompt_tokens / 2) + logits * head_flops)
    seconds = max(prefill_flops / flops, prefill_passes * weights / bandwidth) + prefill_passes * geometry.layers * dev.step_overhead_s
    passes = prefill_passes
    # decoding: every sequence's new tokens, ``rows`` sequences a step
    if p.kind != "score" and p.new_tokens > 0:
        decode_passes = math.ceil(p.sequences / rows)
        mean_rows = p.sequences / decode_passes
        context = p.context + p.prompt_tokens + p.new_tokens / 2
        step_flops = mean_rows * geometry.flops_per_token(context, logits=True)
        step_bytes = weights + mean_rows * context * kv_bytes_per_token(lm)
        step = max(step_flops / flops, step_bytes / bandwidth) + geometry.layers * dev.step_overhead_s
        seconds += decode_passes * p.new_tokens * step
        passes += decode_passes
    peak = rows * row_bytes(lm, math.ceil(p.context + p.prompt_tokens) + p.new_tokens, logits)
    return PassCost(rows, passes, seconds, int(peak))


def job_row(job: JobWork, geometry: Geometry | None, spec: Mapping[str, Any], dev: Device,
            host_bytes: int | None = None) -> dict[str, Any]:
    """One row of the plan: the job's counts, and the device, dtype, memory and time on ``dev`` (a served
    model, ``geometry`` None: device "served", no dtype, NaN memory and time)."""
    row: dict[str, Any] = {
        "experiment": job.experiment, "rule": job.rule, "job": job.job, "model": job.model, "loads": job.loads,
        "prompts": job.prompts,
        "prefill_tokens": int(round(sum(p.prefill_tokens for p in job.passes))),
        "decode_tokens": int(sum(p.decode_tokens for p in job.passes)),
        "scored_tokens": int(round(sum(p.scored_tokens for p in job.passes))),
        "scored_sequences": int(sum(p.rows for p in job.passes if p.kind == "score")),
    }
    row["tokens"] = row["prefill_tokens"] + row["decode_tokens"] + row["scored_tokens"]
    if geometry is None:
        return {**row, "device": "served", "dtype": "", "rows_per_pass": 0, "forward_passes": 0,
                "peak_memory_gb": math.nan, "projected_s": math.nan}
    dtype = run_dtype(spec, dev)
    precision = str(spec.get("matmul_precision") or "highest")
    lm = planned_lm(geometry, dtype, dev, spec, host_bytes)
    costs = [pass_cost(p, geometry, dtype, dev, lm, precision) for p in job.passes]
    weights = geometry.weight_bytes(dtype)
    load = job.loads * weights / dev.load_bytes_per_s
    row.update({
        "device": dev.name, "dtype": dtype,
        "rows_per_pass": max((c.rows_per_pass for c in costs), default=0),
        "forward_passes": sum(c.passes for c in costs),
        "peak_memory_gb": (weights * (job.loads > 0) + max((c.peak_bytes for c in costs), default=0)) / GIB,
        "projected_s": dev.job_overhead_s + load + sum(c.seconds for c in costs),
    })
    return row
