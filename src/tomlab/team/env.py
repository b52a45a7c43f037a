"""The team game's text interface (observations and reply parsing) and its PettingZoo ParallelEnv."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from tomlab.team.game import (
    Action,
    BombGame,
    TeamConfig,
    action_from_index,
    action_space_size,
)


def observation_text(obs: Mapping[str, Any]) -> str:
    """An observation as the text an LLM agent reads (what it holds depends on the rules variant:
    see :meth:`tomlab.team.game.BombGame.observation`)."""
    if obs.get("rules", "assisted") == "paper":
        return _paper_text(obs)
    lines = [f"Round {obs['round']} of {obs['max_rounds']}. Team score: {obs['score']}.",
             f"Result of your last action: {obs['feedback']}",
             f"You are in room {obs['room']}. Rooms next to it: {', '.join(map(str, obs['adjacent']))}."]
    bomb = obs["bomb"]
    if bomb is None:
        lines.append("There is no bomb here.")
    elif bomb["remaining"] is None:
        lines.append(f"Bomb {bomb['id']} is here. You have not inspected it.")
    else:
        lines.append(f"Bomb {bomb['id']} is here. Its remaining phases, in order: {', '.join(bomb['remaining'])}.")
    lines.append(f"Your cutters: {', '.join(obs['cutters'])}.")
    lines.append("Teammates: " + "; ".join(f"{a} is in room {r}" for a, r in obs["teammates"].items()) + ".")
    for seen in obs["witnessed"]:
        lines.append(f"You saw: {seen}.")
    for sender, text in obs["messages"]:
        lines.append(f"Message from {sender}: {text}")
    if obs.get("legal"):
        lines.append(f"Actions you can take now: {'; '.join(obs['legal'])}.")
    return "\n".join(lines)


def _paper_text(obs: Mapping[str, Any]) -> str:
    """The paper's observation: round, team score, the last action's result, one's own room and who
    and which bomb is in it, teammates' positions, and the messages since one's last turn."""
    people = " and ".join(obs["here"]) if obs["here"] else "none of your teammates"
    bomb = f"bomb {obs['bomb']['id']}" if obs["bomb"] is not None else "no bomb"
    messages = " ".join(f'{sender}: "{text}".' for sender, text in obs["messages"]) or "none."
    return "\n".join([
        f"Round: {obs['round']}. Team score: {obs['score']}.",
        f"Result of your last action: {obs['feedback']}",
        f"Your room: you are in room {obs['room']}, with {people}; {bomb}.",
        "Teammates: " + "; ".join(f"{a} is in room {r}" for a, r in obs["teammates"].items()) + ".",
        f"Messages from your teammates: {messages}",
    ])


# Verbs in the present (base, -s, -ing) only: an agent that echoes "You moved to room 5" or "You
# have not inspected it" from its observation has not named an action.
_ACTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("move", re.compile(r"\b(?:move|moves|moving|go|goes|going|walk|walks|walking|head|heads|heading|travel|"
                        r"travels|travelling|traveling|enter|enters|entering|proceed|proceeds|proceeding)\b"
                        r"(?:\W+\w+){0,3}?\W+room\s*+(?:#\s*+)?(\d+)")),
    ("inspect", re.compile(r"\b(?:inspect|inspects|inspecting|examine|examines|examining)\b")),
    ("cut", re.compile(r"\b(?:apply|applies|applying|use|uses|using|cut|cuts|cutting)\b"
                       r"(?:\W+\w+){0,3}?\W+(red|green|blue)\b")),
    ("cut", re.compile(r"\b(red|green|blue)\W+(?:cutter|wire)s?\b")),
)


# A line starting "Action:" / "Message:" (after blank lines or spaces). The space before the label is
# matched within its own line: a label after blank lines is found from its own line start, so a run of
# blank lines is not rescanned from each of its lines (the label read is the same).
_ACTION_LINE = re.compile(r"^[^\S\n]*+\**action\**\s*:\s*(.*)$", re.MULTILINE)
_MESSAGE_LINE = re.compile(r"^[^\S\n]*+\**message\**\s*:\s*(.*)$", re.MULTILINE | re.IGNORECASE)


_ROOM_DIGITS = 18  # a room number longer than this (leading zeros aside) is on no map: it names no action


def _room_number(digits: str) -> int | None:
    """The room a move names, read whole ("007" is 7, "1234567" is 1234567, never its first digits);
    None (no action) for a number longer than ``_ROOM_DIGITS`` digits."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _ROOM_DIGITS else None


