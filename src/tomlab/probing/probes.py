"""Linear probes per attention head and per layer (Zhu, Zhang & Wang, ICML 2024): splits, the
shuffled-label control, a bag-of-words baseline, head ranking and cross-task correlation.

Activations are an array ``acts`` of shape (N samples, L layers, H heads, D head_dim) and ``meta`` a
DataFrame with one row per sample (``sample_id``, ``story_id``, ``prompt``, ``oracle``,
``protagonist``, ``joint``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from tomlab.probing.estimator import (
    DEFAULT_C_BINARY,
    DEFAULT_C_JOINT,
    DEFAULT_MAX_ITER,
    BatchedLogisticRegression,
)
from tomlab.probing.solver import (
    _MEMORY_BUDGET_BYTES,
    _lapack_threads,
    _to_tensor,
    default_chunk_size,
)
from tomlab.schema import vocabulary

#: Probe targets and their number of classes.
TARGETS: dict[str, int] = {"oracle": 2, "protagonist": 2, "joint": 4}


#: Allowed values of ``split_train_val(mode=...)``.
SPLIT_MODES: tuple[str, ...] = vocabulary("split_mode")


_DEFAULT_TARGETS: tuple[str, ...] = ("oracle", "protagonist", "joint")


def _n_chosen(fraction: float, total: int) -> int:
    n = round(fraction * total)
    if total >= 2:
        n = min(max(n, 1), total - 1)  # keep both sides non-empty
    return n


def split_train_val(
    meta: pd.DataFrame, val_fraction: float = 0.2, mode: str = "by_story", seed: int = 0
) -> np.ndarray:
    """Boolean ``is_val`` (N,) for a seeded train/validation split, shared by every target.

    ``by_story``: a random choice (``numpy.random.default_rng(seed)``) of
    ``round(val_fraction * n_stories)`` whole stories (every sample of a ``story_id``) is held
    out, so no story is on both sides; both sides are kept non-empty.  ``by_sample``: the
    original's split, scikit-learn's ``train_test_split(np.arange(N), test_size=val_fraction,
    random_state=seed)`` over the samples in ``sample_id`` order (row order when ``meta`` has
    no ``sample_id``), ``ceil(val_fraction * N)`` validation samples; with the samples of
    :func:`tomlab.probing.samples.build_probe_samples` it is the original's partition, and
    samples of one story land on both sides.
    """
    if mode not in SPLIT_MODES:
        raise ValueError(f"unknown split mode {mode!r}; allowed: {', '.join(SPLIT_MODES)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
    if mode == "by_sample":
        return _split_by_sample(meta, val_fraction, seed)
    rng = np.random.default_rng(seed)
    story = meta["story_id"].to_numpy()
    stories = np.unique(story)
    chosen = rng.choice(stories, size=_n_chosen(val_fraction, len(stories)), replace=False)
    return np.isin(story, chosen)


def _split_by_sample(meta: pd.DataFrame, val_fraction: float, seed: int) -> np.ndarray:
    """The original's ``train_test_split`` partition of the samples, in ``sample_id`` order."""
    n = len(meta)
    if n < 2:
        raise ValueError(f"a by_sample split needs at least 2 samples; got {n}")
    if "sample_id" in meta.columns:
        order = np.argsort(meta["sample_id"].to_numpy(), kind="stable")  # position of the i-th sample_id
    else:
        order = np.arange(n)
    _, val_ranks = train_test_split(np.arange(n), test_size=val_fraction, random_state=seed)
    is_val = np.zeros(n, dtype=bool)
    is_val[order[val_ranks]] = True
    return is_val


def shuffled_labels(y_train: np.ndarray, seed: int) -> np.ndarray:
    """Control-task labels: a seeded permutation of the training labels (along axis 0).

    The control probe is fitted on these and scored on the real validation labels, so its
    validation accuracy sits near chance; selectivity = real val acc - control val acc.
    """
    return np.random.default_rng(seed).permutation(np.asarray(y_train))


def head_groups(acts: np.ndarray, dtype: Any = None) -> np.ndarray:
    """Regroup activations (N, L, H, D) into one probing problem per head: (L*H, N, D).

    Group ``g`` is layer ``g // H``, head ``g % H``; ``dtype`` optionally casts the result.
    """
    n, n_layers, n_heads, d = np.shape(acts)
    grouped = np.ascontiguousarray(np.moveaxis(np.asarray(acts), 0, 2), dtype=dtype)
    return grouped.reshape(n_layers * n_heads, n, d)


def _target_labels(meta: pd.DataFrame, target: str) -> tuple[np.ndarray, int]:
    if target not in meta.columns:
        raise ValueError(f"target {target!r} is not a column of meta (known targets: {', '.join(TARGETS)})")
    y = meta[target].to_numpy()
    n_classes = TARGETS.get(target, len(np.unique(y)))
    return y, n_classes


