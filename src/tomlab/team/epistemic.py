"""The team game's epistemic log and the theory-of-mind ground truth computed from it.

Every action, message and observation is an :class:`Event` with where everyone was. What an agent
knows follows from three sources only, the same under both rules variants:

- what it did and was told in reply (an inspection, or under the paper's rules a cut, shows the
  bomb's remaining sequence to the agent that made it);
- what happened in its room while it was there (an agent sees its own room: the event's
  ``witnesses``);
- the messages it sent or received (messages go to the whole team), and the teammates' positions
  shown in each of its observations (``observe`` events).

The three ToM topics, each asked at three orders (introspection, first order, second order):

- ``sequence``: a bomb's phase sequence (:func:`knows`, :func:`knows_that_knows`);
- ``room``: the current contents of a room (:func:`knows_room`, :func:`knows_that_knows_room`); one
  knows them while one is in the room;
- ``bomb_change``: whether a cut changed a bomb's state (:func:`knows_change`,
  :func:`knows_that_knows_change`); one knows it by making or seeing the cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

TOM_ORDERS: tuple[str, ...] = ("introspection", "first_order", "second_order")
TOM_TOPICS: tuple[str, ...] = ("room", "bomb_change", "sequence")


@dataclass(frozen=True)
class Event:
    """One entry of the epistemic log. ``t`` counts events; ``positions`` is where everyone was."""

    t: int
    round: int
    kind: str  # "start", "observe", "move", "inspect", "cut", "wait", "invalid", "message"
    agent: str
    positions: tuple[tuple[str, int], ...]
    room: int | None = None
    bomb: int | None = None
    text: str = ""
    recipients: tuple[str, ...] = ()
    reveals: tuple[int, ...] = ()  # bombs whose remaining sequence the event shows its agent (or a message states)
    changed: bool = False  # whether the event changed a bomb (a correct cut, an explosion)

    def position(self, agent: str) -> int:
        return dict(self.positions)[agent]

    @property
    def witnesses(self) -> tuple[str, ...]:
        """Agents in the acting agent's room when the event happened (the actor included)."""
        here = self.position(self.agent)
        return tuple(a for a, r in self.positions if r == here)


@dataclass
class EpistemicLog:
    events: list[Event] = field(default_factory=list)

    def add(self, **kw: Any) -> Event:
        event = Event(t=len(self.events), **kw)
        self.events.append(event)
        return event

    def upto(self, t: int | None) -> list[Event]:
        return self.events if t is None else self.events[: t + 1]

    def at(self, t: int | None) -> Event:
        return self.events[-1] if t is None else self.events[t]


_LEARNS = ("inspect", "cut")  # actions whose reply can show the actor a bomb's remaining sequence


def knows(log: EpistemicLog, agent: str, bomb: int, t: int | None = None) -> bool:
    """Whether ``agent`` knows bomb ``bomb``'s phase sequence after event ``t`` (default: now): an
    inspection (or, under the paper's rules, a cut) showed it the sequence, or it received or sent a
    message that stated the sequence while its sender knew it."""
    for e in log.upto(t):
        if e.kind in _LEARNS and e.agent == agent and bomb in e.reveals:
            return True
        if e.kind == "message" and bomb in e.reveals and (agent == e.agent or agent in e.recipients):
            return True
    return False


def knows_that_knows(log: EpistemicLog, observer: str, agent: str, bomb: int, t: int | None = None) -> bool:
    """Whether ``observer`` knows that ``agent`` knows bomb ``bomb``'s sequence: the observer saw the
    agent learn it (same room when the agent inspected, or made a revealing cut), or a message that
    stated the sequence was sent or received by both of them (each knows the other received it)."""
    if observer == agent:
        return knows(log, agent, bomb, t)
    for e in log.upto(t):
        if e.kind in _LEARNS and e.agent == agent and bomb in e.reveals and observer in e.witnesses:
            return True
        if e.kind == "message" and bomb in e.reveals:
            party = {e.agent, *e.recipients}
            if agent in party and observer in party:
                return True
    return False


def knows_room(log: EpistemicLog, agent: str, room: int, t: int | None = None) -> bool:
    """Whether ``agent`` knows the current contents of ``room`` (who and which bomb is there) after
    event ``t``: it is in the room, which it sees. An agent elsewhere cannot know them: a teammate
    may have come or gone, or cut, since it last looked."""
    return log.at(t).position(agent) == room


def knows_that_knows_room(log: EpistemicLog, observer: str, agent: str, room: int, t: int | None = None) -> bool:
    """Whether ``observer`` knows that ``agent`` knows the contents of ``room``: the agent is in the
    room, and the observer either is there too (it sees the agent) or its latest observation showed
    the agent in that room (teammates' positions are part of every observation)."""
    if not knows_room(log, agent, room, t):
        return False
    if observer == agent or knows_room(log, observer, room, t):
        return True
    for e in reversed(log.upto(t)):
        if e.kind == "observe" and e.agent == observer:
            return e.position(agent) == room
    return False


def knows_change(log: EpistemicLog, agent: str, event: int) -> bool:
    """Whether ``agent`` knows that the cut of log entry ``event`` changed the bomb's state: it did
    change it (a refused cut changes nothing, so there is nothing to know), and ``agent`` made or saw
    the cut."""
    e = log.events[event]
    return e.kind == "cut" and e.changed and agent in e.witnesses


def knows_that_knows_change(log: EpistemicLog, observer: str, agent: str, event: int) -> bool:
    """Whether ``observer`` knows that ``agent`` knows of that change: both saw it (the cutter always
    does), so each saw the other see it."""
    e = log.events[event]
    return knows_change(log, agent, event) and observer in e.witnesses


class _Bomb(Protocol):
    id: int
    room: int
    sequence: tuple[str, ...]


_COLOUR_WORD = re.compile(r"\b(red|green|blue)\b")


def message_reveals(text: str, bomb: _Bomb) -> bool:
    """Whether a clause of ``text`` names the bomb (``bomb N`` or ``room R``) and lists exactly its
    phase colours, in order: the whole sequence, or what remains of it now. A deterministic reading,
    deliberately strict: a vaguer message does not count as telling."""
    told = {tuple(bomb.sequence), tuple(bomb.sequence)[int(getattr(bomb, "cut", 0)):]}
    for clause in re.split(r"[.;\n!?]", text.lower()):
        names = re.search(rf"\bbomb\s*#?\s*{bomb.id}\b|\broom\s*#?\s*{bomb.room}\b", clause)
        if names and tuple(_COLOUR_WORD.findall(clause)) in told - {()}:
            return True
    return False
