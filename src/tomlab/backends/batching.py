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

from tomlab.schema import default

#: Largest batch on a CPU (beyond it the padding of unequal prompts eats the gain).
CPU_CAP = 64
#: Largest batch on a GPU.
GPU_CAP = 256
#: Share of the free memory the KV cache of one batch may take (the schema's ``model.memory_share``).
MEMORY_SHARE: float = float(default("model.memory_share"))


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


def free_memory_bytes(device: Any, cgroup: str | os.PathLike[str] = "/sys/fs/cgroup") -> int:
    """Free memory on ``device``: on a GPU its free memory plus what torch holds reserved but unused; on
    a CPU the system's available memory, or less where the job's cgroup (a SLURM job, a container)
    leaves less below its limit."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(cached, 0))
    available = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        available = int(pages) * int(os.sysconf("SC_PAGE_SIZE")) if pages else 8 * 2**30
    room = cgroup_room_bytes(cgroup)
    return min(available, room) if room is not None else available


def cgroup_room_bytes(root: str | os.PathLike[str] = "/sys/fs/cgroup") -> int | None:
    """Bytes left below this process's cgroup memory limit (v2 ``memory.max``, or v1's
    ``memory.limit_in_bytes``), or None where there is no limit to read."""
    from pathlib import Path

    base = Path(root)
    for limit_name, usage_name in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (base / limit_name).read_text().strip()
            usage = int((base / usage_name).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:
            return None
        return max(int(limit) - usage, 0)
    return None


def auto_batch_size(lm: Any, *, tokens_per_sequence: int = 2048) -> int:
    """The batch for ``lm`` (a :class:`tomlab.backends.models.LoadedModel`): the device's cap, or fewer
    when the KV cache of that many sequences of ``tokens_per_sequence`` tokens would take more than
    model's memory budget (its ``memory`` plan: ``model.memory_budget_gb``, or ``model.memory_share`` of
    the free memory; :data:`MEMORY_SHARE` of it for a model without a plan), at least 1."""
    import torch

    device = torch.device(getattr(lm, "device", "cpu"))
    cap = GPU_CAP if device.type == "cuda" else CPU_CAP
    per_sequence = kv_bytes_per_token(lm) * int(tokens_per_sequence)
    plan = getattr(lm, "memory", None)
    budget = plan.budget(lm) if hasattr(plan, "budget") else MEMORY_SHARE * free_memory_bytes(device)
    fits = int(budget // max(per_sequence, 1))
    return max(1, min(cap, fits))


def resolve_batch_size(lm: Any, value: str | int) -> int:
    """``value`` itself, or :func:`auto_batch_size` for ``"auto"``."""
    size = parse_batch_size(value)
    return auto_batch_size(lm) if size == "auto" else int(size)