def _check_split(acts: np.ndarray, meta: pd.DataFrame, is_val: np.ndarray) -> np.ndarray:
    if np.ndim(acts) != 4:
        raise ValueError(f"acts must have shape (N, L, H, D); got {np.shape(acts)}")
    is_val = np.asarray(is_val, dtype=bool)
    n = acts.shape[0]
    if len(meta) != n or is_val.shape != (n,):
        raise ValueError(f"acts ({n} samples), meta ({len(meta)} rows) and is_val {is_val.shape} disagree")
    if is_val.all() or not is_val.any():
        raise ValueError("is_val must select a non-empty, proper subset of the samples")
    return is_val


def _fit_real_and_control(
    x_train: np.ndarray,
    x_val: np.ndarray,
    y_train: np.ndarray,
    y_val: np.ndarray,
    y_control: np.ndarray,
    C: float,
    max_iter: int,
    device: str,
) -> tuple[np.ndarray, int]:
    """Fit the real and the control probe on a batch of groups.

    Returns the accuracies (3, G): train, val and control val; and the number of fits
    (real and control) that stopped short of the tolerance.
    """
    real = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device)
    control = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # counted and reported once by the caller
        real.fit(x_train, y_train)
        control.fit(x_train, y_control)
    acc = np.stack([real.score(x_train, y_train), real.score(x_val, y_val), control.score(x_val, y_val)])
    return acc, int((~real.converged_).sum() + (~control.converged_).sum())


def _warn_unconverged(n_unconverged: int, n_fits: int, max_iter: int, where: str) -> None:
    if n_unconverged:
        message = f"{where}: {n_unconverged} of {n_fits} probes did not reach tol within max_iter={max_iter}"
        warnings.warn(message, ConvergenceWarning, stacklevel=3)


