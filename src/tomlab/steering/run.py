"""Running the model under an intervention: steered evaluation, sweeps, mechanism views, free text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab.backends.hooks import HeadIntervention
from tomlab.backends.models import LoadedModel
from tomlab.steering.intervention import intervention_fingerprint


def steered_generator(generator: Any, cache_dir: str | Any | None, fingerprint: str) -> Any:
    """``generator`` behind a completion cache whose namespace is the intervention's fingerprint."""
    from tomlab.backends.lm import CachedLM

    return CachedLM(generator, cache_dir, namespace=fingerprint) if cache_dir else generator


def evaluate_steered(
    lm: LoadedModel,
    items: pd.DataFrame,
    generator: Any,
    config: Any,
    *,
    heads: Sequence[tuple[int, int]] | np.ndarray,
    directions: np.ndarray,
    sigma: np.ndarray,
    alpha: float,
    site: str,
    cache_dir: str | Any | None = None,
    modes: Sequence[str] = ("generation", "log-likelihood"),
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Score ``items`` with the intervention active (see :func:`tomlab.evaluation.evaluate_items`).

    ``generator`` is the plain :class:`tomlab.lm.TransformersLM` over ``lm``; completions are cached
    under ``cache_dir`` in the namespace :func:`intervention_fingerprint`, so an unchanged rerun
    generates nothing.  Returns the scored items (with ``alpha`` and ``site`` columns) and the
    cache counters.
    """
    from tomlab.backends.lm import CachedLM
    from tomlab.bigtom.evaluation import evaluate_items

    pairs = [(int(a), int(b)) for a, b in np.asarray(heads, dtype=np.int64).reshape(-1, 2)]
    fingerprint = intervention_fingerprint(pairs, directions, sigma, alpha, site)
    cached = steered_generator(generator, cache_dir, fingerprint)
    with HeadIntervention(lm, pairs, directions, sigma, alpha, site=site) as hook:
        scored = evaluate_items(lm, items, cached, config, modes=modes, batch_size=batch_size,
                                intervention=hook, progress=progress)
    counters = {"cache_hits": cached.hits, "cache_misses": cached.misses} if isinstance(cached, CachedLM) else {}
    return scored.assign(alpha=float(alpha), site=site), counters


def token_projections(
    lm: LoadedModel,
    prompt: str,
    heads: Sequence[tuple[int, int]] | np.ndarray,
    directions: np.ndarray,
    sigma: np.ndarray,
    site: str = "head_z",
) -> pd.DataFrame:
    """Per token of ``prompt``: each chosen head's activation projected on its direction.

    One row per (position, head) with ``position``, ``token``, ``layer``, ``head``, ``projection``
    (the dot product with the unit direction) and ``z`` (projection divided by the head's sigma, so
    heads are comparable: an intervention of strength alpha moves ``z`` by alpha).
    """
    from tomlab.backends.activations import token_activations

    acts, tokens = token_activations(lm, prompt, site=site)
    theta = np.asarray(directions, dtype=np.float64)
    sig = np.asarray(sigma, dtype=np.float64)
    rows = []
    for layer, head in np.asarray(heads, dtype=np.int64).reshape(-1, 2):
        proj = acts[:, layer, head, :].astype(np.float64) @ theta[layer, head]
        scale = sig[layer, head] if sig[layer, head] > 0 else np.nan
        for pos, (tok, value) in enumerate(zip(tokens, proj)):
            rows.append({"position": pos, "token": tok, "layer": int(layer), "head": int(head),
                         "projection": float(value), "z": float(value / scale)})
    return pd.DataFrame(rows)
