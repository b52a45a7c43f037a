"""Per-head activations of a batch of prompts (last token, or every token of one prompt), and the
extraction benchmark."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tomlab.backends import meter
from tomlab.backends.memory import memory_batches
from tomlab.backends.hooks import SITES, HeadCapture
from tomlab.backends.models import LoadedModel


def _forward_body(lm: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    """Run the transformer body only (no LM head), with positions that ignore the left padding."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    lm.decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)


def prompt_lengths(lm: LoadedModel, prompts: Sequence[str]) -> list[int]:
    """Number of tokens of each prompt as the model sees it (special tokens included)."""
    return [len(ids) for ids in lm.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]


@torch.inference_mode()
def extract_activations(
    lm: LoadedModel,
    prompts: Sequence[str],
    *,
    sites: Sequence[str] = SITES,
    batch_size: int = 8,
    progress: bool = True,
    lengths: Sequence[int] | None = None,
    dtype: str = "float32",
) -> dict[str, np.ndarray]:
    """Per-head activations at the last token of each prompt: ``{site: (N, L, H, D)}`` in ``dtype``
    (``float32``, as the released code saves them, or ``float16`` for half the disk and memory).

    Prompts are batched by length (less padding) with left padding and an attention mask; the output
    is in the order of ``prompts``. ``lengths`` (from :func:`prompt_lengths`) saves counting them again.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"activation dtype must be float32 or float16, got {dtype!r}")
    n = len(prompts)
    out = {s: np.zeros((n, lm.n_layers, lm.n_heads, lm.site_width(s)), dtype=dtype) for s in sites}
    if lengths is None:
        lengths = prompt_lengths(lm, prompts)
    elif len(lengths) != n:
        raise ValueError(f"{len(lengths)} lengths for {n} prompts")
    order = np.argsort(lengths, kind="stable")
    batches = memory_batches(lm, [int(i) for i in order], lengths, batch_size, logits=0)  # the body only: no logits
    with HeadCapture(lm, sites) as capture:
        for idx in tqdm(batches, desc="activations", unit="batch", disable=not progress):
            enc = lm.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            _forward_body(lm, enc["input_ids"].to(lm.device), enc["attention_mask"].to(lm.device))
            for site, acts in capture.take().items():
                out[site][idx] = acts.float().cpu().numpy().astype(dtype)
    meter.record(scored_sequences=n, scored_tokens=int(np.sum(lengths)))
    return out


@torch.inference_mode()
def token_activations(lm: LoadedModel, prompt: str, site: str = "head_z") -> tuple[np.ndarray, list[str]]:
    """Per-head activations at *every* position of one prompt: float32 (T, L, H, D), and the tokens.

    The tokens are the decoded pieces of the prompt's ids (special tokens included), one per position.
    """
    enc = lm.tokenizer([prompt], return_tensors="pt")
    ids = enc["input_ids"]
    with HeadCapture(lm, (site,), positions="all") as capture:
        _forward_body(lm, ids.to(lm.device), enc["attention_mask"].to(lm.device))
        acts = capture.take()[site][0]
    meter.record(scored_sequences=1, scored_tokens=int(ids.shape[1]))
    tokens = [lm.tokenizer.decode([int(t)]) for t in ids[0]]
    return acts.float().cpu().numpy(), tokens


def _peak(lm: LoadedModel) -> float:
    """The best matmul rate of ``lm``'s dtype on its device over square sizes 512, 1024 and 2048 (GFLOP/s)."""
    from tomlab.backends.throughput import matmul_peak_gflops

    return max(matmul_peak_gflops(lm.dtype, size=size, repeats=5, device=str(lm.device)) for size in (512, 1024, 2048))


def bench_extract(
    lm: LoadedModel, prompts: Sequence[str], *, batch_size: int = 8, sites: Sequence[str] = SITES
) -> dict[str, Any]:
    """Tokens per second of batched extraction against one prompt at a time, on the same prompts, and the
    batched run's model FLOP utilisation: its matmul FLOPs per second (:func:`linear_flops_per_token`, the
    model's body without the LM head, which extraction skips) over the peak of a square matmul in the
    model's dtype measured on the same device before and after, the best of three sizes (:func:`_peak`)."""
    from tomlab.backends.throughput import (
        linear_flops_per_token,
        mfu,
    )

    lengths = prompt_lengths(lm, prompts)
    n_tokens = sum(lengths)
    warm = min(len(prompts), batch_size)
    extract_activations(
        lm, prompts[:warm], sites=sites, batch_size=batch_size, progress=False, lengths=lengths[:warm]
    )
    flops = linear_flops_per_token(lm.model)
    peak = _peak(lm)
    timings = {}
    for label, bs in (("batched", batch_size), ("single", 1)):
        start = time.perf_counter()
        extract_activations(lm, prompts, sites=sites, batch_size=bs, progress=False)
        timings[label] = time.perf_counter() - start
    # the peak is measured on both sides of the timed runs, the better kept: a busy moment lowers it
    peak = max(peak, _peak(lm))
    return {
        "model": lm.name,
        "device": str(lm.device),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "n_prompts": len(prompts),
        "n_tokens": n_tokens,
        "batch_size": batch_size,
        "sites": list(sites),
        "batched_seconds": timings["batched"],
        "single_seconds": timings["single"],
        "batched_tokens_per_s": n_tokens / timings["batched"],
        "single_tokens_per_s": n_tokens / timings["single"],
        "speedup": timings["single"] / timings["batched"],
        "target_speedup": 5.0,
        "peak_gflops": peak,
        "flops_per_token": flops,
        "mfu": mfu(n_tokens / timings["batched"], flops, peak),
        "target_mfu": 0.55,
        "torch_threads": torch.get_num_threads(),
    }
