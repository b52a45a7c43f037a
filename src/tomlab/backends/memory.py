"""How many rows one forward pass may hold: the memory plan every batched pass of a local model follows.

A row of a pass (one prompt, or one (prompt, intervention) pair of shared-prefix branches) of ``T``
tokens takes, at its peak:

- its KV cache: ``T`` x :func:`tomlab.backends.batching.kv_bytes_per_token` (keys and values of every
  layer; 960 KiB per token for DeepSeek-7B in float32, 256 KiB for Mistral-7B);
- one layer's activations, alive one layer at a time: the residual stream twice and the MLP's gate
  and up projections, ``T x (2 x hidden + 2 x intermediate)`` elements;
- one layer's attention weights where attention is computed eagerly: ``heads x T x T`` elements;
- the logits it keeps, in float32, with their log-softmax: ``2 x 4 x vocab`` bytes per kept position.

The budget is a share of the device's free memory when the pass starts (:attr:`MemoryPlan.share`,
the GPU's free memory or the host's available memory), or a fixed number of bytes.  A pass whose rows
would exceed it is split into several; a row that alone exceeds it runs alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tomlab.backends.batching import MEMORY_SHARE, free_memory_bytes, kv_bytes_per_token


def _element_bytes(lm: Any) -> int:
    import torch

    dtype = getattr(lm, "dtype", torch.float32)
    return torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4


def row_bytes(lm: Any, tokens: int, logits: int = 1) -> int:
    """Peak bytes of one row of ``tokens`` tokens that keeps ``logits`` positions' logits (module doc)."""
    config = getattr(lm.model, "config", None)
    hidden = int(getattr(lm, "hidden_size", 0) or lm.n_heads * lm.head_dim)
    inter = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    vocab = int(getattr(config, "vocab_size", None) or 0)
    element = _element_bytes(lm)
    tokens = max(int(tokens), 1)
    kv = kv_bytes_per_token(lm) * tokens
    activations = tokens * (2 * hidden + 2 * inter) * element
    attention = int(lm.n_heads) * tokens * tokens * element
    kept = 2 * 4 * vocab * max(int(logits), 0)
    return kv + activations + attention + kept


@dataclass(frozen=True)
class MemoryPlan:
    """The memory one pass may take: ``budget_bytes`` when given, else ``share`` of the device's free
    memory, read when the pass is planned."""

    share: float = MEMORY_SHARE
    budget_bytes: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError(f"memory share must be in (0, 1], got {self.share}")
        if self.budget_bytes is not None and self.budget_bytes < 1:
            raise ValueError(f"memory budget must be positive, got {self.budget_bytes} bytes")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> MemoryPlan:
        """From a model section's ``memory_share`` and ``memory_budget_gb`` (GiB; null: from the device)."""
        gb = spec.get("memory_budget_gb")
        return cls(share=float(spec.get("memory_share", MEMORY_SHARE)),
                   budget_bytes=None if gb is None else int(float(gb) * 2**30))

    def budget(self, lm: Any) -> int:
        if self.budget_bytes is not None:
            return int(self.budget_bytes)
        return int(self.share * free_memory_bytes(getattr(lm, "device", "cpu")))

    def max_rows(self, lm: Any, tokens: int, logits: int = 1, budget: int | None = None) -> int:
        """Rows of ``tokens`` tokens that fit the budget (at least 1)."""
        budget = self.budget(lm) if budget is None else budget
        return max(1, budget // max(row_bytes(lm, tokens, logits), 1))

    def describe(self) -> str:
        if self.budget_bytes is not None:
            return f"{self.budget_bytes / 2**30:.3g} GiB per pass"
        return f"{self.share:.0%} of the device's free memory per pass"


def plan_of(lm: Any) -> MemoryPlan:
    """The loaded model's plan (:attr:`tomlab.backends.models.LoadedModel.memory`), or the default."""
    plan = getattr(lm, "memory", None)
    return plan if isinstance(plan, MemoryPlan) else MemoryPlan()


def plan_batches(order: Sequence[int], lengths: Sequence[int], size: int, fits: Callable[[int], int],
                 per_item: int = 1) -> list[list[int]]:
    """``order`` cut into consecutive batches of at most ``size`` items whose rows (``per_item`` per
    item) fit: ``fits(n)`` is how many rows of the batch's longest length ``n`` fit.  An item that
    alone does not fit gets a batch of its own."""
    if size < 1:
        raise ValueError(f"a batch holds at least one item, got size {size}")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    cache: dict[int, int] = {}

    def fit(n: int) -> int:
        if n not in cache:
            cache[n] = fits(n)
        return cache[n]

    for i in order:
        grown = max(longest, int(lengths[i]))
        if current and (len(current) + 1 > size or (len(current) + 1) * per_item > fit(grown)):
            batches.append(current)
            current, grown = [], int(lengths[i])
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    return batches


def memory_batches(lm: Any, order: Sequence[int], lengths: Sequence[int], size: int, *, extra_tokens: int = 0,
                   logits: int | Callable[[int], int] = 1, per_item: int = 1) -> list[list[int]]:
    """:func:`plan_batches` under the model's plan: an item of length ``n`` holds ``n + extra_tokens``
    tokens (its new tokens) and keeps ``logits`` positions' logits (a number, or a function of ``n``).
    A model without a known geometry is batched by ``size`` alone."""
    if not all(hasattr(lm, a) for a in ("model", "n_layers", "n_heads", "head_dim")):
        return plan_batches(order, lengths, size, lambda n: size * per_item, per_item)
    plan = plan_of(lm)
    budget = plan.budget(lm)

    def fits(n: int) -> int:
        kept = logits(n) if callable(logits) else logits
        return plan.max_rows(lm, n + extra_tokens, kept, budget)

    return plan_batches(order, lengths, size, fits, per_item)
