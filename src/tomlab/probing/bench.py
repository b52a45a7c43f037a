"""The probing benchmark: batched probes against a loop of scikit-learn fits on the same data."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from tomlab.probing.estimator import (
    DEFAULT_C_BINARY,
    DEFAULT_C_JOINT,
    DEFAULT_MAX_ITER,
    BatchedLogisticRegression,
)
from tomlab.probing.probes import _check_split, _target_labels, head_groups


def sklearn_grid(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    C: float,
    max_iter: int,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: one scikit-learn ``LogisticRegression`` per group, in a plain loop.

    ``X_train`` (G, N_train, D), ``X_val`` (G, N_val, D); labels (N,) shared or (G, N).
    Returns per-group (train_acc, val_acc), each (G,).  Convergence warnings are collected
    and re-issued once.
    """
    train_acc, val_acc, n_unconverged, _ = _sklearn_loop(X_train, y_train, X_val, y_val, C, max_iter, tol)
    if n_unconverged:
        message = f"sklearn_grid: {n_unconverged} of {len(train_acc)} fits hit max_iter={max_iter}"
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return train_acc, val_acc


def _sklearn_loop(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    C: float,
    max_iter: int,
    tol: float,
    coef_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """The loop behind :func:`sklearn_grid`; also returns how many fits stopped at ``max_iter`` and,
    with ``coef_class``, each fit's weight row of that class (G, D) (else None)."""
    X_train = np.asarray(X_train)
    X_val = np.asarray(X_val)
    y_train = np.asarray(y_train)
    y_val = np.asarray(y_val)
    g = X_train.shape[0]
    train_acc = np.empty(g)
    val_acc = np.empty(g)
    rows = None if coef_class is None else np.empty((g, X_train.shape[2]))
    n_unconverged = 0
    for i in range(g):
        ytr = y_train if y_train.ndim == 1 else y_train[i]
        yva = y_val if y_val.ndim == 1 else y_val[i]
        model = LogisticRegression(C=C, max_iter=max_iter, tol=tol)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(np.asarray(X_train[i], dtype=np.float64), ytr)
        n_unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        train_acc[i] = model.score(np.asarray(X_train[i], dtype=np.float64), ytr)
        val_acc[i] = model.score(np.asarray(X_val[i], dtype=np.float64), yva)
        if rows is not None:
            rows[i] = model.coef_[int(np.flatnonzero(model.classes_ == coef_class)[0])]
    return train_acc, val_acc, n_unconverged, rows


def synthetic_activations(
    n_stories: int = 100,
    n_layers: int = 30,
    n_heads: int = 9,
    dim: int = 64,
    *,
    separation: tuple[float, float] = (1.2, 5.0),
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Synthetic (acts, meta) with the layout of real probing data, for tests and benchmarks.

    Four samples per story (every oracle x protagonist combination once, in random order).
    Each head's activations are standard normal noise plus class means: the oracle and the
    protagonist labels each move the mean along a random direction by a distance drawn
    uniformly from ``separation`` (independently per head), so per-head probe accuracies
    spread from near chance to near 1.  Returns float16 ``acts`` (N, L, H, D) and ``meta``
    with sample_id, story_id, prompt, oracle, protagonist, joint.
    """
    rng = np.random.default_rng(seed)
    n = 4 * n_stories
    combos = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    order = np.concatenate([rng.permutation(4) for _ in range(n_stories)])
    oracle, protagonist = combos[order, 0], combos[order, 1]
    acts = rng.standard_normal((n, n_layers, n_heads, dim), dtype=np.float32)
    for label in (oracle, protagonist):
        direction = rng.standard_normal((n_layers, n_heads, dim)).astype(np.float32)
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        distance = rng.uniform(*separation, size=(n_layers, n_heads, 1)).astype(np.float32)
        acts += (label[:, None, None, None] - 0.5).astype(np.float32) * (distance * direction)
    words = np.array(["the", "ball", "is", "in", "a", "box", "basket", "room", "she", "he"])
    prompts = [" ".join(rng.choice(words, size=12)) for _ in range(n)]
    meta = pd.DataFrame(
        {
            "sample_id": np.arange(n),
            "story_id": np.repeat(np.arange(n_stories), 4),
            "prompt": prompts,
            "oracle": oracle,
            "protagonist": protagonist,
            "joint": 2 * oracle + protagonist,
        }
    )
    return acts.astype(np.float16), meta


def bench_probing(
    acts: np.ndarray,
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    target: str = "oracle",
    C: float = DEFAULT_C_BINARY,
    max_iter: int = DEFAULT_MAX_ITER,
    repeats: int = 1,
    sklearn_tol: float = 1e-6,
    sklearn_max_iter: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Time batched Newton vs the scikit-learn loop on every head for one target.

    ``sklearn_max_iter`` (default: ``max_iter``) bounds lbfgs; on real, unscaled activations
    the original's 1000 iterations do not always reach the optimum, and the number of fits
    that stopped at the bound is returned as ``sklearn_not_converged``.

    Both paths fit on the training samples and score train and validation accuracy; each is
    run ``repeats`` times and the fastest run is reported (``time.perf_counter``).  The
    batched model uses its default ``tol`` (1e-8); the scikit-learn loop uses
    ``sklearn_tol`` (1e-6, as :func:`sklearn_grid`).  At 1e-6 lbfgs can stop a hair short of
    the optimum and flip a validation point that sits on the decision boundary, which shows
    up in ``max_acc_gap`` as one sample (1 / n_val); a tighter ``sklearn_tol`` removes it.
    ``device`` is where the batched model runs (its timing includes the transfers).

    Returns n_probes, n_train, n_val, dim, batched_seconds, sklearn_seconds, speedup
    (sklearn / batched), max_acc_gap and mean_acc_gap (|val acc batched - val acc sklearn|
    over heads), target and torch_threads.
    """
    is_val = _check_split(acts, meta, is_val)
    d = acts.shape[3]
    groups = head_groups(acts)
    x_train = groups[:, ~is_val].astype(np.float64)
    x_val = groups[:, is_val].astype(np.float64)
    y, _ = _target_labels(meta, target)
    y_train, y_val = y[~is_val], y[is_val]

    batched_times, sklearn_times = [], []
    batched_val = sklearn_val = np.empty(0)
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
        model.score(x_train, y_train)
        batched_val = model.score(x_val, y_val)
        batched_times.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        _, sklearn_val, not_converged, _ = _sklearn_loop(
            x_train, y_train, x_val, y_val, C, sklearn_max_iter or max_iter, sklearn_tol
        )
        sklearn_times.append(time.perf_counter() - t0)

    gap = np.abs(batched_val - sklearn_val)
    batched_seconds, sklearn_seconds = min(batched_times), min(sklearn_times)
    return {
        "n_probes": int(groups.shape[0]),
        "n_train": int((~is_val).sum()),
        "n_val": int(is_val.sum()),
        "dim": int(d),
        "batched_seconds": float(batched_seconds),
        "sklearn_seconds": float(sklearn_seconds),
        "speedup": float(sklearn_seconds / batched_seconds),
        "max_acc_gap": float(gap.max()),
        "mean_acc_gap": float(gap.mean()),
        "target": target,
        "torch_threads": int(torch.get_num_threads()),
        "batched_tol": float(model.tol),
        "sklearn_tol": float(sklearn_tol),
        "sklearn_max_iter": int(sklearn_max_iter or max_iter),
        "sklearn_not_converged": int(not_converged),
        "device": device,
    }


#: The joint probe's class whose weight row is the +tpfo steering direction (protagonist true, oracle false).
_TPFO_CLASS = 1

#: scikit-learn's default ``tol`` of ``LogisticRegression``, which the original's joint probe keeps.
_SKLEARN_DEFAULT_TOL = 1e-4


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (G, D) arrays (0 where a row is zero)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("gd,gd->g", a, b)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def _best(acc: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest accuracies; ties to the lower group (lower layer, then head)."""
    return np.argsort(-acc, kind="stable")[:k]


def bench_joint_cap(
    acts: np.ndarray,
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    capped_max_iter: int,
    top_k: int,
    C: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    device: str = "cpu",
) -> dict[str, Any]:
    """How much the original's iteration cap changes the joint (4-class) probe.

    Per head, on the training samples: the capped fit is scikit-learn's lbfgs softmax with
    ``max_iter=capped_max_iter`` (the original: 100, scikit-learn's default, default ``tol``);
    the converged fit is :class:`BatchedLogisticRegression` (``max_iter`` Newton steps, tol
    1e-8), as tomlab's probes and +tpfo directions use.  ``capped_max_iter`` and ``top_k`` come
    from the config (``bench.joint_capped_max_iter``, ``steering.top_k``).  Heads are ranked by validation accuracy
    (ties to the lower layer, then head), as the steering heads are.

    Returns (prefix ``joint_``): capped_max_iter, capped_not_converged (fits stopped at the
    cap), converged_not_converged, top_k, top_k_overlap (heads in both top-``top_k`` sets),
    tpfo_cosine_mean / _median / _min over all heads and tpfo_cosine_top_k_mean over the
    converged fit's top ``top_k`` (cosine of the TpFo weight rows, the +tpfo direction),
    max_val_acc_gap / mean_val_acc_gap (|capped - converged| validation accuracy over heads),
    capped_seconds and converged_seconds.
    """
    is_val = _check_split(acts, meta, is_val)
    groups = head_groups(acts)
    x_train = groups[:, ~is_val].astype(np.float64)
    x_val = groups[:, is_val].astype(np.float64)
    y, _ = _target_labels(meta, "joint")
    y_train, y_val = y[~is_val], y[is_val]
    k = min(int(top_k), groups.shape[0])

    t0 = time.perf_counter()
    model = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    converged_val = model.score(x_val, y_val)
    converged_rows = model.coef_[:, int(np.flatnonzero(model.classes_ == _TPFO_CLASS)[0]), :]
    converged_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    _, capped_val, n_capped, capped_rows = _sklearn_loop(
        x_train, y_train, x_val, y_val, C, capped_max_iter, _SKLEARN_DEFAULT_TOL, coef_class=_TPFO_CLASS
    )
    capped_seconds = time.perf_counter() - t0

    cos = _cosines(capped_rows, converged_rows)
    best_converged = _best(converged_val, k)
    overlap = len(set(best_converged.tolist()) & set(_best(capped_val, k).tolist()))
    gap = np.abs(capped_val - converged_val)
    return {
        "joint_C": float(C),
        "joint_capped_max_iter": int(capped_max_iter),
        "joint_capped_not_converged": int(n_capped),
        "joint_converged_not_converged": int((~model.converged_).sum()),
        "joint_top_k": k,
        "joint_top_k_overlap": int(overlap),
        "joint_tpfo_cosine_mean": float(cos.mean()),
        "joint_tpfo_cosine_median": float(np.median(cos)),
        "joint_tpfo_cosine_min": float(cos.min()),
        "joint_tpfo_cosine_top_k_mean": float(cos[best_converged].mean()),
        "joint_max_val_acc_gap": float(gap.max()),
        "joint_mean_val_acc_gap": float(gap.mean()),
        "joint_capped_seconds": float(capped_seconds),
        "joint_converged_seconds": float(converged_seconds),
    }
