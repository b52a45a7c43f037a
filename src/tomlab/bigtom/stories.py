"""tomlab's own BigToM-format stories, rendered from the scenario templates shipped as package data."""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from tomlab.bigtom.raw import RAW_FIELDS, _row_problem, write_raw

_SHE = ("she", "her", "her")


_HE = ("he", "him", "his")


NAMES: tuple[tuple[str, tuple[str, str, str]], ...] = tuple(
    [(n, _SHE) for n in (
        "Amara", "Beatriz", "Chloe", "Dalia", "Elif", "Farah", "Greta", "Hana",
        "Ingrid", "Jia", "Keiko", "Leila", "Maya", "Nadia", "Olga", "Priya",
        "Rosa", "Sofia", "Tamsin", "Uma", "Valeria", "Wanjiru", "Yara", "Zainab",
    )]
    + [(n, _HE) for n in (
        "Arjun", "Bruno", "Chidi", "Diego", "Emil", "Felix", "Goran", "Hiro",
        "Ivan", "Jonas", "Kofi", "Luca", "Mateo", "Nikhil", "Omar", "Pavel",
        "Rafael", "Samir", "Tomas", "Umar", "Viktor", "Wiremu", "Yusuf", "Zoltan",
    )]
)
"""Protagonists: (name, (subject, object, possessive) pronouns)."""


@dataclass(frozen=True)
class Scenario:
    """One story template.

    Text templates use ``str.format`` slots: ``{Name}``, the pronouns ``{sub}``, ``{obj}``,
    ``{pos}`` (and capitalised ``{Sub}``, ``{Obj}``, ``{Pos}``), the keys of the chosen variant
    (which must include the states ``x`` and ``y``) and of the chosen detail.  Action phrases are
    written in the base form with a ``^`` before each verb to conjugate (``"^fetch the key"`` gives
    ``"fetches the key"`` and ``"will fetch the key"``).  ``belief`` is the belief prefix: the
    story says ``"<Name> believes that <belief> <x>."``.
    """

    key: str
    context: str
    desire: str
    percept: str
    belief: str
    event: str
    aware: str
    not_aware: str
    act_aware: str
    act_not_aware: str
    desire_question: str
    desire_answer: str
    variants: tuple[Mapping[str, str], ...]
    details: tuple[Mapping[str, str], ...]
    random_events: tuple[tuple[str, str, str], ...]
    desire_answer_not_aware: str | None = None

    @property
    def capacity(self) -> int:
        """How many distinct stories this scenario can give."""
        return len(NAMES) * len(self.variants) * len(self.details)


def load_scenarios(path: str | os.PathLike[str] | None = None) -> tuple[Scenario, ...]:
    """The story templates: ``scenarios.json`` shipped beside this module, or another file of that shape."""
    if path is None:
        text = resources.files("tomlab.bigtom").joinpath("scenarios.json").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    out = []
    for i, entry in enumerate(json.loads(text)):
        try:
            out.append(Scenario(**{
                **entry,
                "variants": tuple(dict(v) for v in entry["variants"]),
                "details": tuple(dict(v) for v in entry["details"]),
                "random_events": tuple(tuple(e) for e in entry["random_events"]),
            }))
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path or 'scenarios.json'}: scenario {i}: {err}") from err
    return tuple(out)


SCENARIOS: tuple[Scenario, ...] = load_scenarios()
"""The scenario templates (at least 24, each with its own setting)."""


_MARKED_VERB = re.compile(r"\^([a-z]+)")


_IRREGULAR = {"have": "has", "go": "goes", "do": "does", "be": "is"}


def _third_person(verb: str) -> str:
    """Present-tense third person singular of a base-form English verb."""
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if len(verb) > 1 and verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _conjugate(phrase: str) -> str:
    return _MARKED_VERB.sub(lambda m: _third_person(m.group(1)), phrase)


def _base(phrase: str) -> str:
    return _MARKED_VERB.sub(lambda m: m.group(1), phrase)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _slots(name: str, pronouns: tuple[str, str, str], variant: Mapping[str, str],
           detail: Mapping[str, str]) -> dict[str, str]:
    sub, obj, pos = pronouns
    slots = {"Name": name, "sub": sub, "obj": obj, "pos": pos, "Sub": _cap(sub), "Obj": _cap(obj), "Pos": _cap(pos)}
    # Slot values may themselves use slots (pronouns, or another variant/detail slot): resolve
    # them a few rounds until nothing changes.
    own = {**detail, **variant}
    for _ in range(3):
        resolved = {k: v.format_map({**slots, **own}) for k, v in own.items()}
        if resolved == own:
            break
        own = resolved
    return {**slots, **own}


