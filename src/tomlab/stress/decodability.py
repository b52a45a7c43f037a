"""Doubt 1, "too simple a problem: any linear read-out would succeed": the decodability curve.

Probe accuracy against the number of features pooled, for

- ``best_head``: the single head chosen on the training data alone (an inner split of the training
  stories picks it, then it is refitted on all of them), so its validation accuracy is unbiased;
- ``best_head_on_val``: the head with the best validation accuracy, as the paper picks it (optimistic:
  the maximum over hundreds of heads of a noisy estimate);
- ``random_heads``: K heads drawn at random across layers, their features concatenated (K = 1, 2, 4,
  ..., several draws each);
- ``layer``: every whole layer (all its heads), one draw per layer;
- ``random_projection``: a random Gaussian projection of a random layer's concatenated features to
  as many dimensions as K heads have (the per-head site holds the attention output of each head;
  the concatenation is that layer's attention output, not the residual stream, which tomlab does not
  capture).

Every fit is an L2 logistic regression (:class:`BatchedLogisticRegression`, the probes' own solver and
C); wide designs are reduced exactly to the training row space. The result is per validation sample
(with its ``story``: intervals resample stories), so intervals can be paired across conditions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from tomlab.probing.estimator import (
    DEFAULT_C_BINARY,
    DEFAULT_C_JOINT,
    DEFAULT_MAX_ITER,
    BatchedLogisticRegression,
)
from tomlab.probing.probes import TARGETS, _row_space_features, head_groups
from tomlab.stress.transfer import inner_split

CONDITIONS: tuple[str, ...] = ("best_head", "best_head_on_val", "random_heads", "layer", "random_projection")
DEFAULT_KS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)


def _correct(x_train: np.ndarray, x_val: np.ndarray, y_train: np.ndarray, y_val: np.ndarray, C: float,
             max_iter: int) -> np.ndarray:
    """Fit one probe per group (G, N, D) and return which validation samples each gets right (G, N_val)."""
    if x_train.shape[2] > x_train.shape[1]:  # wide: the exact row-space reduction
        x_train, x_val = _row_space_features(x_train, x_val, torch.device("cpu"))
    est = BatchedLogisticRegression(C=C, max_iter=max_iter)
    est.fit(x_train, y_train)
    return est.predict(x_val) == np.asarray(y_val)[None, :]


def _rows(condition: str, k: int, n_features: int, correct: np.ndarray, units: Sequence[str],
          stories: np.ndarray) -> pd.DataFrame:
    g, n_val = correct.shape
    return pd.DataFrame({
        "condition": condition, "k": k, "n_features": n_features,
        "draw": np.repeat(np.arange(g), n_val), "unit": np.repeat(np.asarray(units, dtype=object), n_val),
        "sample": np.tile(np.arange(n_val), g), "story": np.tile(stories, g), "correct": correct.ravel(),
    })


def decodability_curve(
    acts: np.ndarray,
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    target: str = "protagonist",
    ks: Sequence[int] = DEFAULT_KS,
    draws: int = 5,
    seed: int = 0,
    C: float | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    inner_fraction: float = 0.25,
) -> pd.DataFrame:
    """Per validation sample, whether each probe of each condition gets it right.

    ``acts`` is (N, L, H, D) per-head activations, ``meta`` the sample table (with the ``target``
    column), ``is_val`` the validation mask. Returns a long frame: condition, k (heads' worth of
    features), n_features, draw, unit (which heads or layer), sample (validation index), correct.
    ``ks`` larger than the number of heads are dropped; random projections stop below a layer's width.
    """
    if target not in meta.columns:
        raise ValueError(f"decodability: target {target!r} is not a column of the samples (known: {', '.join(TARGETS)})")
    acts = np.asarray(acts)
    is_val = np.asarray(is_val, dtype=bool)
    n, n_layers, n_heads, d = acts.shape
    if len(meta) != n or is_val.shape != (n,) or is_val.all() or not is_val.any():
        raise ValueError(f"decodability: activations ({n}), samples ({len(meta)}) and split {is_val.shape} disagree, "
                         "or the split has an empty side")
    y = meta[target].to_numpy()
    k_classes = TARGETS.get(target, len(np.unique(y)))
    C = float(C if C is not None else (DEFAULT_C_BINARY if k_classes == 2 else DEFAULT_C_JOINT))
    rng = np.random.default_rng(seed)
    heads = head_groups(acts, dtype=np.float64)  # (G, N, D), group = layer * H + head
    x_tr, x_va, y_tr, y_va = heads[:, ~is_val], heads[:, is_val], y[~is_val], y[is_val]
    names = [f"L{g // n_heads}H{g % n_heads}" for g in range(n_layers * n_heads)]
    stories = meta["story_id"].to_numpy() if "story_id" in meta.columns else np.arange(n)
    val_stories = stories[is_val]
    frames = []

    every = _correct(x_tr, x_va, y_tr, y_va, C, max_iter)  # every head, fitted on all training samples
    on_val = int(every.mean(axis=1).argmax())
    frames.append(_rows("best_head_on_val", 1, d, every[[on_val]], [names[on_val]], val_stories))
    # the inner split holds out whole training stories (each sample is its own story without story_id)
    inner = inner_split(stories[~is_val], y_tr, seed=seed, inner_fraction=inner_fraction)
    picked = int(_correct(x_tr[:, ~inner], x_tr[:, inner], y_tr[~inner], y_tr[inner], C, max_iter).mean(axis=1).argmax())
    frames.append(_rows("best_head", 1, d, every[[picked]], [names[picked]], val_stories))

    n_groups = n_layers * n_heads
    for k in [k for k in ks if 1 <= k <= n_groups]:
        subsets = [np.sort(rng.choice(n_groups, size=k, replace=False)) for _ in range(draws)]
        xt = np.stack([np.concatenate(list(x_tr[s]), axis=1) for s in subsets])
        xv = np.stack([np.concatenate(list(x_va[s]), axis=1) for s in subsets])
        frames.append(_rows("random_heads", k, k * d, _correct(xt, xv, y_tr, y_va, C, max_iter),
                            ["+".join(names[i] for i in s) for s in subsets], val_stories))
        if k < n_heads:
            layers = rng.integers(n_layers, size=draws)
            proj = [rng.standard_normal((n_heads * d, k * d)) / np.sqrt(k * d) for _ in range(draws)]
            whole_tr = [acts[~is_val, lay].reshape(-1, n_heads * d).astype(np.float64) for lay in layers]
            whole_va = [acts[is_val, lay].reshape(-1, n_heads * d).astype(np.float64) for lay in layers]
            xt = np.stack([w @ p for w, p in zip(whole_tr, proj)])
            xv = np.stack([w @ p for w, p in zip(whole_va, proj)])
            frames.append(_rows("random_projection", k, k * d, _correct(xt, xv, y_tr, y_va, C, max_iter),
                                [f"L{lay} projected" for lay in layers], val_stories))
    whole = np.ascontiguousarray(np.moveaxis(acts, 0, 1)).reshape(n_layers, n, n_heads * d).astype(np.float64)
    frames.append(_rows("layer", n_heads, n_heads * d,
                        _correct(whole[:, ~is_val], whole[:, is_val], y_tr, y_va, C, max_iter),
                        [f"L{lay}" for lay in range(n_layers)], val_stories))
    out = pd.concat(frames, ignore_index=True)
    out["target"] = target
    out["n_classes"] = k_classes
    return out


def chance_level(correct: pd.DataFrame) -> float:
    """The accuracy of guessing, for the target of a :func:`decodability_curve` result."""
    return 1.0 / int(correct["n_classes"].iloc[0])


def curve_summary(correct: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (condition, k): mean over draws, and the lowest and highest draw."""
    acc = correct.groupby(["condition", "k", "n_features", "draw"], as_index=False)["correct"].mean()
    out = acc.groupby(["condition", "k", "n_features"], as_index=False)["correct"].agg(["mean", "min", "max", "count"])
    out = out.rename(columns={"mean": "accuracy", "min": "lowest", "max": "highest", "count": "draws"})
    order = {c: i for i, c in enumerate(CONDITIONS)}
    return out.sort_values(["condition", "k"], key=lambda s: s.map(order) if s.name == "condition" else s).reset_index(drop=True)
