"""The devices a plan projects onto: their peak rates, memory and the efficiency factors that turn the
peaks into the time tomlab's backends take.

The GPUs' peaks are NVIDIA's published dense (no sparsity) numbers for the SXM cards; their efficiency
factors are assumptions until a rehearsal on the card measures them (:data:`GPU_FACTORS_SOURCE`).  The
CPU's peaks are measured on this machine when the plan runs (:func:`measure_cpu`); its factors are
:data:`CPU_FACTORS_SOURCE`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

TERA = 1e12

#: Where the GPU efficiency factors come from.
GPU_FACTORS_SOURCE = ("assumed, not measured: no GPU was lent to tomlab's development; a rehearsal on the card "
                      "(config/rehearsal.yaml) measures them")
#: Where the CPU efficiency factors come from.
CPU_FACTORS_SOURCE = ("a decode step's fixed cost from the default run's generation benchmark on a 2-core x86 machine "
                      "(about 70 ms a step for SmolLM2's 30 layers at batch 8); the compute and bandwidth shares "
                      "assumed; the report's Cost section sets the projection beside each run's measurement")


@dataclass(frozen=True)
class Device:
    """Peak FLOP/s per matmul precision (``float32`` exact, ``tf32``, ``bfloat16``/``float16``), memory
    bandwidth in bytes/s, memory in GiB (None: the host's available memory), and the factors the plan
    applies: the share of the peak a forward pass reaches (``compute_efficiency``), of the bandwidth a
    decode step reaches (``bandwidth_efficiency``), the fixed cost of one decode step per layer (kernel
    launches and Python, ``step_overhead_s``), the rate weights load at (``load_bytes_per_s``) and the
    fixed cost of a job (interpreter, imports, device start: ``job_overhead_s``)."""

    name: str
    kind: str  # "cpu" or "cuda"
    float32_flops: float
    tf32_flops: float
    half_flops: float
    bandwidth: float
    memory_gib: float | None
    compute_efficiency: float
    bandwidth_efficiency: float
    step_overhead_s: float
    load_bytes_per_s: float
    job_overhead_s: float
    source: str
    native_bf16: bool = True

    def flops(self, dtype: str, matmul_precision: str = "highest") -> float:
        """The peak FLOP/s a forward pass in ``dtype`` may reach under ``matmul_precision``."""
        if dtype in ("bfloat16", "float16"):
            return self.half_flops
        if matmul_precision == "high" and self.kind == "cuda":
            return self.tf32_flops
        return self.float32_flops


def _gpu(name: str, fp32: float, tf32: float, half: float, bandwidth_tb: float, memory: float) -> Device:
    return Device(name=name, kind="cuda", float32_flops=fp32 * TERA, tf32_flops=tf32 * TERA, half_flops=half * TERA,
                  bandwidth=bandwidth_tb * TERA, memory_gib=memory * 1e9 / 2**30, compute_efficiency=0.5,
                  bandwidth_efficiency=0.6, step_overhead_s=2.5e-4, load_bytes_per_s=2e9, job_overhead_s=20.0,
                  source=f"NVIDIA's published dense peaks; efficiency {GPU_FACTORS_SOURCE}")


#: The GPUs the plan knows: H100 SXM5 80 GB, A100 SXM4 80 GB, H200 SXM 141 GB.
GPUS: dict[str, Device] = {
    "h100": _gpu("h100", 67.0, 494.7, 989.4, 3.35, 80),
    "a100-80g": _gpu("a100-80g", 19.5, 156.0, 312.0, 2.039, 80),
    "h200": _gpu("h200", 67.0, 494.7, 989.4, 4.8, 141),
}

#: The CPU's factors (the peaks are measured when the plan runs).
CPU_FACTORS = {"compute_efficiency": 0.35, "bandwidth_efficiency": 0.5, "step_overhead_s": 2.3e-3,
               "load_bytes_per_s": 0.5e9, "job_overhead_s": 8.0}

DEVICE_NAMES: tuple[str, ...] = ("cpu", *GPUS)


def measure_bandwidth(mib: int = 256, repeats: int = 3) -> float:
    """Bytes per second one copy of a ``mib`` MiB tensor moves (read and write), best of ``repeats``."""
    import torch

    src = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up: pages touched
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / max(best, 1e-9)


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively, so that a model's ``dtype: auto`` picks it."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported())


def measure_cpu(threads: int | None = None) -> Device:
    """This machine's CPU: the float32 and bfloat16 matmul peaks and the copy bandwidth, measured now on
    ``threads`` threads (default: every core, as a model job on a CPU takes), with :data:`CPU_FACTORS`."""
    import torch

    from tomlab.backends.throughput import matmul_peak_gflops

    before = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        fp32 = matmul_peak_gflops(torch.float32, size=1024) * 1e9
        # bfloat16 runs on a CPU only where it has AVX512-BF16 (tomlab.backends.models.resolve_dtype)
        half = matmul_peak_gflops(torch.bfloat16, size=1024) * 1e9 if cpu_has_bf16() else fp32
        bandwidth = measure_bandwidth()
    finally:
        torch.set_num_threads(before)
    return Device(name="cpu", kind="cpu", float32_flops=fp32, tf32_flops=fp32, half_flops=half, bandwidth=bandwidth,
                  memory_gib=None, native_bf16=cpu_has_bf16(), source=f"peaks measured here; efficiency {CPU_FACTORS_SOURCE}", **CPU_FACTORS)


def device(name: str, cpu: Device | None = None) -> Device:
    """The device called ``name`` (:data:`DEVICE_NAMES`); ``cpu`` replaces a measurement of this machine."""
    if name == "cpu":
        return cpu if cpu is not None else measure_cpu()
    if name not in GPUS:
        raise ValueError(f"--device {name!r}: unknown device; known: {', '.join(DEVICE_NAMES)}")
    return GPUS[name]


def with_factors(dev: Device, **factors: float) -> Device:
    """``dev`` with some efficiency factors replaced (a rehearsal's measurements)."""
    return replace(dev, **factors)
