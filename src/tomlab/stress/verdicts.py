"""Verdicts on the doubts: one row per doubt, with the statistic that decides it and its 95% interval.

A verdict is one of :data:`VERDICTS`, decided by fixed rules written beside each experiment's
statistic (so a reader can check the call from the numbers in the row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab.stats import bootstrap_ci
from tomlab.stress.decodability import chance_level

VERDICTS: tuple[str, ...] = ("supports the claim", "undermines it", "inconclusive at this scale")
COLUMNS: tuple[str, ...] = ("doubt", "experiment", "statistic", "estimate", "ci_low", "ci_high", "verdict", "evidence")

DOUBT_SIMPLE = "Too simple a problem: any linear read-out would succeed"


def _per_sample(correct: pd.DataFrame, condition: str, k: int) -> np.ndarray:
    """Each validation sample's accuracy under one condition and pool size, averaged over draws."""
    rows = correct[(correct["condition"] == condition) & (correct["k"] == k)]
    if rows.empty:
        raise ValueError(f"no {condition} probes with k={k} in the decodability results")
    return rows.groupby("sample")["correct"].mean().sort_index().to_numpy(dtype=float)


def decodability_verdict(correct: pd.DataFrame, *, few: int = 4, n_boot: int = 1000, seed: int = 0,
                         max_width: float = 0.2, margin: float = 0.1) -> dict[str, Any]:
    """Doubt 1's row. Statistic: accuracy of the best single head (chosen on training data) minus the
    mean accuracy of random pools of ``few`` heads (the largest pool size not above ``few``), paired
    over validation samples, with a percentile bootstrap interval over those samples.

    Rules: if the best head is within ``margin`` of chance, nothing decodes, so "inconclusive at this
    scale"; an interval above 0 "supports the claim" (one head carries more than a few random ones);
    below 0, or containing 0 while narrower than ``max_width``, "undermines it" (random pools do as
    well); an interval containing 0 and wider than ``max_width`` is "inconclusive at this scale".
    """
    sizes = sorted(int(k) for k in correct.loc[correct["condition"] == "random_heads", "k"].unique())
    pool = max([k for k in sizes if k <= few], default=None)
    if pool is None:
        raise ValueError("the decodability results have no random-head pools")
    best = _per_sample(correct, "best_head", 1)
    rand = _per_sample(correct, "random_heads", pool)
    diff = best - rand
    low, high = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
    if best.mean() <= chance_level(correct) + margin:
        verdict = VERDICTS[2]
    elif low > 0:
        verdict = VERDICTS[0]
    elif high < 0 or high - low <= max_width:
        verdict = VERDICTS[1]
    else:
        verdict = VERDICTS[2]
    layer = correct[correct["condition"] == "layer"].groupby("draw")["correct"].mean()
    evidence = (f"best head {best.mean():.2f} vs {pool} random heads {rand.mean():.2f} on {len(best)} validation "
                f"samples; best whole layer {layer.max():.2f}" if len(layer) else
                f"best head {best.mean():.2f} vs {pool} random heads {rand.mean():.2f} on {len(best)} samples")
    return {"doubt": DOUBT_SIMPLE,
            "experiment": f"decodability curve: the best single head (chosen on training data) against random pools "
                          f"of {pool} heads",
            "statistic": f"accuracy(best head) - accuracy({pool} random heads)", "estimate": float(diff.mean()),
            "ci_low": low, "ci_high": high, "verdict": verdict, "evidence": evidence}


def verdict_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The verdict rows as a frame with :data:`COLUMNS` (a bad verdict is refused)."""
    for row in rows:
        if row["verdict"] not in VERDICTS:
            raise ValueError(f"unknown verdict {row['verdict']!r}; known: {VERDICTS}")
    return pd.DataFrame([{c: row[c] for c in COLUMNS} for row in rows], columns=list(COLUMNS))
