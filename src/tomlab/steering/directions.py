"""Steering directions from probes (+protagonist, -oracle, +TpFo, mass-mean, random), head ranking,
the activations' spread along a direction, and direction sets saved per task and site."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tomlab.io import read_npz
from tomlab.probing.estimator import (
    DEFAULT_C_BINARY,
    DEFAULT_C_JOINT,
    DEFAULT_MAX_ITER,
    BatchedLogisticRegression,
)
from tomlab.probing.probes import head_groups
from tomlab.schema import vocabulary
from tomlab.steering.intervention import Intervention

DIRECTION_KINDS: tuple[str, ...] = vocabulary("direction_kind")


TPFO_CLASS = 1  # joint = 2 * oracle + protagonist: protagonist true, oracle false


# file- and command-line-safe names ("-oracle" would read as an option)
KIND_SLUGS: dict[str, str] = {
    "random": "random",
    "+protagonist": "plus_protagonist",
    "-oracle": "minus_oracle",
    "+tpfo": "plus_tpfo",
    "mass_mean_protagonist": "mass_mean_protagonist",
}


def canonical_kind(name: str) -> str:
    """A direction kind from its name (``"-oracle"``) or its slug (``"minus_oracle"``)."""
    if name in KIND_SLUGS:
        return name
    for kind, slug in KIND_SLUGS.items():
        if name == slug:
            return kind
    raise ValueError(f"unknown direction kind {name!r}; known: {', '.join(KIND_SLUGS)} (or {', '.join(KIND_SLUGS.values())})")


def rank_heads(
    head_acc: np.ndarray | pd.DataFrame, k: int, *, target: str | None = None
) -> list[tuple[int, int]]:
    """The ``k`` heads with the highest validation accuracy, as ``(layer, head)`` pairs, best first.

    ``head_acc`` is either an (L, H) array of accuracies or a heads DataFrame with columns layer,
    head and val_acc for one target (pass ``target`` to select the rows of one target from a
    DataFrame holding several).  Ties go to the lower layer, then the lower head; NaN accuracies
    rank last.  ``k`` larger than the number of heads returns all of them.
    """
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise ValueError(f"k must be a non-negative integer; got {k!r}")
    k = int(k)
    if isinstance(head_acc, pd.DataFrame):
        table = head_acc
        if target is not None:
            if "target" not in table.columns:
                raise ValueError("target given but the heads table has no 'target' column")
            table = table[table["target"] == target]
            if table.empty:
                raise ValueError(f"no rows for target {target!r}")
        elif "target" in table.columns and table["target"].nunique() > 1:
            raise ValueError(
                f"the heads table holds several targets {sorted(table['target'].unique())}; pass target="
            )
        missing = {"layer", "head", "val_acc"} - set(table.columns)
        if missing:
            raise ValueError(f"heads table lacks column(s) {sorted(missing)}")
        if table.duplicated(["layer", "head"]).any():
            raise ValueError("heads table has repeated (layer, head) rows")
        frame = pd.DataFrame(
            {
                "layer": table["layer"].to_numpy().astype(np.int64),
                "head": table["head"].to_numpy().astype(np.int64),
                "acc": table["val_acc"].to_numpy().astype(np.float64),
            }
        )
    else:
        acc = np.asarray(head_acc, dtype=np.float64)
        if acc.ndim != 2:
            raise ValueError(f"head_acc must have shape (layers, heads); got {acc.shape}")
        layer, head = np.divmod(np.arange(acc.size), acc.shape[1])
        frame = pd.DataFrame({"layer": layer, "head": head, "acc": acc.reshape(-1)})
    ordered = frame.sort_values(
        ["acc", "layer", "head"], ascending=[False, True, True], kind="mergesort", na_position="last"
    ).head(k)
    return [(int(lay), int(hd)) for lay, hd in zip(ordered["layer"], ordered["head"])]


def _unit(v: np.ndarray) -> np.ndarray:
    """Normalise the last axis to unit length (all-zero vectors stay zero)."""
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def _check_acts(acts: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    if np.ndim(acts) != 4:
        raise ValueError(f"acts must have shape (N, layers, heads, head_dim); got {np.shape(acts)}")
    if labels is not None:
        if np.ndim(labels) != 1 or len(labels) != np.shape(acts)[0]:
            raise ValueError(f"labels must have shape ({np.shape(acts)[0]},); got {np.shape(labels)}")
    return np.asarray(acts)


def _fit_rows(
    acts: np.ndarray, labels: np.ndarray, cls: int, n_classes: int, C: float, max_iter: int, device: str
) -> np.ndarray:
    """Fit one probe per head and return its weight row for class ``cls``, unnormalised (L, H, D)."""
    acts = _check_acts(acts, labels)
    y = np.asarray(labels)
    classes = np.unique(y)
    if len(classes) != n_classes or cls not in classes:
        raise ValueError(f"expected {n_classes} classes including {cls}; labels hold {classes.tolist()}")
    probe = BatchedLogisticRegression(C=C, max_iter=max_iter, device=device).fit(head_groups(acts, np.float64), y)
    if n_classes == 2:
        if cls != probe.classes_[1]:
            raise ValueError(f"binary labels must be 0/1 with {cls} the positive class; got {classes.tolist()}")
        rows = probe.coef_[:, 0, :]
    else:
        rows = probe.coef_[:, int(np.flatnonzero(probe.classes_ == cls)[0]), :]
    _, n_layers, n_heads, d = acts.shape
    return rows.reshape(n_layers, n_heads, d)


def probe_directions(
    acts: np.ndarray,
    labels: np.ndarray,
    *,
    C: float = DEFAULT_C_BINARY,
    max_iter: int = DEFAULT_MAX_ITER,
    device: str = "cpu",
) -> np.ndarray:
    """Unit weight vectors (L, H, D) of a binary logistic probe per head, pointing to label 1.

    Every head's probe is fitted on all the given samples (labels 0/1).
    """
    return _unit(_fit_rows(acts, labels, 1, 2, C, max_iter, device))


def tpfo_directions(
    acts: np.ndarray,
    joint_labels: np.ndarray,
    *,
    C: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    device: str = "cpu",
) -> np.ndarray:
    """Unit weight rows (L, H, D) of the 4-class joint probe per head for class 1 (TpFo)."""
    return _unit(_fit_rows(acts, joint_labels, TPFO_CLASS, 4, C, max_iter, device))


def mass_mean_directions(acts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit vectors (L, H, D): mean of the label-1 activations minus mean of the label-0 ones."""
    acts = _check_acts(acts, labels)
    y = np.asarray(labels)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0/1; got {np.unique(y).tolist()}")
    pos, neg = y == 1, y == 0
    if not pos.any() or not neg.any():
        raise ValueError("mass-mean directions need samples of both labels")
    x = acts.astype(np.float64, copy=False)
    return _unit(x[pos].mean(axis=0) - x[neg].mean(axis=0))


