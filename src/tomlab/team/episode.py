"""What every LLM team episode shares, whichever text its agents read (tomlab's own in
:mod:`tomlab.team.agents`, the release's in :mod:`tomlab.team.released_play`): the agents' settings, the
episode record, the yes/no reader of ToM answers and the ToM truth."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tomlab.backends.lm import GenerationConfig
from tomlab.team.epistemic import (
    knows,
    knows_change,
    knows_room,
    knows_that_knows,
    knows_that_knows_change,
    knows_that_knows_room,
)
from tomlab.team.game import Action, BombGame

TOMLAB_HISTORY_ROUNDS = 2
"""The rounds of earlier observations and replies in a ``team.prompts: tomlab`` prompt when
``team.llm.history_rounds`` is null (the released conversation then keeps everything)."""


def _default_prompts() -> str:
    from tomlab.schema import default

    return str(default("team.prompts"))


@dataclass(frozen=True)
class LLMAgentConfig:
    belief: bool = False
    history_rounds: int | str | None = None  # None: the prompts' own (released: all; tomlab: 2); "all"; a number
    max_new_tokens: int = 32
    belief_max_new_tokens: int = 64
    tom_max_new_tokens: int = 6
    temperature: float = 0.0
    chat_template: bool = True
    tom: bool = True
    parser: str | None = None  # null: the rules' own (see tomlab.team.env.reply_parser)
    prompts: str = field(default_factory=_default_prompts)  # team.prompts: released (the default) or tomlab

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], belief: bool = False) -> LLMAgentConfig:
        """From the config's ``team.llm`` section (a clear error names unknown keys)."""
        known = set(cls.__dataclass_fields__) - {"belief"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"team.llm: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        cfg = cls(belief=belief, **raw)
        if cfg.prompts not in ("released", "tomlab"):
            raise ValueError(f"team.prompts must be released or tomlab, got {cfg.prompts!r}")
        if not (cfg.history_rounds is None or cfg.history_rounds == "all"
                or (isinstance(cfg.history_rounds, int) and not isinstance(cfg.history_rounds, bool)
                    and cfg.history_rounds >= 0)):
            raise ValueError(f"team.llm.history_rounds must be null, 'all' or a number >= 0, got {cfg.history_rounds!r}")
        return cfg

    @property
    def released(self) -> bool:
        """Whether the agents read the released text (under the paper's rules; ``assisted`` has only tomlab's)."""
        return self.prompts == "released"

    def generation(self, purpose: str, seed: int) -> GenerationConfig:
        tokens = {"action": self.max_new_tokens, "belief": self.belief_max_new_tokens,
                  "tom": self.tom_max_new_tokens}[purpose]
        stop = () if purpose == "belief" else ("\n\n",)  # an action or an answer is over at a blank line
        # greedy decoding ignores the seed: keep it constant so the prompts of all episodes share a batch
        return GenerationConfig(max_new_tokens=tokens, temperature=self.temperature,
                                seed=seed if self.temperature > 0 else 0, stop=stop,
                                chat_template=self.chat_template)


@dataclass
class Episode:
    """One played episode: its outcome, its cost, its transcript and its ToM questions."""

    agent_type: str
    seed: int
    score: int = 0
    max_score: int = 0
    rounds_played: int = 0
    complete: bool = False
    stalled: bool = False
    deadlocked: bool = False
    actions: int = 0
    valid_actions: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    transcript: list[dict[str, Any]] = field(default_factory=list)
    tom: list[dict[str, Any]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # the game's starting record (BombGame.record)

    def summary(self, max_rounds: int) -> dict[str, Any]:
        return {
            "agent_type": self.agent_type, "seed": self.seed, "score": self.score, "max_score": self.max_score,
            "complete": self.complete, "stalled": self.stalled, "deadlocked": self.deadlocked,
            "rounds_played": self.rounds_played,
            # the paper's "rounds": rounds to defuse everything, the round limit when the team did not
            # (a deadlocked episode is recorded at the round limit with its frozen score)
            "rounds": self.rounds_played if self.complete else max_rounds,
            "actions": self.actions, "valid_actions": self.valid_actions,
            "valid_rate": self.valid_actions / self.actions if self.actions else float("nan"),
            "calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def _finish(ep: Episode, game: BombGame) -> Episode:
    ep.score = game.score
    ep.max_score = game.config.max_score
    ep.complete = game.done and not any(b.exploded for b in game.bombs)
    ep.stalled = game.stalled
    ep.deadlocked = game.deadlocked
    ep.rounds_played = game.round - 1
    return ep


def _record(ep: Episode, game: BombGame, agent: str, action: Action | None, result: Any,
            row: dict[str, Any] | None = None, **extra: Any) -> None:
    """Count the action and write what happened into ``row`` (an LLM call's transcript row) or a new row."""
    ep.actions += 1
    ep.valid_actions += int(result.valid)
    if row is None:
        row = {"kind": "action", "round": game.round, "agent": agent}
        ep.transcript.append(row)
    row.update(action=None if action is None else action.describe(), valid=result.valid,
               feedback=result.feedback, reward=result.shaping, score=game.score, **extra)


_YES_NO = re.compile(r"\b(yes|no)\b")


def parse_yes_no(text: str) -> bool | None:
    m = _YES_NO.search(str(text).lower())
    return None if m is None else m.group(1) == "yes"


def tom_truth(game: BombGame, topic: str, subject: int, agent: str, teammate: str, event: int) -> dict[str, bool]:
    """The true answers, per order, after log entry ``event`` (see :mod:`tomlab.team.epistemic`)."""
    log, t = game.log, len(game.log.events) - 1
    if topic == "room":
        return {"introspection": knows_room(log, agent, subject, t),
                "first_order": knows_room(log, teammate, subject, t),
                "second_order": knows_that_knows_room(log, teammate, agent, subject, t)}
    if topic == "bomb_change":
        return {"introspection": knows_change(log, agent, event),
                "first_order": knows_change(log, teammate, event),
                "second_order": knows_that_knows_change(log, teammate, agent, event)}
    return {"introspection": knows(log, agent, subject, t),
            "first_order": knows(log, teammate, subject, t),
            "second_order": knows_that_knows(log, teammate, agent, subject, t)}
