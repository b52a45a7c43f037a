"""Doubt 4, probes on the several-minds stories (:mod:`tomlab.stress.minds`): do the heads that read the
protagonist's belief in BigToM also read the beliefs of three minds, first and second order?

Per group of samples (:data:`GROUPS`), one probe per head is fitted on the training stories (a split by
story) and scored on the validation stories; the heads are also ranked on an inner split of the
training stories alone, so "the best head" is chosen without a validation sample. The forward-belief
heads are the stress tests' own ranking of the main task (the ``inner`` rows of
:func:`tomlab.stress.transfer.transfer_correct`), with the per-head map on the original validation
stories beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tomlab.probing.estimator import DEFAULT_C_BINARY, DEFAULT_C_JOINT, DEFAULT_MAX_ITER
from tomlab.probing.probes import split_train_val
from tomlab.stress.transfer import (
    ORIGINAL,
    head_correct,
    inner_ranking,
    interval_fields,
    jaccard_columns,
    spearman_columns,
    story_weights,
    top_sets,
)

GROUPS: dict[str, tuple[str, int | None, str | None]] = {
    "first_order": ("belief", 1, None),  # "Ana believes that ...": is it true? (every character)
    "second_order": ("belief", 2, None),  # "Ana thinks that Bo believes that ...": is it true?
    "world": ("oracle", None, None),  # the attributed content holds after the event (every sample)
    "joint": ("joint", 1, None),  # content and attribution at once, first order (4 classes)
    "seer": ("belief", 1, "seer"),  # one character's own belief: the one who saw the change
    "unaware": ("belief", 1, "unaware"),  # ... the one who did not
    "told": ("belief", 1, "told"),  # ... the one who was told
}
"""Each probe group: the label it decodes, the belief order of its samples (None: all) and the character
role they ask about (None: every role)."""

MINDS_COLUMNS: tuple[str, ...] = ("group", "target", "layer", "head", "sample", "story", "correct")
MINDS_STAT_COLUMNS: tuple[str, ...] = (
    "group", "target", "n", "n_stories", "chance", "best_head", "best_acc", "best_low", "best_high",
    "belief_heads_acc", "belief_heads_low", "belief_heads_high", "best_on_val_acc", "spearman", "jaccard", "top_k",
)


def minds_correct(acts: np.ndarray, samples: pd.DataFrame, *, val_fraction: float = 0.2, seed: int = 0,
                  max_iter: int = DEFAULT_MAX_ITER) -> pd.DataFrame:
    """Per validation sample of each group, whether each head's probe gets it right; plus each head's
    inner-split accuracy (rows with ``sample`` -1), its ranking. Long frame of :data:`MINDS_COLUMNS`."""
    acts = np.asarray(acts)
    if len(samples) != len(acts):
        raise ValueError(f"minds probes: {len(acts)} activations but {len(samples)} samples")
    is_val = split_train_val(samples, val_fraction=val_fraction, mode="by_story", seed=seed)
    n_layers, n_heads = acts.shape[1:3]
    layer, head = np.divmod(np.arange(n_layers * n_heads), n_heads)
    frames = []
    for group, (target, order, role) in GROUPS.items():
        rows = np.ones(len(samples), dtype=bool) if order is None else (samples["order"] == order).to_numpy(copy=True)
        if role is not None:
            rows = rows & (samples["role"] == role).to_numpy()
        y = samples[target].to_numpy()
        k = len(np.unique(y[rows]))
        C = DEFAULT_C_BINARY if k == 2 else DEFAULT_C_JOINT
        train, val = rows & ~is_val, rows & is_val
        hits = head_correct(acts[train], y[train], {group: (acts[val], y[val])}, C=C, max_iter=max_iter)[group]
        ranking = inner_ranking(acts[train], y[train], samples.loc[train, "story_id"].to_numpy(), C=C,
                                max_iter=max_iter, seed=seed)
        g, n = hits.shape
        frames.append(pd.DataFrame({"group": group, "target": target, "layer": layer, "head": head, "sample": -1,
                                    "story": -1, "correct": ranking}))
        frames.append(pd.DataFrame({"group": group, "target": target, "layer": np.repeat(layer, n),
                                    "head": np.repeat(head, n), "sample": np.tile(np.arange(n), g),
                                    "story": np.tile(samples.loc[val, "story_id"].to_numpy(), g),
                                    "correct": hits.ravel().astype(float)}))
    return pd.concat(frames, ignore_index=True).reindex(columns=list(MINDS_COLUMNS))


def _ranked(frame: pd.DataFrame) -> np.ndarray:
    return frame.sort_values(["layer", "head"])["correct"].to_numpy(dtype=float)


def minds_stats(correct: pd.DataFrame, transfer: pd.DataFrame, *, top_k: int = 16, n_boot: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """One row per group (:data:`MINDS_STAT_COLUMNS`): the best head (chosen on the inner split) and its
    validation accuracy; the mean accuracy of the forward-belief top-``top_k`` heads (ranked on the main
    task's inner split) refitted on this group; the best head on validation (optimistic); the Spearman
    correlation of this group's per-head map with the forward-belief map on the original validation
    stories, and the Jaccard overlap of their top-``top_k`` heads. Intervals: 95% cluster bootstrap over
    stories."""
    rng = np.random.default_rng(seed)
    belief_rank = _ranked(transfer[transfer["shift"] == "inner"])
    orig = transfer[(transfer["shift"] == ORIGINAL) & (transfer["method"] == "head")]
    belief_map = orig.groupby(["layer", "head"])["correct"].mean().sort_index().to_numpy()
    top_k = min(int(top_k), len(belief_rank))
    belief_top = np.zeros(len(belief_rank), dtype=bool)
    belief_top[np.argsort(-belief_rank, kind="stable")[:top_k]] = True
    rows: list[dict[str, Any]] = []
    for group in dict.fromkeys(correct["group"]):
        part = correct[correct["group"] == group]
        inner = _ranked(part[part["sample"] == -1])
        val = part[part["sample"] >= 0].sort_values(["layer", "head", "sample"])
        n = int(val["sample"].max()) + 1
        h = val["correct"].to_numpy(dtype=float).reshape(-1, n)
        stories = val["story"].to_numpy()[:n]
        if h.shape[0] != len(belief_rank):
            raise ValueError(f"minds group {group!r} has {h.shape[0]} heads, the forward-belief map {len(belief_rank)}")
        w = story_weights(stories, n_boot, rng)
        best = int(np.argmax(inner))
        pooled = h[belief_top].mean(axis=0)
        n_classes = 4 if part["target"].iloc[0] == "joint" else 2
        mean = h.mean(axis=1)
        rows.append({
            "group": group, "target": part["target"].iloc[0], "n": n, "n_stories": len(np.unique(stories)),
            "chance": 1.0 / n_classes, "best_head": f"L{best // _n_heads(part)}H{best % _n_heads(part)}",
            "best_acc": float(h[best].mean()), **interval_fields("best", h[best] @ w),
            "belief_heads_acc": float(pooled.mean()), **interval_fields("belief_heads", pooled @ w),
            "best_on_val_acc": float(mean.max()),
            "spearman": float(spearman_columns(mean[:, None], belief_map[:, None])[0]),
            "jaccard": float(jaccard_columns(top_sets(mean[:, None], top_k, rng),
                                             top_sets(belief_map[:, None], top_k, rng))[0]),
            "top_k": top_k,
        })
    return pd.DataFrame(rows, columns=list(MINDS_STAT_COLUMNS))


def _n_heads(part: pd.DataFrame) -> int:
    return int(part["head"].max()) + 1


def head_map(correct: pd.DataFrame, group: str) -> pd.DataFrame:
    """A group's validation accuracy per head as a (layer x head) table, for the probe-map figure."""
    part = correct[(correct["group"] == group) & (correct["sample"] >= 0)]
    if part.empty:
        raise ValueError(f"no minds probes for group {group!r}")
    return part.groupby(["layer", "head"])["correct"].mean().unstack("head").sort_index()
