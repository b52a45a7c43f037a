"""An intervention as one value: which heads, along which directions, how far, at which site."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tomlab.backends.hooks import HeadIntervention
from tomlab.backends.models import LoadedModel


def intervention_fingerprint(
    heads: Sequence[tuple[int, int]] | np.ndarray,
    directions: np.ndarray,
    sigma: np.ndarray,
    alpha: float,
    site: str,
) -> str:
    """A short content hash of everything an intervention adds; ``""`` when it adds nothing.

    Used as the completion cache's namespace, so steered and plain completions never mix and a
    zero-strength intervention shares the plain model's cache entries.
    """
    import hashlib

    pairs = [(int(a), int(b)) for a, b in np.asarray(heads, dtype=np.int64).reshape(-1, 2)]
    if float(alpha) == 0.0 or not pairs:
        return ""
    h = hashlib.sha256(f"{site}|{float(alpha)!r}|{pairs}".encode())
    theta = np.asarray(directions, dtype=np.float64)
    sig = np.asarray(sigma, dtype=np.float64)
    for layer, head in pairs:
        h.update(np.ascontiguousarray(theta[layer, head]).tobytes())
        h.update(np.float64(sig[layer, head]).tobytes())
    return "steer-" + h.hexdigest()[:16]


def intervened(
    lm: LoadedModel,
    heads: Sequence[tuple[int, int]],
    directions: np.ndarray,
    sigma: np.ndarray,
    alpha: float,
    site: str = "head_z",
) -> HeadIntervention:
    """``with intervened(lm, heads, directions, sigma, alpha): ...``: see :class:`HeadIntervention`."""
    return HeadIntervention(lm, heads, directions, sigma, alpha, site=site)
