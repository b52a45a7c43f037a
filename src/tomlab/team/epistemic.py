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
    shown_only: bool = False  # the paper's rules: no witnessing; a message counts once read
    teammates_shown: bool = True  # observations show every teammate's room (not the released text: own room only)

    def add(self, **kw: Any) -> Event:
        event = Event(t=len(self.events), **kw)
        self.events.append(event)
        return event

    def upto(self, t: int | None) -> list[Event]:
        return self.events if t is None else self.events[: t + 1]

    def at(self, t: int | None) -> Event:
        return self.events[-1] if t is None else self.events[t]

    def read(self, agent: str, since: int, t: int | None) -> bool:
        """Whether ``agent`` observed (read its news) after event ``since`` and by event ``t``."""
        return any(e.kind == "observe" and e.agent == agent and e.t > since for e in self.upto(t))

    def origin(self, event: Event) -> int:
        """Where the agent of ``event`` was just before it (a move's starting room)."""
        return self.events[event.t - 1].position(event.agent) if event.t > 0 else event.position(event.agent)


def _told(log: EpistemicLog, e: Event, agent: str, t: int | None) -> bool:
    """Whether message ``e`` has reached ``agent`` by event ``t`` (its sender, or a recipient who has read it)."""
    if agent == e.agent:
        return True
    return agent in e.recipients and (not log.shown_only or log.read(agent, e.t, t))


_LEARNS = ("inspect", "cut")  # actions whose reply can show the actor a bomb's remaining sequence


def knows(log: EpistemicLog, agent: str, bomb: int, t: int | None = None) -> bool:
    """Whether ``agent`` knows bomb ``bomb``'s phase sequence after event ``t`` (default: now): an
    inspection (or, under the paper's rules, a cut) showed it the sequence, or a message that stated
    the sequence while its sender knew it has reached it."""
    for e in log.upto(t):
        if e.kind in _LEARNS and e.agent == agent and bomb in e.reveals:
            return True
        if e.kind == "message" and bomb in e.reveals and _told(log, e, agent, t):
            return True
    return False


def knows_that_knows(log: EpistemicLog, observer: str, agent: str, bomb: int, t: int | None = None) -> bool:
    """Whether ``observer`` knows that ``agent`` knows bomb ``bomb``'s sequence: a message that stated
    the sequence has reached both of them (each knows the other is on the team channel), or, under
    ``assisted``, the observer saw the agent learn it (same room when the agent inspected)."""
    if observer == agent:
        return knows(log, agent, bomb, t)
    for e in log.upto(t):
        if (not log.shown_only and e.kind in _LEARNS and e.agent == agent and bomb in e.reveals
                and observer in e.witnesses):
            return True
        if e.kind == "message" and bomb in e.reveals and _told(log, e, agent, t) and _told(log, e, observer, t):
            return True
    return False


def _views(log: EpistemicLog, agent: str, room: int, t: int | None) -> int | None:
    """The last event by ``t`` at which ``agent`` was shown ``room``'s contents (an observation taken
    there, or its own move or stay into it), if any."""
    for e in reversed(log.upto(t)):
        if e.agent == agent and e.kind in ("observe", "move") and e.room == room:
            return e.t
    return None


def knows_room(log: EpistemicLog, agent: str, room: int, t: int | None = None) -> bool:
    """Whether ``agent`` knows the current contents of ``room`` (who and which bomb is there) after
    event ``t``. Under the paper's rules: it was shown the room (an observation there, or its move into
    it) and nothing in it changed since (nobody else came or went, no bomb in it changed). Under
    ``assisted``: it is in the room, where it sees everything happen."""
    if not log.shown_only:
        return log.at(t).position(agent) == room
    seen = _views(log, agent, room, t)
    if seen is None:
        return False
    for e in log.upto(t)[seen + 1:]:
        if e.kind == "move" and e.agent != agent and room in (e.room, log.origin(e)) and e.room != log.origin(e):
            return False
        if e.kind == "cut" and e.changed and e.room == room:
            return False
    return True


def knows_that_knows_room(log: EpistemicLog, observer: str, agent: str, room: int, t: int | None = None) -> bool:
    """Whether ``observer`` knows that ``agent`` knows the contents of ``room``: the agent does, and the
    observer's latest observation showed the agent in that room (teammates' positions are part of every
    observation; one in a room sees it), or, under ``assisted``, the observer is there too."""
    if not knows_room(log, agent, room, t):
        return False
    if observer == agent or (not log.shown_only and log.at(t).position(observer) == room):
        return True
    for e in reversed(log.upto(t)):
        if e.kind == "observe" and e.agent == observer:  # the released text shows only the observer's own room
            return e.position(agent) == room and (log.teammates_shown or e.room == room)
    return False


def knows_change(log: EpistemicLog, agent: str, event: int) -> bool:
    """Whether ``agent`` knows that the cut of log entry ``event`` changed the bomb's state: it did
    change it (a refused cut changes nothing, so there is nothing to know), and ``agent`` made the cut,
    or, under ``assisted``, saw it. (A message about a cut is not read as telling: only sequences are.)"""
    e = log.events[event]
    if e.kind != "cut" or not e.changed:
        return False
    return agent == e.agent or (not log.shown_only and agent in e.witnesses)


def knows_that_knows_change(log: EpistemicLog, observer: str, agent: str, event: int) -> bool:
    """Whether ``observer`` knows that ``agent`` knows of that change: under ``assisted`` both saw it
    (each saw the other see it); under the paper's rules only the cutter itself."""
    e = log.events[event]
    if not knows_change(log, agent, event):
        return False
    return observer == agent or (not log.shown_only and observer in e.witnesses)


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
        names = re.search(rf"\bbomb\s*+(?:#\s*+)?{bomb.id}\b|\broom\s*+(?:#\s*+)?{bomb.room}\b", clause)
        if names and tuple(_COLOUR_WORD.findall(clause)) in told - {()}:
            return True
    return False
