"""The only code that touches a model's attention output projection (o_proj): what each capture site
means (:func:`_on_site`, the one place that knows), the capture of per-head activations, the
additive per-head intervention, and its per-row form for shared-prefix branches (:class:`RowShifts`).

Two sites per layer and head:

* ``attn_out``: the attention block's output after the output projection, cut into n_heads equal slices
  (what the original code stores): of head_dim, or of hidden_size / n_heads where a model's heads are
  wider than that (Gemma 3: 4 x 256 into o_proj, 640 out, so slices of 160);
* ``head_z``: the input of the output projection, per head (the heads' own outputs, as in ITI).

Hooks are registered on entering a context manager and always removed on leaving it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

import numpy as np
import torch

from tomlab.backends.models import LoadedModel
from tomlab.schema import vocabulary

SITES: tuple[str, ...] = vocabulary("site")

SiteFn = Callable[[torch.Tensor], "torch.Tensor | None"]


def _check_site(site: str) -> None:
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; known: {list(SITES)}")


def check_heads(heads: Sequence[tuple[int, int]] | np.ndarray, n_layers: int, n_heads: int,
                grid: str = "the model's") -> list[tuple[int, int]]:
    """``heads`` as a list of ``(layer, head)`` int pairs, each inside the ``n_layers x n_heads`` grid and
    listed once (a clear error otherwise)."""
    chosen: list[tuple[int, int]] = []
    for layer, head in np.asarray(heads, dtype=np.int64).reshape(-1, 2).tolist():
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(f"head {(layer, head)} is outside {grid} {n_layers} x {n_heads} heads")
        if (layer, head) in chosen:
            raise ValueError(f"head {(layer, head)} is listed twice")
        chosen.append((layer, head))
    return chosen


def check_alpha(alpha: float) -> float:
    """The strength of an intervention as a finite float."""
    alpha = float(alpha)
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be finite; got {alpha}")
    return alpha


def _on_site(lm: LoadedModel, layer: int, site: str, fn: SiteFn, *, edit: bool = False) -> Any:
    """Register ``fn`` on ``site`` of ``layer`` and return the hook's handle: the one place that
    knows where each site is on a model.

    ``fn`` gets the site's tensor (batch, seq, n_heads * head_dim).  With ``edit`` what it returns
    replaces the site's tensor (the hook is put ahead of the module's other hooks, so they see the
    edited values); without, it only looks and its result is ignored.  ``head_z`` is the input of
    layer l's output projection (replaced by a forward pre-hook, read by a forward hook),
    ``attn_out`` its output (a forward hook; a tuple output keeps its other members).
    """
    _check_site(site)
    module = lm.o_proj_module(layer)
    if site == "head_z":
        if edit:
            def pre_hook(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
                return (fn(args[0]), *args[1:])

            return module.register_forward_pre_hook(pre_hook, prepend=True)

        def read_input(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
            fn(args[0])

        return module.register_forward_hook(read_input)

    def post_hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        out = output[0] if isinstance(output, tuple) else output
        new = fn(out)
        if not edit:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return module.register_forward_hook(post_hook, prepend=edit)


class _HookSet:
    """Hooks registered together and removed together: ``_register`` puts one on each (layer, site,
    function, edit) it is given (all removed again if one fails), ``_remove`` takes them all off."""

    lm: LoadedModel

    def __init__(self) -> None:
        self._handles: list[Any] = []

    def _register(self, specs: Iterable[tuple[int, str, SiteFn, bool]]) -> None:
        try:
            for layer, site, fn, edit in specs:
                self._handles.append(_on_site(self.lm, layer, site, fn, edit=edit))
        except BaseException:
            self._remove()
            raise

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class HeadCapture(_HookSet):
    """Forward hooks on every layer's output projection capturing the last position (or all of them).

    Use as a context manager: hooks are registered on entry and always removed on exit.
    After each forward pass, ``take()`` returns ``{site: tensor (batch, layers, heads, head_dim)}``;
    with ``positions="all"`` it returns ``{site: tensor (batch, seq, layers, heads, head_dim)}``.
    """

    def __init__(self, lm: LoadedModel, sites: Sequence[str] = SITES, positions: str = "last") -> None:
        unknown = set(sites) - set(SITES)
        if unknown:
            raise ValueError(f"unknown capture site(s) {sorted(unknown)}; known: {list(SITES)}")
        if positions not in ("last", "all"):
            raise ValueError(f"positions must be 'last' or 'all', got {positions!r}")
        super().__init__()
        self.lm = lm
        self.sites = tuple(sites)
        self.positions = positions
        self._store: dict[str, list[torch.Tensor | None]] = {s: [None] * lm.n_layers for s in self.sites}

    def _keep(self, site: str, layer: int) -> SiteFn:
        def keep(x: torch.Tensor) -> None:
            self._store[site][layer] = (x[:, -1, :] if self.positions == "last" else x).detach()

        return keep

    def __enter__(self) -> Self:
        self._register((layer, site, self._keep(site, layer), False)
                       for layer in range(self.lm.n_layers) for site in self.sites)
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def take(self) -> dict[str, torch.Tensor]:
        result = {}
        for site in self.sites:
            per_layer = self._store[site]
            if any(t is None for t in per_layer):
                raise RuntimeError(f"site {site}: not every layer was captured; was a forward pass run?")
            layer_axis = 1 if self.positions == "last" else 2
            stacked = torch.stack([t for t in per_layer if t is not None], dim=layer_axis)  # (B, [T,] L, hidden)
            result[site] = stacked.reshape(*stacked.shape[:-1], self.lm.n_heads, self.lm.site_width(site))
            self._store[site] = [None] * self.lm.n_layers
        return result


class HeadIntervention(_HookSet):
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
        _check_site(site)
        n_layers, n_heads, d = lm.n_layers, lm.n_heads, lm.site_width(site)
        theta = np.asarray(directions, dtype=np.float64)
        sig = np.asarray(sigma, dtype=np.float64)
        if theta.shape != (n_layers, n_heads, d):
            raise ValueError(f"directions must have shape {(n_layers, n_heads, d)}; got {theta.shape}")
        if sig.shape != (n_layers, n_heads):
            raise ValueError(f"sigma must have shape {(n_layers, n_heads)}; got {sig.shape}")
        chosen = check_heads(heads, n_layers, n_heads)
        alpha = check_alpha(alpha)
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
        super().__init__()
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
        return np.zeros(self.lm.site_width(self.site))

    def _shifts_for(self, layer: int, x: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        key = (layer, x.dtype, x.device)
        if key not in self._cast:
            self._cast[key] = [(h, s.to(device=x.device, dtype=x.dtype)) for h, s in self.shifts[layer]]
        return self._cast[key]

    def _apply(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        d = self.lm.site_width(self.site)
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

    def _edit(self, layer: int) -> SiteFn:
        return lambda x: self._apply(layer, x)

    def __enter__(self) -> Self:
        if self._handles:
            raise RuntimeError("this HeadIntervention is already active")
        self._register((layer, self.site, self._edit(layer), True) for layer in sorted(self.shifts))
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    @property
    def active(self) -> bool:
        return bool(self._handles)


class RowShifts(_HookSet):
    """Hooks adding ``shifts[k]`` to every position of the batch rows that carry intervention ``k``.

    Used by :class:`tomlab.backends.branching.Branches`.  Built from :class:`HeadIntervention` objects (not entered) that share one site; row ``r`` of a
    forward pass carries intervention ``r % K`` (rows are (prompt, intervention) pairs, prompt-major).
    Hooks are registered on entering and removed on leaving; between, :attr:`enabled` switches them off
    for the shared prefix.  The added values are each intervention's float64 shifts cast to the
    activations' dtype, as :class:`HeadIntervention` adds them.
    """

    def __init__(self, lm: LoadedModel, interventions: Sequence[HeadIntervention]) -> None:
        if not interventions:
            raise ValueError("give at least one intervention")
        sites = {iv.site for iv in interventions}
        if len(sites) != 1:
            raise ValueError(f"the interventions of one batch share a site; got {sorted(sites)}")
        self.lm = lm
        self.site = sites.pop()
        self.k = len(interventions)
        d = lm.site_width(self.site)
        layers = sorted({layer for iv in interventions for layer in iv.shifts})
        self.table: dict[int, torch.Tensor] = {}
        for layer in layers:
            rows = torch.zeros(self.k, lm.n_heads * d, dtype=torch.float64)
            for k, iv in enumerate(interventions):
                for head, shift in iv.shifts.get(layer, []):
                    rows[k, head * d:(head + 1) * d] = shift
            self.table[layer] = rows
        self._cast: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}
        super().__init__()
        self.enabled = False

    def _add(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        key = (layer, x.dtype, x.device)
        if key not in self._cast:
            self._cast[key] = self.table[layer].to(device=x.device, dtype=x.dtype)
        table = self._cast[key]
        if x.shape[0] % self.k:
            raise RuntimeError(f"layer {layer}: {x.shape[0]} rows is not a multiple of {self.k} interventions")
        rows = table.repeat(x.shape[0] // self.k, 1)  # (B, hidden): row r gets intervention r % K
        return x + rows[:, None, :]

    def __enter__(self) -> Self:
        self._register((layer, self.site, lambda x, layer=layer: self._add(layer, x), True) for layer in self.table)
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()
        self.enabled = False
