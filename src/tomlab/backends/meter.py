"""What a piece of work asked of its models: prompts answered, tokens generated and tokens scored.

A :class:`Meter` counts while it is active (``with metered() as meter:``); the backends report to
every active meter through :func:`record`, so a command line can say what one run cost without
threading a counter through every function.  Outside any ``with`` block :func:`record` does
nothing.  The active meters live in a :class:`contextvars.ContextVar`, so threads and nested
blocks each see their own.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import asdict, dataclass

#: The counters, in the order the cost table shows them.
FIELDS = ("prompts", "prompt_tokens", "completion_tokens", "cache_hits", "scored_sequences", "scored_tokens")


@dataclass
class Meter:
    """Running totals.

    ``prompts``, ``prompt_tokens`` and ``completion_tokens`` count what a generation engine (a local
    model or a server) was asked and produced; ``cache_hits`` the completions the on-disk cache
    answered instead; ``scored_sequences`` and ``scored_tokens`` the sequences and tokens a local
    model ran forward without generating (log-likelihood scoring, activation extraction).
    """

    prompts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    scored_sequences: int = 0
    scored_tokens: int = 0

    def add(self, **counts: int) -> None:
        unknown = set(counts) - set(FIELDS)
        if unknown:
            raise KeyError(f"unknown meter field(s) {sorted(unknown)}; known: {list(FIELDS)}")
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + int(value))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_ACTIVE: contextvars.ContextVar[tuple[Meter, ...]] = contextvars.ContextVar("tomlab_meters", default=())


def record(**counts: int) -> None:
    """Add ``counts`` (names from :data:`FIELDS`) to every active meter."""
    for meter in _ACTIVE.get():
        meter.add(**counts)


@contextlib.contextmanager
def metered() -> Iterator[Meter]:
    """``with metered() as meter:`` counts what the backends report inside the block."""
    meter = Meter()
    token = _ACTIVE.set((*_ACTIVE.get(), meter))
    try:
        yield meter
    finally:
        _ACTIVE.reset(token)
