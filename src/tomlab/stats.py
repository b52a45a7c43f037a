"""Interval estimates shared by every experiment: the one bootstrap and the binomial standard error."""

from __future__ import annotations

import math

import numpy as np


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling items with replacement).

    ``n_boot`` resamples are drawn from ``rng`` when given (so that several intervals share one
    stream, as a table's groups do), else from ``numpy.random.default_rng(seed)``; the interval is
    the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the resampled means.  Empty input gives
    ``(nan, nan)`` and draws nothing.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if x.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed) if rng is None else rng
    means = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, 2_000_000 // x.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


def binomial_se(p: float, n: int) -> float:
    """Binomial standard error sqrt(p(1-p)/n); NaN when n is not positive."""
    if n <= 0 or not math.isfinite(p):
        return float("nan")
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)
