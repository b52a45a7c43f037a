"""Steering accuracy beside the plain model's, with paired bootstrap deltas."""

from __future__ import annotations

from typing import Any

import pandas as pd

_MODE_COLUMNS = {"generation": "correct_pred", "log-likelihood": "ll_correct"}


def steering_accuracy(
    baseline: pd.DataFrame, steered: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Accuracy under every intervention next to the plain model's, on the same items.

    ``baseline``: scored items without intervention (``tomlab evaluate``); ``steered``: scored items
    with columns ``source_task`` (where the direction was learned), ``direction``, ``site`` and
    ``alpha`` (``tomlab steer``).  One row per (source_task, task, direction, site, condition,
    mode), plus the baseline rows (direction ``"none"``), with ``n``, ``accuracy``, its 95%
    bootstrap interval, ``invalid_rate`` (generation only), ``baseline`` (the plain accuracy on
    the same items) and ``delta`` = accuracy - baseline with a *paired* bootstrap interval (the
    per-item differences are resampled), which says whether a change is beyond item noise.
    """
    from tomlab.stats import bootstrap_ci

    keys = ["source_task", "task", "direction", "site", "condition"]
    missing = set(keys + ["item_id", "alpha"]) - set(steered.columns)
    if missing:
        raise ValueError(f"the steered frame lacks column(s) {sorted(missing)}")
    if baseline["item_id"].duplicated().any():
        raise ValueError("the baseline frame has repeated item_id rows")
    rows: list[dict[str, Any]] = []
    modes = [m for m, col in _MODE_COLUMNS.items() if col in steered.columns and col in baseline.columns]
    if not modes:
        raise ValueError("baseline and steered frames share no scoring mode")
    base_index = baseline.set_index("item_id")
    for mode in modes:
        col = _MODE_COLUMNS[mode]
        for (task, condition), frame in baseline.groupby(["task", "condition"], sort=False):
            values = frame[col].astype(float).to_numpy()
            low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
            invalid = float(1 - frame["valid"].mean()) if mode == "generation" and "valid" in frame else float("nan")
            rows.append({"source_task": "", "task": task, "direction": "none", "site": "", "condition": condition,
                         "alpha": 0.0, "mode": mode, "n": len(frame), "accuracy": float(values.mean()),
                         "ci_low": low, "ci_high": high, "invalid_rate": invalid, "baseline": float(values.mean()),
                         "delta": 0.0, "delta_ci_low": 0.0, "delta_ci_high": 0.0})
        for key, frame in steered.groupby(keys, sort=False):
            record = dict(zip(keys, key))
            missing_items = set(frame["item_id"]) - set(base_index.index)
            if missing_items:
                raise ValueError(f"{len(missing_items)} steered item(s) are not in the baseline, e.g. "
                                 f"{sorted(missing_items)[0]!r}")
            values = frame[col].astype(float).to_numpy()
            plain = base_index.loc[frame["item_id"], col].astype(float).to_numpy()
            low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
            d_low, d_high = bootstrap_ci(values - plain, n_boot=n_boot, seed=seed)
            invalid = float(1 - frame["valid"].mean()) if mode == "generation" and "valid" in frame else float("nan")
            rows.append({**record, "alpha": float(frame["alpha"].iloc[0]), "mode": mode, "n": len(frame),
                         "accuracy": float(values.mean()), "ci_low": low, "ci_high": high, "invalid_rate": invalid,
                         "baseline": float(plain.mean()), "delta": float(values.mean() - plain.mean()),
                         "delta_ci_low": d_low, "delta_ci_high": d_high})
    return pd.DataFrame(rows)