def random_directions(n_layers: int, n_heads: int, head_dim: int, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian unit vectors (L, H, D)."""
    rng = np.random.default_rng(seed)
    return _unit(rng.standard_normal((n_layers, n_heads, head_dim)))


def compute_directions(
    kind: str,
    acts: np.ndarray,
    meta: pd.DataFrame,
    seed: int = 0,
    *,
    C_binary: float = DEFAULT_C_BINARY,
    C_joint: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    device: str = "cpu",
) -> np.ndarray:
    """Directions (L, H, D) of one kind, from ``acts`` (N, L, H, D) and ``meta`` (N rows).

    Kinds: ``random`` (seeded by ``seed``), ``+protagonist`` (protagonist probe), ``-oracle``
    (minus the oracle probe), ``+tpfo`` (joint probe, class TpFo), ``mass_mean_protagonist``.
    """
    if kind not in DIRECTION_KINDS:
        raise ValueError(f"unknown direction kind {kind!r}; valid kinds: {', '.join(DIRECTION_KINDS)}")
    acts = _check_acts(acts)
    if len(meta) != acts.shape[0]:
        raise ValueError(f"meta has {len(meta)} rows but acts has {acts.shape[0]} samples")

    def column(name: str) -> np.ndarray:
        if name not in meta.columns:
            raise ValueError(f"direction kind {kind!r} needs a {name!r} column in meta")
        return meta[name].to_numpy()

    if kind == "random":
        return random_directions(*acts.shape[1:], seed=seed)
    if kind == "+protagonist":
        return probe_directions(acts, column("protagonist"), C=C_binary, max_iter=max_iter, device=device)
    if kind == "-oracle":
        return -probe_directions(acts, column("oracle"), C=C_binary, max_iter=max_iter, device=device)
    if kind == "+tpfo":
        return tpfo_directions(acts, column("joint"), C=C_joint, max_iter=max_iter, device=device)
    return mass_mean_directions(acts, column("protagonist"))


def projection_std(acts: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Per-head standard deviation (ddof=0) of the activations projected on the directions: (L, H)."""
    acts = _check_acts(acts)
    theta = np.asarray(directions, dtype=np.float64)
    if theta.shape != acts.shape[1:]:
        raise ValueError(f"directions must have shape {acts.shape[1:]}; got {theta.shape}")
    proj = np.einsum("nlhd,lhd->nlh", acts.astype(np.float64, copy=False), theta)
    return proj.std(axis=0, ddof=0)


@dataclass(frozen=True, eq=False)
class DirectionSet:
    """One kind of direction for one task and site: ``theta`` (L, H, D) float64 unit directions and
    ``heads`` (k, 2) int64, the ``(layer, head)`` pairs to apply them on, best first."""

    theta: np.ndarray
    heads: np.ndarray

    def __post_init__(self) -> None:
        theta = np.asarray(self.theta, dtype=np.float64)
        heads = np.asarray(self.heads, dtype=np.int64)
        if theta.ndim != 3:
            raise ValueError(f"theta must have shape (layers, heads, head_dim); got {theta.shape}")
        if heads.size == 0:
            heads = heads.reshape(0, 2)
        if heads.ndim != 2 or heads.shape[1] != 2:
            raise ValueError(f"heads must have shape (k, 2); got {heads.shape}")
        object.__setattr__(self, "theta", theta)
        object.__setattr__(self, "heads", heads)

    def spread(self, acts: np.ndarray) -> np.ndarray:
        """Sigma (L, H): the spread of ``acts`` (N, L, H, D) along the directions (:func:`projection_std`)."""
        return projection_std(np.asarray(acts, dtype=np.float32), self.theta)

    def intervention(self, site: str, sigma: np.ndarray, alpha: float) -> Intervention:
        """The intervention that adds ``alpha * sigma * theta`` on this set's heads at ``site``."""
        return Intervention(site=site, heads=self.heads, directions=self.theta, sigma=sigma, alpha=alpha)


# Which probe ranks the heads for each kind of direction.  A direction is applied on the heads
# whose probe for the same variable validates best; the random control is applied on the heads
# of +tpfo so that it differs from +tpfo only in the direction.
RANKED_BY: dict[str, str] = {
    "random": "joint",
    "+protagonist": "protagonist",
    "-oracle": "oracle",
    "+tpfo": "joint",
    "mass_mean_protagonist": "protagonist",
}


def build_direction_sets(
    acts: np.ndarray,
    meta: pd.DataFrame,
    heads_table: pd.DataFrame,
    kinds: Sequence[str],
    *,
    k: int,
    is_val: np.ndarray | None = None,
    seed: int = 0,
    C_binary: float = DEFAULT_C_BINARY,
    C_joint: float = DEFAULT_C_JOINT,
    max_iter: int = DEFAULT_MAX_ITER,
    device: str = "cpu",
) -> dict[str, DirectionSet]:
    """A :class:`DirectionSet` for each kind.

    Directions are fitted on the training samples (``~is_val``; all samples when ``is_val`` is
    None), the heads are the ``k`` best of ``heads_table`` (the probe results of the same task and
    site) for the variable in :data:`RANKED_BY`.
    """
    acts = _check_acts(acts)
    train = np.ones(acts.shape[0], dtype=bool) if is_val is None else ~np.asarray(is_val, dtype=bool)
    if train.shape != (acts.shape[0],):
        raise ValueError(f"is_val must have shape ({acts.shape[0]},); got {np.shape(is_val)}")
    x, m = acts[train], meta.loc[train].reset_index(drop=True)
    out: dict[str, DirectionSet] = {}
    for kind in kinds:
        theta = compute_directions(kind, x, m, seed=seed, C_binary=C_binary, C_joint=C_joint,
                                   max_iter=max_iter, device=device)
        heads = rank_heads(heads_table, k, target=RANKED_BY[kind])
        out[kind] = DirectionSet(theta=theta, heads=np.asarray(heads, dtype=np.int64).reshape(-1, 2))
    return out


def save_direction_sets(path: str | Any, sets: Mapping[str, DirectionSet]) -> None:
    """Write direction sets to one ``.npz`` (atomically): arrays ``theta/<kind>`` and ``heads/<kind>``."""
    from tomlab.io import atomic_path

    arrays: dict[str, np.ndarray] = {}
    for kind, entry in sets.items():
        arrays[f"theta/{kind}"] = entry.theta
        arrays[f"heads/{kind}"] = entry.heads
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_direction_sets(path: str | Any) -> dict[str, DirectionSet]:
    """Read what :func:`save_direction_sets` wrote."""
    parts: dict[str, dict[str, np.ndarray]] = {}
    for name, array in read_npz(path).items():
        part, sep, kind = name.partition("/")
        if not sep:
            raise ValueError(f"{path}: {name!r} is not a direction array (expected 'theta/<kind>' or 'heads/<kind>')")
        parts.setdefault(kind, {})[part] = array
    for kind, entry in parts.items():
        if set(entry) != {"theta", "heads"}:
            raise ValueError(f"{path}: direction kind {kind!r} lacks {sorted({'theta', 'heads'} - set(entry))}")
    return {kind: DirectionSet(theta=entry["theta"], heads=entry["heads"]) for kind, entry in parts.items()}
