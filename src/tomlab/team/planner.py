"""The optimal joint planner: the fewest rounds to the highest score, by exhaustive search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tomlab.team.game import Action, BombGame, TeamConfig

State = tuple[tuple[int, ...], tuple[int, ...]]  # (room per agent, phases cut per bomb)


@dataclass(frozen=True)
class Plan:
    rounds: int  # rounds the plan takes (0 if nothing is left to do)
    score: int  # the score it reaches
    complete: bool  # every bomb defused
    actions: tuple[tuple[Action, ...], ...]  # per round, one action per agent (configured order)


def _score(config: TeamConfig, sequences: Sequence[tuple[str, ...]], cut: tuple[int, ...]) -> int:
    return sum(config.points_per_phase * len(seq) for seq, c in zip(sequences, cut) if c == len(seq))


def plan_from(config: TeamConfig, positions: Sequence[int], bomb_rooms: Sequence[int],
              sequences: Sequence[tuple[str, ...]], cut: Sequence[int] | None = None) -> Plan:
    """The minimum-round plan that defuses every bomb, within ``config.max_rounds``; when none
    exists, the earliest plan reaching the highest reachable score."""
    cut0 = tuple(cut) if cut is not None else tuple(0 for _ in sequences)
    room_bomb = {room: i for i, room in enumerate(bomb_rooms)}
    start: State = (tuple(positions), cut0)
    goal = tuple(len(s) for s in sequences)
    holds = [config.holds(a) for a in config.agents]

    def options(state: State, i: int) -> list[tuple[Action, State]]:
        rooms, cuts = state
        here = rooms[i]
        out = [(Action("wait"), state)]
        for nxt in config.neighbours[here]:
            out.append((Action("move", room=nxt), (rooms[:i] + (nxt,) + rooms[i + 1:], cuts)))
        b = room_bomb.get(here)
        if b is not None and cuts[b] < len(sequences[b]):
            colour = sequences[b][cuts[b]]
            if colour in holds[i]:
                out.append((Action("cut", colour=colour), (rooms, cuts[:b] + (cuts[b] + 1,) + cuts[b + 1:])))
        return out

    best_state, best_round = start, 0
    best_score = _score(config, sequences, cut0)
    seen = {start}
    frontier = [start]
    # history[r][i]: state after agent i in round r -> (state before, action)
    history: list[list[dict[State, tuple[State, Action]]]] = []
    goal_state: State | None = start if cut0 == goal else None
    rnd = 0
    while goal_state is None and frontier and rnd < config.max_rounds:
        rnd += 1
        layer = list(frontier)
        steps: list[dict[State, tuple[State, Action]]] = []
        for i in range(len(config.agents)):
            parents: dict[State, tuple[State, Action]] = {}
            for state in layer:
                for action, nxt in options(state, i):
                    parents.setdefault(nxt, (state, action))
            steps.append(parents)
            layer = list(parents)
        history.append(steps)
        frontier = [s for s in layer if s not in seen]
        seen.update(frontier)
        for s in frontier:
            if s[1] == goal:
                goal_state = s
                break
            score = _score(config, sequences, s[1])
            if score > best_score:
                best_state, best_round, best_score = s, rnd, score
    end, rounds = (goal_state, rnd) if goal_state is not None else (best_state, best_round)
    if goal_state is not None and goal_state == start:
        rounds = 0
    actions: list[tuple[Action, ...]] = []
    state = end
    for r in range(rounds - 1, -1, -1):
        joint: list[Action] = []
        for i in range(len(config.agents) - 1, -1, -1):
            state, action = history[r][i][state]
            joint.append(action)
        actions.append(tuple(reversed(joint)))
    actions.reverse()
    return Plan(rounds=rounds, score=_score(config, sequences, end[1]), complete=end[1] == goal,
                actions=tuple(actions))


def plan_game(game: BombGame) -> Plan:
    """The plan for a game's current state."""
    cfg = game.config
    live = [not b.exploded for b in game.bombs]  # an exploded bomb is out of the game: nothing left to cut
    return plan_from(cfg, [game.positions[a] for a in cfg.agents], [b.room for b in game.bombs],
                     [b.sequence if ok else () for b, ok in zip(game.bombs, live)],
                     [b.cut if ok else 0 for b, ok in zip(game.bombs, live)])
