"""Inference-time intervention along belief directions (Zhu, Zhang & Wang 2024; ITI-style).

The pieces:

* :func:`rank_heads` picks the K heads whose probes validate best;
* direction makers return one unit vector per (layer, head), shape (L, H, D), float64:
  :func:`probe_directions` (a binary probe's weight vector), :func:`tpfo_directions` (the 4-class
  joint probe's row for class 1, "protagonist true, oracle false"), :func:`mass_mean_directions`
  (difference of the class means) and :func:`random_directions`; :func:`compute_directions`
  dispatches on a name;
* :func:`projection_std` is the per-head spread sigma of the activations along a direction;
* :class:`HeadIntervention` adds ``alpha * sigma[l, h] * theta[l, h]`` to the chosen heads at the
  last position of every forward pass, at the input (``head_z``) or the output (``attn_out``) of
  the attention output projection, without touching the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from tomlab.activations import SITES
from tomlab.models import LoadedModel
from tomlab.probing import (
    DEFAULT_C_BINARY,
    DEFAULT_C_JOINT,
    DEFAULT_MAX_ITER,
    BatchedLogisticRegression,
    head_groups,
)

__all__ = [
    "DIRECTION_KINDS",
    "KIND_SLUGS",
    "canonical_kind",
    "RANKED_BY",
    "build_direction_sets",
    "evaluate_steered",
    "intervention_fingerprint",
    "load_direction_sets",
    "save_direction_sets",
    "steered_generator",
    "steering_accuracy",
    "token_projections",
    "HeadIntervention",
    "compute_directions",
    "intervened",
    "mass_mean_directions",
    "probe_directions",
    "projection_std",
    "random_directions",
    "rank_heads",
    "tpfo_directions",
]

DIRECTION_KINDS: tuple[str, ...] = ("random", "+protagonist", "-oracle", "+tpfo", "mass_mean_protagonist")
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


# --------------------------------------------------------------------------------------
# Choosing heads
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Directions
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Intervention
# --------------------------------------------------------------------------------------


class HeadIntervention:
    """Add ``alpha * sigma[l, h] * theta[l, h]`` to the chosen heads at the last position.

    ``site="head_z"``: a forward pre-hook on layer l's output projection shifts the slice
    ``[h*D:(h+1)*D]`` of its input (the head's own output); ``site="attn_out"``: a forward hook
    shifts that slice of the projection's output.  The shift is applied at the last position of
    every forward pass: each new token when generating with a KV cache, the last prompt token on a
    full-prompt forward.  Hooks are registered on ``__enter__`` (ahead of other hooks on the
    module, so captures see the intervened values) and always removed on ``__exit__``; the weights
    are never modified.  With ``alpha == 0`` nothing is added (outputs are bit-identical).
    """

    def __init__(
        self,
        lm: LoadedModel,
        heads: Sequence[tuple[int, int]],
        directions: np.ndarray,
        sigma: np.ndarray,
        alpha: float,
        site: str = "head_z",
    ) -> None:
        if site not in SITES:
            raise ValueError(f"unknown site {site!r}; known: {list(SITES)}")
        n_layers, n_heads, d = lm.n_layers, lm.n_heads, lm.head_dim
        theta = np.asarray(directions, dtype=np.float64)
        sig = np.asarray(sigma, dtype=np.float64)
        if theta.shape != (n_layers, n_heads, d):
            raise ValueError(f"directions must have shape {(n_layers, n_heads, d)}; got {theta.shape}")
        if sig.shape != (n_layers, n_heads):
            raise ValueError(f"sigma must have shape {(n_layers, n_heads)}; got {sig.shape}")
        chosen: list[tuple[int, int]] = []
        for pair in heads:
            layer, head = (int(x) for x in pair)
            if not (0 <= layer < n_layers and 0 <= head < n_heads):
                raise ValueError(f"head {(layer, head)} is outside the model's {n_layers} x {n_heads} heads")
            if (layer, head) in chosen:
                raise ValueError(f"head {(layer, head)} is listed twice")
            chosen.append((layer, head))
        alpha = float(alpha)
        if not np.isfinite(alpha):
            raise ValueError(f"alpha must be finite; got {alpha}")
        self.lm = lm
        self.heads = chosen
        self.site = site
        self.alpha = alpha
        # layer -> [(head, float64 shift (D,))]; empty when alpha == 0 (nothing is ever added)
        self.shifts: dict[int, list[tuple[int, torch.Tensor]]] = {}
        if alpha != 0.0:
            for layer, head in chosen:
                shift = torch.from_numpy(alpha * sig[layer, head] * theta[layer, head])
                if not bool(torch.isfinite(shift).all()):
                    raise ValueError(f"the shift of head {(layer, head)} is not finite")
                self.shifts.setdefault(layer, []).append((head, shift))
        self._cast: dict[tuple[int, torch.dtype, torch.device], list[tuple[int, torch.Tensor]]] = {}
        self._handles: list[Any] = []
        self.edit_from: torch.Tensor | None = None

    def set_edit_from(self, start: Sequence[int] | torch.Tensor | None) -> None:
        """Shift every position ``>= start[row]`` of each batch row instead of only the last one.

        For scoring a continuation in one full-sequence forward pass: with ``start`` the index of
        the last prompt token (in the padded batch), the positions that predict the continuation
        are shifted, which is what token-by-token generation with a KV cache would do.  ``None``
        goes back to the last position only.
        """
        self.edit_from = None if start is None else torch.as_tensor(start, dtype=torch.long)

    def shift_vector(self, layer: int, head: int) -> np.ndarray:
        """The float64 vector (D,) added to ``(layer, head)`` (zeros for heads not intervened on)."""
        for h, shift in self.shifts.get(layer, []):
            if h == head:
                return shift.numpy().copy()
        return np.zeros(self.lm.head_dim)

    def _shifts_for(self, layer: int, x: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        key = (layer, x.dtype, x.device)
        if key not in self._cast:
            self._cast[key] = [(h, s.to(device=x.device, dtype=x.dtype)) for h, s in self.shifts[layer]]
        return self._cast[key]

    def _apply(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        d = self.lm.head_dim
        if x.shape[-1] != self.lm.n_heads * d:
            raise RuntimeError(
                f"layer {layer}: expected the last dimension {self.lm.n_heads * d} at site {self.site}, "
                f"got {tuple(x.shape)}"
            )
        out = x.clone()
        if self.edit_from is None:
            for head, shift in self._shifts_for(layer, x):
                out[..., -1, head * d : (head + 1) * d] += shift
            return out
        if x.dim() != 3 or x.shape[0] != self.edit_from.shape[0]:
            raise RuntimeError(
                f"layer {layer}: edit_from has {self.edit_from.shape[0]} rows but the activations have shape "
                f"{tuple(x.shape)}"
            )
        positions = torch.arange(x.shape[1], device=x.device)
        mask = (positions[None, :] >= self.edit_from.to(x.device)[:, None]).to(x.dtype)[..., None]  # (B, T, 1)
        for head, shift in self._shifts_for(layer, x):
            out[..., head * d : (head + 1) * d] += mask * shift
        return out

    def _pre_hook(self, layer: int):
        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (self._apply(layer, args[0]), *args[1:])

        return hook

    def _post_hook(self, layer: int):
        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if isinstance(output, tuple):
                return (self._apply(layer, output[0]), *output[1:])
            return self._apply(layer, output)

        return hook

    def __enter__(self) -> HeadIntervention:
        if self._handles:
            raise RuntimeError("this HeadIntervention is already active")
        try:
            for layer in sorted(self.shifts):
                module = self.lm.o_proj_module(layer)
                if self.site == "head_z":
                    handle = module.register_forward_pre_hook(self._pre_hook(layer), prepend=True)
                else:
                    handle = module.register_forward_hook(self._post_hook(layer), prepend=True)
                self._handles.append(handle)
        except BaseException:
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc: object) -> None:
        self._remove()

    @property
    def active(self) -> bool:
        return bool(self._handles)


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


# --------------------------------------------------------------------------------------
# Direction sets: what the steering rules compute once and reuse
# --------------------------------------------------------------------------------------

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
) -> dict[str, dict[str, np.ndarray]]:
    """For each kind: ``{"theta": (L, H, D) float64, "heads": (k, 2) int64}``.

    Directions are fitted on the training samples (``~is_val``; all samples when ``is_val`` is
    None), the heads are the ``k`` best of ``heads_table`` (the probe results of the same task and
    site) for the variable in :data:`RANKED_BY`.
    """
    acts = _check_acts(acts)
    train = np.ones(acts.shape[0], dtype=bool) if is_val is None else ~np.asarray(is_val, dtype=bool)
    if train.shape != (acts.shape[0],):
        raise ValueError(f"is_val must have shape ({acts.shape[0]},); got {np.shape(is_val)}")
    x, m = acts[train], meta.loc[train].reset_index(drop=True)
    out: dict[str, dict[str, np.ndarray]] = {}
    for kind in kinds:
        theta = compute_directions(kind, x, m, seed=seed, C_binary=C_binary, C_joint=C_joint,
                                   max_iter=max_iter, device=device)
        heads = rank_heads(heads_table, k, target=RANKED_BY[kind])
        out[kind] = {"theta": theta, "heads": np.asarray(heads, dtype=np.int64).reshape(-1, 2)}
    return out


def save_direction_sets(path: str | Any, sets: dict[str, dict[str, np.ndarray]]) -> None:
    """Write direction sets to one ``.npz`` (atomically): arrays ``theta/<kind>`` and ``heads/<kind>``."""
    from tomlab.io import atomic_path

    arrays: dict[str, np.ndarray] = {}
    for kind, entry in sets.items():
        arrays[f"theta/{kind}"] = np.asarray(entry["theta"], dtype=np.float64)
        arrays[f"heads/{kind}"] = np.asarray(entry["heads"], dtype=np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_direction_sets(path: str | Any) -> dict[str, dict[str, np.ndarray]]:
    """Read what :func:`save_direction_sets` wrote."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as data:
        for name in data.files:
            part, kind = name.split("/", 1)
            out.setdefault(kind, {})[part] = data[name]
    for kind, entry in out.items():
        if set(entry) != {"theta", "heads"}:
            raise ValueError(f"{path}: direction kind {kind!r} lacks {sorted({'theta', 'heads'} - set(entry))}")
    return out


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


# --------------------------------------------------------------------------------------
# Running the model under an intervention
# --------------------------------------------------------------------------------------


def steered_generator(generator: Any, cache_dir: str | Any | None, fingerprint: str) -> Any:
    """``generator`` behind a completion cache whose namespace is the intervention's fingerprint."""
    from tomlab.lm import CachedLM

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
    from tomlab.evaluation import evaluate_items
    from tomlab.lm import CachedLM

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
    from tomlab.activations import token_activations

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
    from tomlab.evaluation import bootstrap_ci

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
