"""Checking an episode record (:meth:`tomlab.team.game.BombGame.record`, the first line of a transcript)
before a replay: every field present, of its type, and possible in the game it describes (each bomb in
a room of the map, one bomb per room, distinct bomb ids, phase colours among the game's colours, every
agent starting in a room of the map). Each problem names the field and its value.

It reads the record as plain JSON data, so it imports nothing of the game itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tomlab.schema import vocabulary

#: The keys every record has (``deadlock_rounds`` may be absent: records written before it existed).
REQUIRED: tuple[str, ...] = ("kind", "rules", "seed", "map", "agents", "colours", "start_rooms", "bombs",
                             "max_rounds", "stall_rounds", "wrong_cutter", "points_per_phase")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_problem(value: Any, where: str, low: int | None = None, nullable: bool = False) -> list[str]:
    if value is None and nullable:
        return []
    if not _is_int(value):
        return [f"{where}: expected an integer{' or null' if nullable else ''}, got {_shown(value)}"]
    if low is not None and value < low:
        return [f"{where}: must be at least {low}, got {value}"]
    return []


def _list(value: Any, where: str, problems: list[str]) -> Sequence[Any]:
    if isinstance(value, (list, tuple)):
        return value
    problems.append(f"{where}: expected a list, got {_shown(value)}")
    return ()


def _mapping(value: Any, where: str, problems: list[str]) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    problems.append(f"{where}: expected a mapping, got {_shown(value)}")
    return {}


def _scalars(record: Mapping[str, Any]) -> list[str]:
    problems = []
    if record["kind"] != "episode":
        problems.append(f"kind: {_shown(record['kind'])} is not an episode record (expected 'episode')")
    rules = vocabulary("team_rules")
    if record["rules"] not in rules:
        problems.append(f"rules: {_shown(record['rules'])} is not a rules variant ({', '.join(rules)})")
    if record["wrong_cutter"] not in ("refuse", "explode"):
        problems.append(f"wrong_cutter: {_shown(record['wrong_cutter'])} is not 'refuse' or 'explode'")
    problems += _int_problem(record["seed"], "seed")
    problems += _int_problem(record["max_rounds"], "max_rounds", low=1)
    problems += _int_problem(record["points_per_phase"], "points_per_phase", low=1)
    problems += _int_problem(record["stall_rounds"], "stall_rounds", low=1, nullable=True)
    problems += _int_problem(record.get("deadlock_rounds"), "deadlock_rounds", low=1, nullable=True)
    return problems


def _bomb_problems(bombs: Sequence[Any], rooms: Sequence[Any], colours: Sequence[Any], paper: bool) -> list[str]:
    problems: list[str] = []
    ids: dict[Any, int] = {}
    placed: dict[Any, int] = {}
    for i, bomb in enumerate(bombs):
        where = f"bombs[{i}]"
        bomb = _mapping(bomb, where, problems)
        missing = [k for k in ("id", "room", "sequence") if k not in bomb]
        if missing:
            problems.append(f"{where}: missing the key(s) {', '.join(missing)}")
            continue
        problems += _int_problem(bomb["id"], f"{where}.id")
        if _is_int(bomb["id"]) and bomb["id"] in ids:
            problems.append(f"{where}.id: {bomb['id']} is also the id of bombs[{ids[bomb['id']]}]")
        if _is_int(bomb["id"]):
            ids.setdefault(bomb["id"], i)
        if not _is_int(bomb["room"]) or bomb["room"] not in rooms:
            problems.append(f"{where}.room: {_shown(bomb['room'])} is not a room of the map (rooms: {list(rooms)})")
        elif bomb["room"] in placed:
            problems.append(f"{where}.room: {bomb['room']} already holds bombs[{placed[bomb['room']]}] "
                            "(one bomb per room)")
        else:
            placed[bomb["room"]] = i
        problems += _sequence_problems(bomb["sequence"], f"{where}.sequence", colours, paper)
    return problems


def _sequence_problems(value: Any, where: str, colours: Sequence[Any], paper: bool) -> list[str]:
    problems: list[str] = []
    sequence = _list(value, where, problems)
    if isinstance(value, (list, tuple)) and not sequence:
        problems.append(f"{where}: a bomb has at least one phase, got none")
    problems += [f"{where}[{j}]: {_shown(c)} is not a colour of the game ({list(colours)})"
                 for j, c in enumerate(sequence) if c not in colours]
    if paper and len(set(map(str, sequence))) != len(sequence):
        problems.append(f"{where}: {_shown(list(sequence))} repeats a colour, which the paper's rules never draw")
    return problems


def _start_problems(starts: Mapping[str, Any], agents: Sequence[str], rooms: Sequence[Any], paper: bool) -> list[str]:
    problems = [f"start_rooms: no start room for agent {a!r}" for a in agents if a not in starts]
    problems += [f"start_rooms.{a}: {_shown(a)} is not an agent of the record ({list(agents)})"
                 for a in starts if a not in agents]
    for agent in agents:
        room = starts.get(agent)
        if agent in starts and (not _is_int(room) or room not in rooms):
            problems.append(f"start_rooms.{agent}: {_shown(room)} is not a room of the map (rooms: {list(rooms)})")
    if paper and not problems and len({starts[a] for a in agents}) > 1:
        problems.append(f"start_rooms: {_shown(dict(starts))} are several rooms; under the paper's rules the team "
                        "starts in one")
    return problems


def record_problems(record: Any) -> list[str]:
    """Every problem of an episode record, each naming the field and its value ([] when it can be replayed)."""
    if not isinstance(record, Mapping):
        return [f"expected a JSON object, got {_shown(record)}"]
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        return [f"missing the key {k!r}" for k in missing]
    problems = _scalars(record)
    mp = _mapping(record["map"], "map", problems)
    rooms = _list(mp.get("rooms"), "map.rooms", problems)
    problems += [f"map.rooms[{i}]: expected an integer, got {_shown(r)}" for i, r in enumerate(rooms) if not _is_int(r)]
    for i, corridor in enumerate(_list(mp.get("corridors"), "map.corridors", problems)):
        if not isinstance(corridor, (list, tuple)) or len(corridor) != 2 or not all(_is_int(r) for r in corridor):
            problems.append(f"map.corridors[{i}]: expected two room numbers, got {_shown(corridor)}")
    colours = _list(record["colours"], "colours", problems)
    problems += [f"colours[{i}]: expected a colour name, got {_shown(c)}" for i, c in enumerate(colours)
                 if not isinstance(c, str) or not c]
    agents = _mapping(record["agents"], "agents", problems)
    for name, cutters in agents.items():
        problems += [f"agents.{name}: cutter {_shown(c)} is not a colour of the game ({list(colours)})"
                     for c in _list(cutters, f"agents.{name}", problems) if c not in colours]
    paper = record["rules"] == "paper"
    bombs = _list(record["bombs"], "bombs", problems)
    if isinstance(record["bombs"], (list, tuple)) and not bombs:
        problems.append("bombs: an episode has at least one bomb, got none")
    problems += _bomb_problems(bombs, rooms, colours, paper)
    problems += _start_problems(_mapping(record["start_rooms"], "start_rooms", problems), list(agents), rooms, paper)
    return problems


def check_record(record: Any) -> None:
    """Refuse an episode record that cannot be replayed, naming every field at fault and its value."""
    problems = record_problems(record)
    if problems:
        raise ValueError(f"episode record: {'; '.join(problems)}")
