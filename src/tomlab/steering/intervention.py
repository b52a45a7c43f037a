"""An intervention as one value: which heads, along which directions, how far, at which site."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from tomlab.backends.build import cached
from tomlab.backends.hooks import SITES, HeadIntervention, check_alpha, check_heads
from tomlab.backends.models import LoadedModel


def _frozen(values: object, dtype: type) -> np.ndarray:
    array = np.array(values, dtype=dtype)  # a copy: the caller's array stays writable and unshared
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Intervention:
    """Add ``alpha * sigma[l, h] * directions[l, h]`` to each chosen head ``(l, h)`` at ``site``.

    ``heads`` is kept as a tuple of ``(layer, head)`` int pairs (any ``(k, 2)`` integer array or
    sequence of pairs is accepted), ``directions`` as a read-only float64 (L, H, D) array,
    ``sigma`` as a read-only float64 (L, H) array and ``alpha`` as a float.  Checked on
    construction: a known site, matching shapes, heads inside the (L, H) grid and listed once, a
    finite alpha.  :meth:`hook` applies it to a model (see :class:`HeadIntervention`, which also
    checks the geometry against the model's).
    """

    site: str
    heads: tuple[tuple[int, int], ...]
    directions: np.ndarray
    sigma: np.ndarray
    alpha: float

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise ValueError(f"unknown site {self.site!r}; known: {list(SITES)}")
        theta = _frozen(self.directions, np.float64)
        sig = _frozen(self.sigma, np.float64)
        if theta.ndim != 3:
            raise ValueError(f"directions must have shape (layers, heads, head_dim); got {theta.shape}")
        n_layers, n_heads, _ = theta.shape
        if sig.shape != (n_layers, n_heads):
            raise ValueError(f"sigma must have shape {(n_layers, n_heads)}; got {sig.shape}")
        chosen = check_heads(self.heads, n_layers, n_heads, grid="the directions'")
        alpha = check_alpha(self.alpha)
        object.__setattr__(self, "heads", tuple(chosen))
        object.__setattr__(self, "directions", theta)
        object.__setattr__(self, "sigma", sig)
        object.__setattr__(self, "alpha", alpha)

    @property
    def fingerprint(self) -> str:
        """A short content hash of everything the intervention adds; ``""`` when it adds nothing.

        Used as the completion cache's namespace, so steered and plain completions never mix and a
        zero-strength intervention shares the plain model's cache entries.  Directions and sigma
        of heads not intervened on do not enter it.
        """
        pairs = list(self.heads)
        if self.alpha == 0.0 or not pairs:
            return ""
        h = hashlib.sha256(f"{self.site}|{self.alpha!r}|{pairs}".encode())
        for layer, head in pairs:
            h.update(np.ascontiguousarray(self.directions[layer, head]).tobytes())
            h.update(np.float64(self.sigma[layer, head]).tobytes())
        return "steer-" + h.hexdigest()[:16]

    def with_alpha(self, alpha: float) -> Intervention:
        """The same intervention at another strength."""
        return dataclasses.replace(self, alpha=alpha)

    def hook(self, lm: LoadedModel) -> HeadIntervention:
        """``with intervention.hook(lm): ...``: the hooks that apply it to ``lm`` while active."""
        return HeadIntervention(lm, self.heads, self.directions, self.sigma, self.alpha, site=self.site)


def steered_generator(generator: Any, cache_dir: str | Any | None, intervention: Intervention | None) -> Any:
    """``generator`` behind a completion cache whose namespace is the intervention's fingerprint
    (the plain namespace for ``None``); ``generator`` itself without ``cache_dir``."""
    return cached(generator, cache_dir, namespace="" if intervention is None else intervention.fingerprint)
