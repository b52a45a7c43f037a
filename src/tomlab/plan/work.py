"""What one job asks of its model, counted before it runs: the plan's unit of work.

A :class:`Pass` is a set of rows a model runs the same way: ``generate`` (a prompt prefilled, then
``new_tokens`` decoded), ``score`` (a sequence run forward once: log-likelihood scoring or activation
extraction, ``logits`` positions' logits kept per row) or ``branch`` (shared-prefix steering: a prompt
prefilled once, then ``branches`` interventions decoded from it).  A :class:`JobWork` is one job of a
rule (its wildcards in ``job``): its model loads and its passes.  The experiments' counting functions
(``tomlab.plan.<experiment>``) return these; :mod:`tomlab.plan.project` turns them into tokens, memory
and time on a device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

PassKind = Literal["generate", "score", "branch"]


@dataclass(frozen=True)
class Pass:
    """``rows`` rows of ``prompt_tokens`` tokens each (a mean), run as ``kind`` says.

    ``batch`` is the rows the config asks to run at once (``0``: ``auto``, the memory plan decides);
    ``new_tokens`` the tokens decoded per row (the limit: a reply may stop earlier); ``branches`` the
    interventions decoded from each prompt of a ``branch`` pass; ``logits`` the positions whose logits
    a ``score`` row keeps; ``context`` the tokens already in each row's KV cache (a shared prefix its
    continuation is scored after), attended to and held in memory but not run again.
    """

    kind: PassKind
    rows: int
    prompt_tokens: float
    new_tokens: int = 0
    batch: int = 8
    branches: int = 1
    logits: int = 1
    context: float = 0.0
    what: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("generate", "score", "branch"):
            raise ValueError(f"pass kind must be generate, score or branch, got {self.kind!r}")
        if self.rows < 0 or self.prompt_tokens < 0 or self.new_tokens < 0 or self.batch < 0:
            raise ValueError(f"a pass counts nothing negative: {self}")
        if self.branches < 1 or self.logits < 0 or self.context < 0:
            raise ValueError(f"a pass has at least one branch and no negative logits: {self}")

    @property
    def sequences(self) -> int:
        """Rows that decode: one per prompt, or one per (prompt, intervention) of a branch pass."""
        return self.rows * (self.branches if self.kind == "branch" else 1)

    @property
    def prefill_tokens(self) -> float:
        """Tokens run forward before decoding (a branch pass's prefix once per prompt)."""
        return self.rows * self.prompt_tokens if self.kind != "score" else 0.0

    @property
    def scored_tokens(self) -> float:
        return self.rows * self.prompt_tokens if self.kind == "score" else 0.0

    @property
    def decode_tokens(self) -> int:
        return self.sequences * self.new_tokens if self.kind != "score" else 0


@dataclass(frozen=True)
class JobWork:
    """What one job asks of one model: ``rule`` with wildcards ``job``, model ``model`` (its name in the run:
    a panel model's, or the name the workflow gives a role's model; "" for a job made once for all), and
    ``spec``, that model's spec where it is not one of the run's named models (a role's own model).  A job
    whose roles play several models has one JobWork per model."""

    experiment: str
    rule: str
    job: str
    model: str
    loads: int = 1
    passes: tuple[Pass, ...] = field(default_factory=tuple)
    spec: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def prompts(self) -> int:
        """Sequences the model generates for (a branch pass's every branch; a pass that decodes nothing none),
        as the meter counts prompts."""
        return sum(p.sequences for p in self.passes if p.kind != "score" and p.new_tokens > 0)


def meter_counts(job: JobWork) -> dict[str, float]:
    """The job's counts as :mod:`tomlab.backends.meter` records them when it runs with an empty cache, and
    its decoding limit: a generate pass's rows are prompts; a branch pass counts its prefix (all but the
    prompt's last token) once per prompt, its last token once per branch, and its branches as prompts when
    it decodes; a score pass's rows and tokens are scored ones."""
    out = dict.fromkeys(("prompts", "prompt_tokens", "scored_sequences", "scored_tokens", "decode_limit"), 0.0)
    for p in job.passes:
        if p.kind == "generate":
            out["prompts"] += p.rows
            out["prompt_tokens"] += p.rows * p.prompt_tokens
        elif p.kind == "branch":
            decoding = p.sequences if p.new_tokens else 0
            out["prompts"] += decoding
            out["prompt_tokens"] += p.rows * (p.prompt_tokens - 1) + decoding
        else:
            out["scored_sequences"] += p.rows
            out["scored_tokens"] += p.rows * p.prompt_tokens
        out["decode_limit"] += p.decode_tokens
    return out
