"""The team game's text interface (observations and reply parsing) and its PettingZoo ParallelEnv."""

from __future__ import annotations

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
    """An observation as the text an LLM agent reads."""
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


# Verbs in the present (base, -s, -ing) only: an agent that echoes "You moved to room 5" or "You
# have not inspected it" from its observation has not named an action.
_ACTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("move", re.compile(r"\b(?:move|moves|moving|go|goes|going|walk|walks|walking|head|heads|heading|travel|"
                        r"travels|travelling|traveling|enter|enters|entering|proceed|proceeds|proceeding)\b"
                        r"(?:\W+\w+){0,3}?\W+room\s*#?\s*(\d+)")),
    ("inspect", re.compile(r"\b(?:inspect|inspects|inspecting|examine|examines|examining)\b")),
    ("cut", re.compile(r"\b(?:apply|applies|applying|use|uses|using|cut|cuts|cutting)\b"
                       r"(?:\W+\w+){0,3}?\W+(red|green|blue)\b")),
    ("cut", re.compile(r"\b(red|green|blue)\W+(?:cutter|wire)s?\b")),
)


def parse_reply(text: str) -> tuple[Action | None, str | None]:
    """Read an LLM's reply: the first action it names and its message to the team, if any.

    The action comes from the line starting ``Action:`` when there is one, else from the whole
    reply; the earliest mention of a move (``move/go ... room N``), an inspection or a cutter
    (``apply ... red``, ``red cutter``) wins. The message is the rest of a line starting
    ``Message:``. Nothing here checks legality: see :func:`parse_action`.
    """
    text = str(text)
    lowered = text.lower()
    action_line = re.search(r"^\s*\**action\**\s*:\s*(.*)$", lowered, flags=re.MULTILINE)
    scope = action_line.group(1) if action_line else lowered
    found: list[tuple[int, Action]] = []
    for kind, pattern in _ACTION_PATTERNS:
        for m in pattern.finditer(scope):
            if kind == "move":
                found.append((m.start(), Action("move", room=int(m.group(1)[:6]))))
            elif kind == "inspect":
                found.append((m.start(), Action("inspect")))
            else:
                found.append((m.start(), Action("cut", colour=m.group(1))))
    action = min(found, key=lambda x: x[0])[1] if found else None
    msg = re.search(r"^\s*\**message\**\s*:\s*(.*)$", text, flags=re.MULTILINE | re.IGNORECASE)
    message = msg.group(1).strip() if msg and msg.group(1).strip() else None
    if message and message.lower() in {"none", "n/a", "-", "no message"}:
        message = None
    return action, message


def parse_action(text: str, legal: Sequence[Action]) -> Action | None:
    """The action a reply names if it is one of ``legal``, else ``None`` (an invalid action)."""
    action, _ = parse_reply(text)
    return action if action is not None and action in set(legal) else None


class BombDefusalEnv(ParallelEnv):
    """The game as a PettingZoo ``ParallelEnv``: every step is one round, in which the agents act in
    the configured order (so a later agent's action sees an earlier one's effect).

    Actions are indices (see :func:`action_from_index`); an illegal index is refused like an
    invalid action. Rewards follow the original's shaping (+1 for a correct cutter, -1 for a wrong
    one) for the acting agent, plus the round's team score gain / 10 shared by everyone.
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
        gained = 0
        for agent in self.agents:
            if agent not in actions or g.done:
                continue
            action = action_from_index(self.config, int(np.asarray(actions[agent]).reshape(-1)[0]))
            result = g.act(agent, action)  # an illegal one is refused by the rules
            rewards[agent] += result.shaping
            gained += result.score_delta
            infos[agent] = {"valid": result.valid, "feedback": result.feedback}
        g.end_round()
        for agent in rewards:
            rewards[agent] += gained / self.config.points_per_phase
        obs = {a: self._encode(a) for a in self.agents}
        over = g.over
        terminated = {a: g.done or g.stalled for a in self.agents}
        truncated = {a: over and not (g.done or g.stalled) for a in self.agents}
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