def parse_reply(text: str) -> tuple[Action | None, str | None]:
    """Read an LLM's reply: the first action it names and its message to the team, if any.

    The action comes from the line starting ``Action:`` when there is one, else from the whole
    reply; the earliest mention of a move (``move/go ... room N``), an inspection or a cutter
    (``apply ... red``, ``red cutter``) wins. The message is the rest of a line starting
    ``Message:``. Nothing here checks legality: see :func:`parse_action`.
    """
    text = str(text)
    lowered = text.lower()
    action_line = _ACTION_LINE.search(lowered)
    scope = action_line.group(1) if action_line else lowered
    found: list[tuple[int, Action | None]] = []
    for kind, pattern in _ACTION_PATTERNS:
        for m in pattern.finditer(scope):
            if kind == "move":
                room = _room_number(m.group(1))
                found.append((m.start(), None if room is None else Action("move", room=room)))
            elif kind == "inspect":
                found.append((m.start(), Action("inspect")))
            else:
                found.append((m.start(), Action("cut", colour=m.group(1))))
    action = min(found, key=lambda x: x[0])[1] if found else None
    msg = _MESSAGE_LINE.search(text)
    message = msg.group(1).strip() if msg and msg.group(1).strip() else None
    if message and message.lower() in {"none", "n/a", "-", "no message"}:
        message = None
    return action, message


_ORIGINAL_COLOURS = ("red", "blue", "green")  # the order in which the released parser looks for a colour


def parse_reply_original(text: str, rooms: Sequence[int] | None = None) -> tuple[Action | None, str | None]:
    """Read a reply as the released code does (``decode_action`` of multi_LLM_comm, re-implemented
    from its behaviour): the message is the text inside the first pair of double quotes after
    ``Message to Team:`` (straight quotes only) and is cut out of the reply; then, in this order, a
    reply containing "inspect" anywhere inspects; else one containing "move to room" moves to the
    room named by the character after the following space (a single digit; a room not among ``rooms``,
    when given, is no action, as the released code refuses rooms off its map); else "go_to_node_"
    followed by a digit moves there; else one containing "apply" or "defuse" cuts with the first of
    red, blue, green it contains; else it names no action. Case is ignored. Where the released code
    would raise, this reads on: no digit after "move to room" is no action, and an unclosed quote
    makes the rest of the reply the message."""
    text = str(text)
    message: str | None = None
    head, mark, tail = text.partition("Message to Team:")
    if mark and '"' in text:
        quoted = tail.split('"')
        if len(quoted) > 1:
            message = quoted[1]
            text = head + (quoted[2] if len(quoted) > 2 else "")
    low = text.lower()
    action: Action | None = None
    if "inspect" in low:
        action = Action("inspect")
    elif "move to room" in low:
        room = low.split("move to room", 1)[1][1:2]
        action = Action("move", room=int(room)) if room.isdigit() and (rooms is None or int(room) in rooms) else None
    elif "go_to_node_" in low:
        room = low.split("go_to_node_", 1)[1][:1]
        action = Action("move", room=int(room)) if room.isdigit() else None
    elif "apply" in low or "defuse" in low:
        colour = next((c for c in _ORIGINAL_COLOURS if c in low), None)
        action = Action("cut", colour=colour) if colour else None
    return action, (message.strip() or None) if message is not None else None


REPLY_PARSERS = {"original": parse_reply_original, "lenient": parse_reply}
"""The reply parsers by name (``team.llm.parser``)."""


def reply_parser(rules: str, parser: str | None = None, rooms: Sequence[int] | None = None) -> Any:
    """The parser ``parser`` names, or by default the rules' own (paper: original, assisted: lenient);
    the original one is given the map's ``rooms`` (it refuses rooms off the map, as released)."""
    name = parser or ("original" if rules == "paper" else "lenient")
    if name not in REPLY_PARSERS:
        raise ValueError(f"team.llm.parser must be one of {sorted(REPLY_PARSERS)} or null, got {name!r}")
    if name == "original" and rooms is not None:
        return functools.partial(parse_reply_original, rooms=tuple(rooms))
    return REPLY_PARSERS[name]


def parse_action(text: str, legal: Sequence[Action]) -> Action | None:
    """The action a reply names if it is one of ``legal``, else ``None`` (an invalid action)."""
    action, _ = parse_reply(text)
    return action if action is not None and action in set(legal) else None