def probe_heads(
    acts: np.ndarray,
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    C_binary: float = DEFAULT_C_BINARY,
    C_joint: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    targets: Sequence[str] = _DEFAULT_TARGETS,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """One probe per (layer, head) and target, plus its shuffled-label control.

    ``acts`` (N, L, H, D) is regrouped to (L*H, N, D) (group ``layer * H + head``) and cast to
    float64 chunk by chunk; each chunk is fitted with :class:`BatchedLogisticRegression` on the
    training samples (``C_binary`` for 2-class targets, ``C_joint`` otherwise) and again on
    :func:`shuffled_labels` (seeded by ``seed``) for the control.  Returns a long DataFrame
    with columns layer, head, target, train_acc, val_acc, control_acc, selectivity
    (= val_acc - control_acc), n_train, n_val.
    """
    is_val = _check_split(acts, meta, is_val)
    _, n_layers, n_heads, d = acts.shape
    groups = head_groups(acts)
    x_train, x_val = groups[:, ~is_val], groups[:, is_val]
    n_train, n_val = int((~is_val).sum()), int(is_val.sum())
    labels = {t: _target_labels(meta, t) for t in targets}
    chunks = {t: default_chunk_size(n_train, d, k) for t, (_, k) in labels.items()}
    n_groups = n_layers * n_heads
    total = sum(math.ceil(n_groups / chunks[t]) for t in targets)
    frames = []
    n_unconverged = 0
    with tqdm(total=total, desc="probing heads", disable=not progress) as bar:
        for target in targets:
            y, k = labels[target]
            C = C_binary if k == 2 else C_joint
            y_train, y_val = y[~is_val], y[is_val]
            y_control = shuffled_labels(y_train, seed)
            acc = np.empty((3, n_groups))
            for start in range(0, n_groups, chunks[target]):
                sl = slice(start, min(n_groups, start + chunks[target]))
                bar.set_postfix_str(f"{target} groups {sl.start}-{sl.stop - 1}")
                acc[:, sl], bad = _fit_real_and_control(
                    x_train[sl], x_val[sl], y_train, y_val, y_control, C, max_iter, device
                )
                n_unconverged += bad
                bar.update(1)
            layer, head = np.divmod(np.arange(n_groups), n_heads)
            frames.append(
                pd.DataFrame(
                    {
                        "layer": layer,
                        "head": head,
                        "target": target,
                        "train_acc": acc[0],
                        "val_acc": acc[1],
                        "control_acc": acc[2],
                        "selectivity": acc[1] - acc[2],
                        "n_train": n_train,
                        "n_val": n_val,
                    }
                )
            )
    _warn_unconverged(n_unconverged, 2 * n_groups * len(targets), max_iter, "probe_heads")
    return pd.concat(frames, ignore_index=True)


def probe_layers(
    acts: np.ndarray,
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    C_binary: float = DEFAULT_C_BINARY,
    C_joint: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    targets: Sequence[str] = _DEFAULT_TARGETS,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """One probe per whole layer (all heads concatenated, H*D features) and target.

    Uses :class:`BatchedLogisticRegression` over the L layers: when H*D exceeds the number of
    training samples (4096 > ~320 at Mistral scale) each layer is solved exactly in the
    N-dimensional row space of its design (thin SVD), so the Hessians are (N+1)-sized rather
    than (H*D+1)-sized and the chunking keeps memory near 1 GB; the per-layer optimum is
    the same as scikit-learn's.  Returns columns layer, target, train_acc, val_acc,
    control_acc, selectivity, n_train, n_val.
    """
    is_val = _check_split(acts, meta, is_val)
    n, n_layers, n_heads, d = acts.shape
    layers = np.ascontiguousarray(np.moveaxis(np.asarray(acts), 0, 1)).reshape(n_layers, n, n_heads * d)
    x_train, x_val = layers[:, ~is_val], layers[:, is_val]
    n_train, n_val = int((~is_val).sum()), int(is_val.sum())
    if n_heads * d > n_train:
        # Reduce once here rather than in each of the 2 * len(targets) fits.
        x_train, x_val = _row_space_features(x_train, x_val, torch.device(device))
    frames = []
    n_unconverged = 0
    for target in tqdm(list(targets), desc="probing layers", disable=not progress):
        y, k = _target_labels(meta, target)
        C = C_binary if k == 2 else C_joint
        y_train, y_val = y[~is_val], y[is_val]
        y_control = shuffled_labels(y_train, seed)
        (train_acc, val_acc, control_acc), bad = _fit_real_and_control(
            x_train, x_val, y_train, y_val, y_control, C, max_iter, device
        )
        n_unconverged += bad
        frames.append(
            pd.DataFrame(
                {
                    "layer": np.arange(n_layers),
                    "target": target,
                    "train_acc": train_acc,
                    "val_acc": val_acc,
                    "control_acc": control_acc,
                    "selectivity": val_acc - control_acc,
                    "n_train": n_train,
                    "n_val": n_val,
                }
            )
        )
    _warn_unconverged(n_unconverged, 2 * n_layers * len(targets), max_iter, "probe_layers")
    return pd.concat(frames, ignore_index=True)


def _row_space_features(
    x_train: np.ndarray, x_val: np.ndarray, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Exact reduction of wide designs (D > N) to the N-dimensional training row space.

    Per group, ``X_train = U S V'`` (thin SVD): returns ``U S`` (G, N, N) and ``X_val V``
    (G, N_val, N), float64.  An L2 probe on these has the same logits as one on the raw
    features, because the optimal weights lie in the row space of ``X_train``.
    """
    g, n, d = x_train.shape
    z_train = np.empty((g, n, n))
    z_val = np.empty((g, x_val.shape[1], n))
    chunk = max(1, _MEMORY_BUDGET_BYTES // (8 * 4 * (n + x_val.shape[1]) * d))
    for start in range(0, g, chunk):
        sl = slice(start, min(g, start + chunk))
        xt = _to_tensor(x_train[sl], device).to(torch.float64)
        with _lapack_threads(device):
            u, s, vh = torch.linalg.svd(xt, full_matrices=False)
        z_train[sl] = (u * s.unsqueeze(1)).cpu().numpy()
        z_val[sl] = torch.bmm(_to_tensor(x_val[sl], device).to(torch.float64), vh.mT).cpu().numpy()
    return z_train, z_val


def lexical_baseline(
    meta: pd.DataFrame,
    is_val: np.ndarray,
    *,
    C_binary: float = DEFAULT_C_BINARY,
    C_joint: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    targets: Sequence[str] = _DEFAULT_TARGETS,
) -> pd.DataFrame:
    """Bag-of-words probe on the prompt text alone (no activations).

    Lower-cased unigram+bigram counts of ``meta["prompt"]`` (vocabulary from the training
    prompts) feed a scikit-learn ``LogisticRegression`` per target.  ``majority_acc`` is the
    validation accuracy of always predicting the most frequent training class.  Returns
    columns target, train_acc, val_acc, majority_acc.
    """
    is_val = np.asarray(is_val, dtype=bool)
    if is_val.shape != (len(meta),) or is_val.all() or not is_val.any():
        raise ValueError("is_val must be a boolean mask over meta selecting a proper, non-empty subset")
    prompts = meta["prompt"].astype(str).to_numpy()
    vectorizer = CountVectorizer(lowercase=True, ngram_range=(1, 2))
    x_train = vectorizer.fit_transform(prompts[~is_val])
    x_val = vectorizer.transform(prompts[is_val])
    rows = []
    for target in targets:
        y, k = _target_labels(meta, target)
        y_train, y_val = y[~is_val], y[is_val]
        values, counts = np.unique(y_train, return_counts=True)
        majority = values[np.argmax(counts)]
        if len(values) < 2:
            train_acc, val_acc = 1.0, float(np.mean(y_val == majority))
        else:
            model = LogisticRegression(C=C_binary if k == 2 else C_joint, max_iter=max_iter)
            model.fit(x_train, y_train)
            train_acc, val_acc = float(model.score(x_train, y_train)), float(model.score(x_val, y_val))
        rows.append(
            {
                "target": target,
                "train_acc": train_acc,
                "val_acc": val_acc,
                "majority_acc": float(np.mean(y_val == majority)),
            }
        )
    return pd.DataFrame(rows, columns=["target", "train_acc", "val_acc", "majority_acc"])


def top_heads(heads: pd.DataFrame, target: str, k: int = 10, by: str = "val_acc") -> pd.DataFrame:
    """The ``k`` best heads for ``target`` by ``by`` (descending), with a 1-based ``rank``.

    Ties are broken by higher selectivity, then lower layer, then lower head.
    """
    if by not in heads.columns:
        raise ValueError(f"cannot rank by {by!r}: not a column of heads")
    sub = heads[heads["target"] == target]
    if sub.empty:
        raise ValueError(f"no rows for target {target!r}")
    keys, ascending = [by], [False]
    for col, asc in (("selectivity", False), ("layer", True), ("head", True)):
        if col != by:
            keys.append(col)
            ascending.append(asc)
    out = sub.sort_values(keys, ascending=ascending, kind="mergesort").head(k).reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def cross_task_correlation(
    heads_by_task: dict[str, pd.DataFrame], *, value: str = "val_acc", top_k: int = 16
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How similar the per-head probe accuracies of different tasks are (Figure 6 of Zhu et al.).

    ``heads_by_task`` maps a task name to its heads table (columns layer, head, target and
    ``value``) from one capture site.  Returns

    * a wide table: one row per (target, layer, head), one column per task holding ``value``;
    * the correlations: one row per target and unordered pair of tasks with ``pearson_r``,
      ``spearman_rho``, ``n_heads`` and ``top_k_overlap`` (how many of the ``top_k`` best heads of
      one task are among the ``top_k`` best of the other).
    """
    tasks = list(heads_by_task)
    if len(tasks) < 2:
        raise ValueError(f"cross-task correlation needs at least two tasks; got {tasks}")
    wide: pd.DataFrame | None = None
    for task, table in heads_by_task.items():
        missing = {"layer", "head", "target", value} - set(table.columns)
        if missing:
            raise ValueError(f"heads table of task {task!r} lacks column(s) {sorted(missing)}")
        part = table[["target", "layer", "head", value]].rename(columns={value: task})
        wide = part if wide is None else wide.merge(part, on=["target", "layer", "head"], how="inner")
    assert wide is not None
    if wide.empty:
        raise ValueError("the tasks' heads tables share no (target, layer, head) rows: different models or sites?")
    rows = []
    for target, frame in wide.groupby("target", sort=False):
        for i, a in enumerate(tasks):
            for b in tasks[i + 1:]:
                x, y = frame[a].to_numpy(dtype=float), frame[b].to_numpy(dtype=float)
                ok = np.isfinite(x) & np.isfinite(y)
                pearson = spearman = float("nan")
                if ok.sum() >= 3 and np.std(x[ok]) > 0 and np.std(y[ok]) > 0:
                    pearson = float(np.corrcoef(x[ok], y[ok])[0, 1])
                    rx = pd.Series(x[ok]).rank().to_numpy()
                    ry = pd.Series(y[ok]).rank().to_numpy()
                    spearman = float(np.corrcoef(rx, ry)[0, 1])
                k = min(top_k, len(frame))
                best_a = set(map(tuple, frame.nlargest(k, a)[["layer", "head"]].to_numpy().tolist()))
                best_b = set(map(tuple, frame.nlargest(k, b)[["layer", "head"]].to_numpy().tolist()))
                rows.append({"target": target, "task_a": a, "task_b": b, "pearson_r": pearson,
                             "spearman_rho": spearman, "n_heads": int(ok.sum()),
                             "top_k": k, "top_k_overlap": len(best_a & best_b)})
    return wide.reset_index(drop=True), pd.DataFrame(rows)


TARGET_TITLES = {"oracle": "Oracle belief", "protagonist": "Protagonist belief", "joint": "Joint (4-class)"}


CHANCE = {"oracle": 0.5, "protagonist": 0.5, "joint": 0.25}