def _render(sc: Scenario, name: str, pronouns: tuple[str, str, str], variant: Mapping[str, str],
            detail: Mapping[str, str], random_event: tuple[str, str, str]) -> dict[str, str]:
    s = _slots(name, pronouns, variant, detail)

    def f(template: str) -> str:
        return template.format_map(s)

    belief = f(sc.belief)
    x, y = s["x"], s["y"]
    sentences = [
        f(sc.context),
        f(sc.desire),
        f(sc.percept),
        f"{name} believes that {belief} {x}",
        f(sc.event),
    ]
    story = " ".join(_cap(t) + "." for t in sentences)
    act_aware, act_not_aware = f(sc.act_aware), f(sc.act_not_aware)
    desire_a = f(sc.desire_answer)
    desire_n = f(sc.desire_answer_not_aware) if sc.desire_answer_not_aware else desire_a
    rand, rand_aware, rand_not_aware = (f(t) for t in random_event)
    row = {
        "story": story,
        "aware_of_event": f(sc.aware),
        "not_aware_of_event": f(sc.not_aware),
        "action_aware": f"{name} {_conjugate(act_aware)}.",
        "action_not_aware": f"{name} {_conjugate(act_not_aware)}.",
        "belief_question": f"Does {name} believe {belief} {x} or {y}?",
        "desire_question": f(sc.desire_question),
        "action_question": f"What will {name} do?",
        "belief_answer_aware": f"{name} believes that {belief} {y}.",
        "desire_answer_aware": desire_a,
        "action_answer_aware": f"{name} will {_base(act_aware)}.",
        "belief_answer_not_aware": f"{name} believes that {belief} {x}.",
        "desire_answer_not_aware": desire_n,
        "action_answer_not_aware": f"{name} will {_base(act_not_aware)}.",
        "random_event": rand,
        "aware_of_random_event": rand_aware,
        "not_aware_of_random_event": rand_not_aware,
    }
    return row


def _check_row(row: Mapping[str, str], scenario: str) -> None:
    """Raise RuntimeError if a rendered row breaks the BigToM format (a template bug)."""
    bad = [k for k, v in row.items() if any(c in v for c in ";\n\r") or "{" in v or "}" in v or "^" in v]
    if bad:
        raise RuntimeError(f"scenario {scenario!r}: fields {bad} contain forbidden characters")
    problem = _row_problem([row[name] for name in RAW_FIELDS])
    if problem is not None:
        raise RuntimeError(f"scenario {scenario!r} renders a malformed row ({problem}): {row['story']!r}")
    if row["belief_answer_aware"] == row["belief_answer_not_aware"]:
        raise RuntimeError(f"scenario {scenario!r}: aware and not-aware belief answers are identical")


def max_stories() -> int:
    """How many distinct stories the templates can give in all."""
    return sum(sc.capacity for sc in SCENARIOS)


def _allocate(n: int, rng: random.Random) -> list[int]:
    """Spread ``n`` stories over the scenarios as evenly as their capacities allow."""
    counts = [0] * len(SCENARIOS)
    order = list(range(len(SCENARIOS)))
    rng.shuffle(order)
    left = n
    while left:
        open_ = [i for i in order if counts[i] < SCENARIOS[i].capacity]
        if not open_:
            raise ValueError(f"cannot place {left} more stories: every scenario is full")
        for i in open_:
            if not left:
                break
            counts[i] += 1
            left -= 1
    return counts


def generate_stories(n: int, seed: int) -> pd.DataFrame:
    """Generate ``n`` distinct BigToM-format stories, deterministically for a given ``seed``.

    Returns a frame with the :data:`tomlab.data.RAW_FIELDS` columns plus ``scenario`` (the template
    key) and ``story_id`` (``0..n-1``).  Stories are spread evenly over the scenarios, and no two
    rows share a story text.  Raises ValueError if ``n`` is negative or larger than
    :func:`max_stories`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    limit = max_stories()
    if n > limit:
        raise ValueError(f"cannot generate {n} distinct stories: the templates give at most {limit}")
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for sc, count in zip(SCENARIOS, _allocate(n, rng)):
        n_var, n_det = len(sc.variants), len(sc.details)
        for index in rng.sample(range(sc.capacity), count):
            name_i, rest = divmod(index, n_var * n_det)
            var_i, det_i = divmod(rest, n_det)
            name, pronouns = NAMES[name_i]
            random_event = sc.random_events[rng.randrange(len(sc.random_events))]
            row = _render(sc, name, pronouns, sc.variants[var_i], sc.details[det_i], random_event)
            _check_row(row, sc.key)
            row["scenario"] = sc.key
            rows.append(row)
    rng.shuffle(rows)
    frame = pd.DataFrame(rows, columns=[*RAW_FIELDS, "scenario"], dtype=object)
    if frame["story"].duplicated().any():
        raise RuntimeError("the templates produced a duplicate story (a template bug)")
    frame["story_id"] = pd.Series(range(len(frame)), dtype="int64")
    return frame


def write_generated(path: str | os.PathLike[str], n: int, seed: int) -> None:
    """Generate ``n`` stories with ``seed`` and write them as a raw BigToM file at ``path``."""
    write_raw(generate_stories(n, seed), path)