class BombDefusalEnv(ParallelEnv):
    """The game as a PettingZoo ``ParallelEnv``: every step is one round, in which the agents act in
    the configured order (so a later agent's action sees an earlier one's effect).

    Actions are indices (see :func:`action_from_index`); an illegal index is refused like an
    invalid action. Under the paper's rules the agents act in a random order each round and share one
    team reward: the original's shaping (+1 for a correct cutter, -1 for a wrong one) summed over the
    round's cuts, plus the round's team score gain / 10. Under ``assisted`` they act in the configured
    order and each gets its own shaping plus the shared score gain.
    Observations are float vectors of what each agent may see (its room, teammates' rooms, its
    cutters, the bomb here and, once it inspected it, its remaining phases, the score and the
    round); :meth:`state` is the full state, for a centralised critic.
    """

    metadata = {"name": "tomlab_bomb_defusal_v0", "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(self, config: TeamConfig | None = None, render_mode: str | None = None) -> None:
        self.config = config or TeamConfig()
        self.render_mode = render_mode
        self.possible_agents = list(self.config.agents)
        self.agents: list[str] = []
        self._rng = np.random.default_rng()
        self.game: BombGame | None = None
        n_rooms, n_col, n_agents = len(self.config.rooms), len(self.config.colours), len(self.config.agents)
        self._max_phases = max(self.config.bomb_phases)
        self.obs_dim = n_rooms * n_agents + n_col + 2 + self._max_phases * n_col + 2
        self.state_dim = (n_rooms * n_agents + len(self.config.bomb_phases) * (n_rooms + self._max_phases * n_col + 1)
                          + 2)
        self._obs_space = spaces.Box(0.0, 1.0, shape=(self.obs_dim,), dtype=np.float32)
        self._act_space = spaces.Discrete(action_space_size(self.config))
        self.state_space = spaces.Box(0.0, 1.0, shape=(self.state_dim,), dtype=np.float32)
        self.observation_spaces = {a: self._obs_space for a in self.possible_agents}
        self.action_spaces = {a: self._act_space for a in self.possible_agents}

    def observation_space(self, agent: str) -> Any:
        return self._obs_space

    def action_space(self, agent: str) -> Any:
        return self._act_space

    # --- encoding -----------------------------------------------------------------------------
    def _room_hot(self, room: int) -> np.ndarray:
        v = np.zeros(len(self.config.rooms), dtype=np.float32)
        v[self.config.rooms.index(room)] = 1.0
        return v

    def _phases_hot(self, phases: Sequence[str] | None) -> np.ndarray:
        v = np.zeros((self._max_phases, len(self.config.colours)), dtype=np.float32)
        for i, c in enumerate(phases or ()):
            v[i, self.config.colours.index(c)] = 1.0
        return v.ravel()

    def _encode(self, agent: str) -> np.ndarray:
        g = self.game
        assert g is not None
        here = g.positions[agent]
        parts = [self._room_hot(here)]
        parts += [self._room_hot(g.positions[a]) for a in self.config.agents if a != agent]
        parts.append(np.array([c in self.config.holds(agent) for c in self.config.colours], dtype=np.float32))
        bomb = g.bomb_in(here)
        seen = bomb is not None and bomb.id in g.inspected[agent]
        parts.append(np.array([bomb is not None, seen], dtype=np.float32))
        parts.append(self._phases_hot(bomb.remaining if (bomb is not None and seen) else None))
        parts.append(np.array([g.score / self.config.max_score,
                               min(g.round - 1, self.config.max_rounds) / self.config.max_rounds], dtype=np.float32))
        return np.concatenate(parts).astype(np.float32)

    def state(self) -> np.ndarray:
        g = self.game
        if g is None:
            raise RuntimeError("call reset() first")
        parts = [self._room_hot(g.positions[a]) for a in self.config.agents]
        for b in g.bombs:
            parts += [self._room_hot(b.room), self._phases_hot(b.remaining if b.live else None),
                      np.array([b.live], dtype=np.float32)]
        parts.append(np.array([g.score / self.config.max_score,
                               min(g.round - 1, self.config.max_rounds) / self.config.max_rounds], dtype=np.float32))
        return np.concatenate(parts).astype(np.float32)

    # --- API ----------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.game = BombGame(self.config, seed=int(self._rng.integers(2**31 - 1)) if seed is None else int(seed))
        self.agents = list(self.possible_agents)
        return {a: self._encode(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        g = self.game
        if g is None or not self.agents:
            raise RuntimeError("the episode is over: call reset()")
        rewards = {a: 0.0 for a in self.agents}
        infos: dict[str, dict] = {a: {} for a in self.agents}
        gained, shaping = 0, 0.0
        paper = self.config.rules == "paper"
        order = list(self.agents)
        if paper:  # the paper's MAPPO agents act in a random order each round
            order = [order[i] for i in self._rng.permutation(len(order))]
        for agent in order:
            if agent not in actions or g.done:
                continue
            action = action_from_index(self.config, int(np.asarray(actions[agent]).reshape(-1)[0]))
            result = g.act(agent, action)  # an illegal one is refused by the rules
            shaping += result.shaping
            if not paper:
                rewards[agent] += result.shaping
            gained += result.score_delta
            infos[agent] = {"valid": result.valid, "feedback": result.feedback}
        g.end_round()
        for agent in rewards:  # paper: one team reward, the shaping of all cuts plus the score gain
            rewards[agent] += gained / self.config.points_per_phase + (shaping if paper else 0.0)
        obs = {a: self._encode(a) for a in self.agents}
        over = g.over
        ended = g.done or g.stalled or g.deadlocked
        terminated = {a: ended for a in self.agents}
        truncated = {a: over and not ended for a in self.agents}
        if over:
            self.agents = []
        return obs, rewards, terminated, truncated, infos

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.game is None:
            return None
        g = self.game
        bombs = "; ".join(f"bomb {b.id} room {b.room} {'-'.join(b.remaining) or 'defused'}" for b in g.bombs)
        return f"round {g.round} score {g.score} positions {g.positions} | {bombs}"

    def close(self) -> None:
        pass
