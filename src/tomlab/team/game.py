"""The bomb-defusal team game of Li et al. (EMNLP 2023): rules, actions, bombs and the game itself.

Two rules variants (``TeamConfig.rules``). ``paper``, the default, is the paper's game: each bomb's
phase colours drawn without repeats, all agents starting together in one random room, an observation
of round, team score, the result of one's last action, the contents of one's own room, teammates'
positions and the last round's messages; a correct partial cut and a refused wrong colour show the
cutter the bomb's remaining sequence (as in the released code); moving to the room one is in is a
valid action that does nothing. ``assisted`` is tomlab's earlier variant: colours may repeat, agents
start in separate random rooms, and every observation also lists the legal actions, the phases of a
bomb one inspected and the teammate actions one witnessed. The epistemic log that gives the ToM
ground truth is :mod:`tomlab.team.epistemic`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tomlab.schema import vocabulary
from tomlab.team.epistemic import (  # noqa: F401 (re-exported: the game's log and its ToM ground truth)
    EpistemicLog,
    Event,
    knows,
    knows_that_knows,
    message_reveals,
)
from tomlab.team.record import check_record

COLOURS: tuple[str, ...] = ("red", "green", "blue")


RULES: tuple[str, ...] = vocabulary("team_rules")
"""The rules variants: the paper's (default) and tomlab's earlier ``assisted`` one."""


DEFAULT_ROOMS: tuple[int, ...] = (0, 3, 5, 6, 8)


DEFAULT_CORRIDORS: tuple[tuple[int, int], ...] = ((0, 3), (0, 5), (0, 6), (0, 8), (3, 8), (5, 6), (6, 8))


DEFAULT_AGENTS: dict[str, tuple[str, ...]] = {
    "Alpha": ("red", "green"),
    "Bravo": ("green", "blue"),
    "Charlie": ("red", "blue"),
}


ActionKind = Literal["move", "inspect", "cut", "wait"]


@dataclass(frozen=True)
class TeamConfig:
    """Map, bombs, agents and rules of one game.

    ``bomb_phases`` gives the number of phases of each bomb (default two one-phase, two two-phase and
    one three-phase bomb: 90 points in all). ``rules`` is ``"paper"`` or ``"assisted"`` (see the
    module). ``wrong_cutter`` is ``"refuse"`` (the cut is refused and nothing happens, as in the
    original code) or ``"explode"`` (the bomb is destroyed and scores nothing). The episode ends when
    every bomb is defused or destroyed, after ``max_rounds`` rounds, in a deadlock (for
    ``deadlock_rounds`` consecutive rounds every agent repeated its previous action and nothing
    changed), or when for ``stall_rounds`` consecutive rounds nothing changed (``None``: never).
    """

    rooms: tuple[int, ...] = DEFAULT_ROOMS
    corridors: tuple[tuple[int, int], ...] = DEFAULT_CORRIDORS
    bomb_phases: tuple[int, ...] = (1, 1, 2, 2, 3)
    agents: tuple[str, ...] = tuple(DEFAULT_AGENTS)
    cutters: tuple[tuple[str, ...], ...] = tuple(DEFAULT_AGENTS.values())
    colours: tuple[str, ...] = COLOURS
    rules: str = "paper"
    max_rounds: int = 30
    deadlock_rounds: int | None = 3
    stall_rounds: int | None = None
    wrong_cutter: Literal["refuse", "explode"] = "refuse"
    points_per_phase: int = 10

    def __post_init__(self) -> None:
        rooms = tuple(int(r) for r in self.rooms)
        object.__setattr__(self, "rooms", rooms)
        object.__setattr__(self, "corridors", tuple((int(a), int(b)) for a, b in self.corridors))
        object.__setattr__(self, "bomb_phases", tuple(int(p) for p in self.bomb_phases))
        object.__setattr__(self, "agents", tuple(str(a) for a in self.agents))
        object.__setattr__(self, "cutters", tuple(tuple(str(c) for c in cs) for cs in self.cutters))
        object.__setattr__(self, "colours", tuple(str(c) for c in self.colours))
        if len(set(rooms)) != len(rooms) or not rooms:
            raise ValueError(f"team.map.rooms must be distinct and non-empty, got {list(rooms)}")
        for a, b in self.corridors:
            if a not in rooms or b not in rooms or a == b:
                raise ValueError(f"team.map.corridors: corridor {a}-{b} must join two different listed rooms")
        if not _connected(rooms, self.corridors):
            raise ValueError("team.map: the corridors must connect every room")
        if len(self.bomb_phases) > len(rooms):
            raise ValueError(f"team.bomb_phases: {len(self.bomb_phases)} bombs but only {len(rooms)} rooms "
                             "(at most one bomb per room)")
        if any(p < 1 for p in self.bomb_phases):
            raise ValueError("team.bomb_phases: every bomb needs at least one phase")
        if not self.agents or len(set(self.agents)) != len(self.agents):
            raise ValueError(f"team.agents: names must be distinct and non-empty, got {list(self.agents)}")
        if len(self.cutters) != len(self.agents):
            raise ValueError("team.agents: one cutter list per agent")
        for name, cs in zip(self.agents, self.cutters):
            unknown = set(cs) - set(self.colours)
            if unknown:
                raise ValueError(f"team.agents.{name}: unknown cutter colour(s) {sorted(unknown)}; "
                                 f"colours are {list(self.colours)}")
        if self.wrong_cutter not in ("refuse", "explode"):
            raise ValueError(f"team.wrong_cutter must be 'refuse' or 'explode', got {self.wrong_cutter!r}")
        if self.max_rounds < 1:
            raise ValueError("team.max_rounds must be >= 1")
        if self.stall_rounds is not None and self.stall_rounds < 1:
            raise ValueError("team.stall_rounds must be >= 1 or null")
        if self.deadlock_rounds is not None and self.deadlock_rounds < 1:
            raise ValueError("team.deadlock_rounds must be >= 1 or null")
        if self.rules not in RULES:
            raise ValueError(f"team.rules must be one of {list(RULES)}, got {self.rules!r}")
        if self.rules == "paper" and max(self.bomb_phases) > len(set(self.colours)):
            raise ValueError(f"team.bomb_phases: under the paper's rules a bomb's phase colours do not repeat, so a "
                             f"bomb has at most {len(set(self.colours))} phases (one per colour), got "
                             f"{max(self.bomb_phases)}")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> TeamConfig:
        """Build from the config's ``team`` section (``map.rooms``, ``map.corridors``, ``agents`` as a
        mapping of name to cutter colours, and the scalar rules)."""
        kw: dict[str, Any] = {}
        mp = cfg.get("map") or {}
        if "rooms" in mp:
            kw["rooms"] = tuple(mp["rooms"])
        if "corridors" in mp:
            kw["corridors"] = tuple(tuple(c) for c in mp["corridors"])
        if "agents" in cfg:
            kw["agents"] = tuple(cfg["agents"])
            kw["cutters"] = tuple(tuple(v) for v in cfg["agents"].values())
        for key in ("bomb_phases", "colours"):
            if key in cfg:
                kw[key] = tuple(cfg[key])
        for key in ("rules", "max_rounds", "deadlock_rounds", "stall_rounds", "wrong_cutter", "points_per_phase"):
            if key in cfg:
                kw[key] = cfg[key]
        return cls(**kw)

    @functools.cached_property
    def neighbours(self) -> dict[int, tuple[int, ...]]:
        adj: dict[int, set[int]] = {r: set() for r in self.rooms}
        for a, b in self.corridors:
            adj[a].add(b)
            adj[b].add(a)
        return {r: tuple(sorted(adj[r])) for r in self.rooms}

    @property
    def max_score(self) -> int:
        return self.points_per_phase * sum(self.bomb_phases)

    def holds(self, agent: str) -> tuple[str, ...]:
        return self.cutters[self.agents.index(agent)]


def _connected(rooms: Sequence[int], corridors: Iterable[tuple[int, int]]) -> bool:
    adj: dict[int, set[int]] = {r: set() for r in rooms}
    for a, b in corridors:
        adj[a].add(b)
        adj[b].add(a)
    seen, todo = {rooms[0]}, [rooms[0]]
    while todo:
        for n in adj[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return len(seen) == len(rooms)


@dataclass(frozen=True, order=True)
class Action:
    kind: ActionKind
    room: int | None = None
    colour: str | None = None

    def describe(self) -> str:
        if self.kind == "move":
            return f"move to room {self.room}"
        if self.kind == "inspect":
            return "inspect the bomb"
        if self.kind == "wait":
            return "wait"
        return f"apply the {self.colour} cutter"

    @classmethod
    def from_description(cls, text: str) -> Action:
        """The action :meth:`describe` wrote (a transcript's ``action`` field), for replaying an episode."""
        if text == "inspect the bomb":
            return cls("inspect")
        if text == "wait":
            return cls("wait")
        move = re.fullmatch(r"move to room (-?\d+)", text)
        if move:
            return cls("move", room=int(move.group(1)))
        cut = re.fullmatch(r"apply the (\S+) cutter", text)
        if cut:
            return cls("cut", colour=cut.group(1))
        raise ValueError(f"not an action description: {text!r}")


def action_space_size(config: TeamConfig) -> int:
    """Discrete actions: move to each room, inspect, cut with each colour."""
    return len(config.rooms) + 1 + len(config.colours)


def action_from_index(config: TeamConfig, index: int) -> Action:
    n_rooms = len(config.rooms)
    index = int(index)
    if 0 <= index < n_rooms:
        return Action("move", room=config.rooms[index])
    if index == n_rooms:
        return Action("inspect")
    if n_rooms < index < action_space_size(config):
        return Action("cut", colour=config.colours[index - n_rooms - 1])
    raise ValueError(f"action index {index} outside 0..{action_space_size(config) - 1}")


def action_to_index(config: TeamConfig, action: Action) -> int:
    if action.kind == "move":
        return config.rooms.index(int(action.room))  # type: ignore[arg-type]
    if action.kind == "inspect":
        return len(config.rooms)
    return len(config.rooms) + 1 + config.colours.index(str(action.colour))


@dataclass
class Bomb:
    id: int
    room: int
    sequence: tuple[str, ...]
    cut: int = 0
    exploded: bool = False

    @property
    def defused(self) -> bool:
        return self.cut == len(self.sequence)

    @property
    def live(self) -> bool:
        return not self.defused and not self.exploded

    @property
    def remaining(self) -> tuple[str, ...]:
        return self.sequence[self.cut:]


@dataclass(frozen=True)
class Result:
    """What one agent action did."""

    action: Action | None
    valid: bool
    feedback: str
    shaping: float  # +1 correct cutter, -1 wrong cutter (the original's shaping), else 0
    score_delta: int
    changed: bool  # whether the state changed (a move, a first inspection or revealing cut, a cut)
    event: int = -1  # the log entry the action wrote


class BombGame:
    """The rules. Call :meth:`act` for each agent in turn, then :meth:`end_round`."""

    def __init__(self, config: TeamConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = int(seed)
        paper = config.rules == "paper"
        rng = np.random.default_rng(self.seed)
        rooms = list(config.rooms)
        bomb_rooms = rng.choice(len(rooms), size=len(config.bomb_phases), replace=False)
        self.bombs = [
            Bomb(id=i + 1, room=rooms[int(r)],
                 sequence=tuple(str(c) for c in rng.choice(config.colours, size=n, replace=not paper)))
            for i, (r, n) in enumerate(zip(bomb_rooms, config.bomb_phases))
        ]
        if paper:  # the whole team starts in one random room
            start = rooms[int(rng.integers(len(rooms)))]
            self.positions: dict[str, int] = {a: start for a in config.agents}
        else:
            self.positions = {a: rooms[int(rng.integers(len(rooms)))] for a in config.agents}
        self._reset_play()

    def _reset_play(self) -> None:
        agents = self.config.agents
        self.round = 1
        self.score = 0
        self.stalled_for = 0
        self.deadlocked_for = 0
        self.changed_this_round = False
        self.actions_this_round: dict[str, Action | None] = {}
        self.actions_last_round: dict[str, Action | None] | None = None
        self.inspected: dict[str, set[int]] = {a: set() for a in agents}
        self.last_feedback: dict[str, str] = {a: "The game has started." for a in agents}
        self.inbox: dict[str, list[tuple[int, str, str]]] = {a: [] for a in agents}
        self.witnessed: dict[str, list[str]] = {a: [] for a in agents}
        self.log = EpistemicLog(shown_only=self.config.rules == "paper")
        self.log.add(round=0, kind="start", agent=agents[0], positions=self._snapshot())
        self._record = self._initial_record()

    # --- the episode record -------------------------------------------------------------------
    def _initial_record(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "kind": "episode",
            "rules": cfg.rules,
            "seed": self.seed,
            "map": {"rooms": list(cfg.rooms), "corridors": [list(c) for c in cfg.corridors]},
            "agents": {a: list(cfg.holds(a)) for a in cfg.agents},
            "colours": list(cfg.colours),
            "start_rooms": dict(self.positions),
            "bombs": [{"id": b.id, "room": b.room, "sequence": list(b.sequence)} for b in self.bombs],
            "max_rounds": cfg.max_rounds,
            "deadlock_rounds": cfg.deadlock_rounds,
            "stall_rounds": cfg.stall_rounds,
            "wrong_cutter": cfg.wrong_cutter,
            "points_per_phase": cfg.points_per_phase,
        }

    def record(self) -> dict[str, Any]:
        """The episode's starting record (JSON-ready): rules variant, map, each agent's cutters and start
        room, each bomb's room and phase sequence, and the game's limits; enough to replay the episode
        with :meth:`from_record` and no random draws."""
        return copy.deepcopy(self._record)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BombGame:
        """A game in the starting state written in ``record`` (see :meth:`record`); a record that is
        incomplete or impossible (a bomb outside the map, an unknown colour, ...) is refused, naming the
        field and its value (:func:`tomlab.team.record.check_record`)."""
        check_record(record)
        agents = record["agents"]
        try:
            config = TeamConfig(
                rooms=tuple(record["map"]["rooms"]),
                corridors=tuple(tuple(c) for c in record["map"]["corridors"]),
                bomb_phases=tuple(len(b["sequence"]) for b in record["bombs"]),
                agents=tuple(agents), cutters=tuple(tuple(c) for c in agents.values()),
                colours=tuple(record["colours"]), rules=str(record["rules"]), max_rounds=int(record["max_rounds"]),
                deadlock_rounds=record.get("deadlock_rounds"), stall_rounds=record["stall_rounds"],
                wrong_cutter=record["wrong_cutter"], points_per_phase=int(record["points_per_phase"]),
            )
        except ValueError as exc:  # the map, the agents' cutters: named as the config's keys
            raise ValueError(f"episode record: {exc}") from exc
        game = cls(config, seed=int(record["seed"]))
        game.bombs = [Bomb(id=int(b["id"]), room=int(b["room"]), sequence=tuple(str(c) for c in b["sequence"]))
                      for b in record["bombs"]]
        game.positions = {a: int(record["start_rooms"][a]) for a in config.agents}
        game._reset_play()
        return game

    # --- state --------------------------------------------------------------------------------
    def _snapshot(self) -> tuple[tuple[str, int], ...]:
        return tuple((a, self.positions[a]) for a in self.config.agents)

    def bomb_in(self, room: int) -> Bomb | None:
        for bomb in self.bombs:
            if bomb.room == room and bomb.live:
                return bomb
        return None

    def bomb_by_id(self, bomb_id: int) -> Bomb:
        return next(b for b in self.bombs if b.id == bomb_id)

    @property
    def done(self) -> bool:
        return not any(b.live for b in self.bombs)

    @property
    def stalled(self) -> bool:
        """Whether nothing changed for ``stall_rounds`` rounds (tomlab's broader stop)."""
        return (self.config.stall_rounds is not None and self.stalled_for >= self.config.stall_rounds
                and not self.done)

    @property
    def deadlocked(self) -> bool:
        """Whether for ``deadlock_rounds`` rounds every agent repeated its action and nothing changed."""
        return (self.config.deadlock_rounds is not None and self.deadlocked_for >= self.config.deadlock_rounds
                and not self.done)

    @property
    def over(self) -> bool:
        return self.done or self.round > self.config.max_rounds or self.stalled or self.deadlocked

    def legal_actions(self, agent: str) -> list[Action]:
        """The actions that do something (or, under the paper's rules, the valid no-op of moving to one's
        own room): moves to neighbouring rooms, and where a live bomb is, inspecting it and one's cutters."""
        here = self.positions[agent]
        acts = [Action("move", room=r) for r in self.config.neighbours[here]]
        if self.config.rules == "paper":
            acts.insert(0, Action("move", room=here))
        if self.bomb_in(here) is not None:
            acts.append(Action("inspect"))
            acts += [Action("cut", colour=c) for c in self.config.holds(agent)]
        return acts

    # --- dynamics -----------------------------------------------------------------------------
    def act(self, agent: str, action: Action | None, message: str | None = None) -> Result:
        """Carry out one agent's action (``None``: it named no action) and deliver its message."""
        if agent not in self.positions:
            raise KeyError(f"unknown agent {agent!r}")
        result = self._apply(agent, action)
        result = dataclasses.replace(result, event=len(self.log.events) - 1)
        self.last_feedback[agent] = result.feedback
        self.actions_this_round[agent] = action
        if result.changed:
            self.changed_this_round = True
        if message:
            self._send(agent, message)
        return result

    def _invalid(self, agent: str, action: Action | None, why: str) -> Result:
        self.log.add(round=self.round, kind="invalid", agent=agent, positions=self._snapshot(),
                     room=self.positions[agent], text=why)
        named = action.describe() if action is not None else "no action"
        return Result(action, False, f"Invalid action ({named}): {why} You lost this turn.", 0.0, 0, False)

    def _witness(self, agent: str, text: str) -> None:
        if self.config.rules != "assisted":  # the paper's agents are not told what teammates did
            return
        here = self.positions[agent]
        for other, room in self.positions.items():
            if other != agent and room == here:
                self.witnessed[other].append(f"{agent} {text}")

    def room_contents(self, room: int, viewer: str | None = None) -> str:
        """Who and which bomb is in ``room``, as the paper's observation states it."""
        others = [a for a, r in self.positions.items() if r == room and a != viewer]
        bomb = self.bomb_in(room)
        people = " and ".join(others) if others else "none of your teammates"
        return f"{people}; " + (f"bomb {bomb.id}" if bomb is not None else "no bomb")

    def _apply(self, agent: str, action: Action | None) -> Result:
        here = self.positions[agent]
        paper = self.config.rules == "paper"
        if action is None:
            return self._invalid(agent, None, "your reply did not name a move, an inspection or a cutter.")
        if action.kind == "wait":  # the planner's idle turn; not offered to LLM or RL agents
            self.log.add(round=self.round, kind="wait", agent=agent, positions=self._snapshot(), room=here)
            return Result(action, True, "You waited.", 0.0, 0, False)
        if action.kind == "move":
            if paper and action.room == here:  # the paper's valid no-op
                self.log.add(round=self.round, kind="move", agent=agent, positions=self._snapshot(), room=here)
                return Result(action, True, f"You stayed in room {here}. In it: {self.room_contents(here, agent)}.",
                              0.0, 0, False)
            if action.room not in self.config.neighbours[here]:
                return self._invalid(agent, action, f"room {action.room} is not next to room {here} "
                                     f"(you can go to {', '.join(map(str, self.config.neighbours[here]))}).")
            self._witness(agent, f"left for room {action.room}")
            self.positions[agent] = int(action.room)  # type: ignore[arg-type]
            self._witness(agent, f"arrived from room {here}")
            self.log.add(round=self.round, kind="move", agent=agent, positions=self._snapshot(), room=action.room)
            found = f" In it: {self.room_contents(int(action.room), agent)}." if paper else ""  # type: ignore[arg-type]
            return Result(action, True, f"You moved from room {here} to room {action.room}.{found}", 0.0, 0, True)
        bomb = self.bomb_in(here)
        if bomb is None:
            return self._invalid(agent, action, f"there is no bomb left in room {here}.")
        learns = not knows(self.log, agent, bomb.id)  # new knowledge counts as a change (stall, deadlock)
        if action.kind == "inspect":
            first = learns
            self.inspected[agent].add(bomb.id)
            self.log.add(round=self.round, kind="inspect", agent=agent, positions=self._snapshot(),
                         room=here, bomb=bomb.id, reveals=(bomb.id,))
            self._witness(agent, f"inspected bomb {bomb.id}")
            return Result(action, True, f"You inspected bomb {bomb.id}: its remaining phases are "
                          f"{', '.join(bomb.remaining)}.", 0.0, 0, first)
        if action.kind != "cut" or action.colour not in self.config.holds(agent):
            return self._invalid(agent, action, f"you hold only the {' and '.join(self.config.holds(agent))} cutters.")
        if action.colour == bomb.remaining[0]:
            bomb.cut += 1
            delta = self.config.points_per_phase * len(bomb.sequence) if bomb.defused else 0
            self.score += delta
            reveal = paper and not bomb.defused  # the paper's cutter is told what remains
            if reveal:
                self.inspected[agent].add(bomb.id)
            self.log.add(round=self.round, kind="cut", agent=agent, positions=self._snapshot(), room=here,
                         bomb=bomb.id, text=str(action.colour), reveals=(bomb.id,) if reveal else (), changed=True)
            self._witness(agent, f"cut a phase of bomb {bomb.id} with the {action.colour} cutter")
            if bomb.defused:
                rest = f"Bomb {bomb.id} is defused (+{delta} points)."
            elif paper:
                rest = f"Its remaining phases are {', '.join(bomb.remaining)}."
            else:
                rest = f"{len(bomb.remaining)} phase(s) remain."
            return Result(action, True, f"You cut phase {bomb.cut} of bomb {bomb.id} with the {action.colour} "
                          f"cutter. {rest}", 1.0, delta, True)
        if self.config.wrong_cutter == "explode":
            bomb.exploded = True
            self.log.add(round=self.round, kind="cut", agent=agent, positions=self._snapshot(), room=here,
                         bomb=bomb.id, text=str(action.colour), changed=True)
            self._witness(agent, f"used the wrong cutter on bomb {bomb.id}, which exploded")
            return Result(action, True, f"Wrong cutter: bomb {bomb.id} exploded and scores nothing.", -1.0, 0, True)
        first = paper and learns
        if paper:
            self.inspected[agent].add(bomb.id)
        self.log.add(round=self.round, kind="cut", agent=agent, positions=self._snapshot(), room=here,
                     bomb=bomb.id, text=str(action.colour), reveals=(bomb.id,) if paper else ())
        told = f" Its remaining phases are {', '.join(bomb.remaining)}." if paper else ""
        return Result(action, True, f"The {action.colour} cutter was refused: it is not the colour of bomb "
                      f"{bomb.id}'s current phase.{told}", -1.0, 0, first)

    def _send(self, agent: str, text: str) -> None:
        text = " ".join(str(text).split())[:300]
        recipients = tuple(a for a in self.config.agents if a != agent)
        reveals = tuple(b.id for b in self.bombs if message_reveals(text, b) and knows(self.log, agent, b.id))
        if any(not knows(self.log, r, b) for r in recipients for b in reveals):
            self.changed_this_round = True  # it tells someone a sequence it did not know
        self.log.add(round=self.round, kind="message", agent=agent, positions=self._snapshot(), text=text,
                     recipients=recipients, reveals=reveals)
        for r in recipients:
            self.inbox[r].append((self.round, agent, text))

    def end_round(self) -> None:
        self.stalled_for = 0 if self.changed_this_round else self.stalled_for + 1
        repeated = (self.actions_last_round is not None and self.actions_this_round == self.actions_last_round)
        self.deadlocked_for = self.deadlocked_for + 1 if repeated and not self.changed_this_round else 0
        self.actions_last_round = self.actions_this_round
        self.actions_this_round = {}
        self.changed_this_round = False
        self.round += 1

    # --- what an agent sees -------------------------------------------------------------------
    def observation(self, agent: str) -> dict[str, Any]:
        """Everything ``agent`` may see now (partial observability), as plain data. Under the paper's
        rules: round, team score, the result of its last action, its room and who and which bomb is in
        it, teammates' positions and the messages since its last turn; ``assisted`` adds the rooms next
        to it, its cutters, the phases of a bomb here it inspected, the legal actions and the teammate
        actions it witnessed (keys absent under the paper's rules are ``None``)."""
        here = self.positions[agent]
        bomb = self.bomb_in(here)
        assisted = self.config.rules == "assisted"
        return {
            "agent": agent,
            "rules": self.config.rules,
            "round": min(self.round, self.config.max_rounds),
            "max_rounds": self.config.max_rounds,
            "score": self.score,
            "room": here,
            "here": [a for a, r in self.positions.items() if r == here and a != agent],
            "adjacent": list(self.config.neighbours[here]) if assisted else None,
            "bomb": None if bomb is None else {
                "id": bomb.id,
                "remaining": list(bomb.remaining) if assisted and bomb.id in self.inspected[agent] else None,
            },
            "cutters": list(self.config.holds(agent)) if assisted else None,
            "legal": [a.describe() for a in self.legal_actions(agent)] if assisted else None,
            "teammates": {a: r for a, r in self.positions.items() if a != agent},
            "feedback": self.last_feedback[agent],
            "witnessed": list(self.witnessed[agent]) if assisted else None,
            "messages": [(s, t) for _, s, t in self.inbox[agent]],
        }

    def observe(self, agent: str) -> dict[str, Any]:
        """:meth:`observation`, written into the log (what the agent was shown: teammates' positions),
        and the agent's news (witnessed events, received messages) then cleared."""
        obs = self.observation(agent)
        self.log.add(round=self.round, kind="observe", agent=agent, positions=self._snapshot(), room=self.positions[agent])
        self.clear_news(agent)
        return obs

    def clear_news(self, agent: str) -> None:
        """Forget what ``agent`` has been shown (witnessed events, received messages)."""
        self.witnessed[agent].clear()
        self.inbox[agent].clear()
