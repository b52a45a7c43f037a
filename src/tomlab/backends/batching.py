"""How many prompts a local model generates for at once, chosen from the backend rather than a constant.

Throughput on a CPU rises with the batch well past what one conversation step asks (measured on the
embedded SmolLM2-135M with 2 cores, 32 prompts, 96 new tokens, greedy: 130 completion tokens/s at
batch 8, 310 at 32; 128 prompts: 392 at 64, 486 at 128; ``results/bench/generation.json`` repeats
the measurement on each run), so the batch is as large as memory allows, up to a cap per device:
:data:`CPU_CAP` on a CPU, :data:`GPU_CAP` on a GPU.  Lockstep conversations
(:func:`tomlab.backends.lockstep.run_lockstep`) put every pending prompt of a turn in one call, so a
large batch is filled.
"""

from __future__ import annotations

import os
from typing import Any

#: Largest batch on a CPU (beyond it the padding of unequal prompts eats the gain).
CPU_CAP = 64
#: Largest batch on a GPU.
GPU_CAP = 256
#: Share of the free memory the KV cache of one batch may take.
MEMORY_SHARE = 0.25


def parse_batch_size(value: str | int) -> int | str:
    """A batch size as given in a config or on the command line: a positive integer or ``"auto"``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"a batch size is a positive integer or 'auto', got {value!r}") from None
    if size < 1:
        raise ValueError(f"a batch size is a positive integer or 'auto', got {value!r}")
    return size


def kv_bytes_per_token(lm: Any) -> int:
    """Bytes of KV cache one token of one sequence takes (keys and values of every layer)."""
    import torch

    config = getattr(lm.model, "config", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or lm.n_heads
    element = torch.finfo(lm.dtype).bits // 8 if lm.dtype.is_floating_point else 4
    return 2 * lm.n_layers * int(kv_heads) * lm.head_dim * element


def free_memory_bytes(device: Any) -> int:
    """Free memory on ``device``: the GPU's free memory, or the system's available memory on a CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages) * int(os.sysconf("SC_PAGE_SIZE")) if pages else 8 * 2**30


def auto_batch_size(lm: Any, *, tokens_per_sequence: int = 2048) -> int:
    """The batch for ``lm`` (a :class:`tomlab.backends.models.LoadedModel`): the device's cap, or fewer
    when the KV cache of that many sequences of ``tokens_per_sequence`` tokens would take more than
    :data:`MEMORY_SHARE` of the free memory (at least 1)."""
    import torch

    device = torch.device(getattr(lm, "device", "cpu"))
    cap = GPU_CAP if device.type == "cuda" else CPU_CAP
    per_sequence = kv_bytes_per_token(lm) * int(tokens_per_sequence)
    fits = int(MEMORY_SHARE * free_memory_bytes(device) // max(per_sequence, 1))
    return max(1, min(cap, fits))


def resolve_batch_size(lm: Any, value: str | int) -> int:
    """``value`` itself, or :func:`auto_batch_size` for ``"auto"``."""
    size = parse_batch_size(value)
    return auto_batch_size(lm) if size == "auto" else int(size)
