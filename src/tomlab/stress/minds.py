"""Doubt 4, "what if there are several minds?": seeded stories with three characters of different access.

The paper probes BigToM stories with one protagonist, so "the protagonist's belief" is one label per
(story, statement).  Here every story has three characters, each with a role:

- ``seer`` stays behind and perceives the change from ``x`` to ``y`` (the scenario's ``aware`` sentence);
- ``unaware`` is away when it happens (the scenario's ``not_aware`` sentence) and is never told;
- ``told`` is away too, but the seer tells them in private afterwards.

All three first see the initial state ``x``.  Who stayed behind is public to all three; the telling is
known only to teller and listener.  Stories are rendered from the scenario templates of
:mod:`tomlab.bigtom.stories`: the first-mentioned character is the one the scenario's context is about
(its "owner"); every object slot (belief prefix, states, event) names the owner's things by name
("Amara's car"), not by a pronoun that three characters would make ambiguous; an event that opens with
"While {Name} ..." loses that clause (the busy character would contradict the roles).  Which name is
mentioned where, and which name gets which role, are drawn independently, so position gives nothing away.

Ground truth (:func:`first_order_belief`, :func:`second_order_belief`): a character believes ``y`` if they
saw or were told, else ``x``; "what does X think Y believes" is ``x`` when X is the unaware one (X knows
of no change), else Y's own belief (the seer knows who saw and whom they told; the told one knows the
seer saw and who was away).

From the story frame (:func:`generate_minds`) come the questions (:func:`minds_questions`, BigToM-like,
with full-sentence answers), two-option evaluation items with exactly the columns of
:data:`tomlab.bigtom.evaluation.ITEM_COLUMNS` (:func:`minds_items`, scored by ``evaluate_items``
unchanged), and probe samples (:func:`minds_probe_samples`).  The probe prompt is the paper's
``Story: ...\nBelief: <statement>``; with three minds the statement must name whose belief it is, so
it is the full answer sentence ("Ana believes that ...", "Ana thinks that Bo believes that ...").
Within one story the same content is believed by one mind and not by another, so no read-out of the
content alone fits the ``belief`` label: a probe must combine who is asked about with what.
"""

from __future__ import annotations

import itertools
import os
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomlab import io
from tomlab.bigtom.evaluation import ITEM_COLUMNS
from tomlab.bigtom.protocol import check_parser, correct_in_b, protocol_parser
from tomlab.bigtom.protocol import make_prompt as item_prompt
from tomlab.bigtom.stories import NAMES, SCENARIOS, Scenario, _cap, _slots
from tomlab.io import atomic_path, write_parquet
from tomlab.probing.samples import make_prompt

ROLES: tuple[str, ...] = ("seer", "unaware", "told")
"""The three roles: saw the change; away and never told; away but told by the seer."""

SECOND_ORDER_PAIRS: tuple[tuple[str, str], ...] = tuple((a, b) for a in ROLES for b in ROLES if a != b)
"""Every ordered (subject, target) pair of distinct roles: "what does subject think target believes"."""

MINDS: tuple[tuple[int, str, str], ...] = (
    *((1, role, "") for role in ROLES), *((2, a, b) for a, b in SECOND_ORDER_PAIRS)
)
"""Every mind asked about, as (order, role, target role or "")."""

STORY_COLUMNS: tuple[str, ...] = (
    "story_id", "scenario", "variant", "detail", "names", "seer", "unaware", "told",
    "x", "y", "belief_prefix", "story",
)
QUESTION_COLUMNS: tuple[str, ...] = (
    "story_id", "scenario", "order", "role", "target", "subject", "target_name", "condition",
    "question", "correct", "wrong", "truth", "story",
)
SAMPLE_COLUMNS: tuple[str, ...] = (
    "sample_id", "task", "story_id", "scenario", "order", "role", "target", "subject", "target_name",
    "condition", "value", "prompt_id", "story", "statement", "prompt", "oracle", "belief", "protagonist",
    "joint",
)
ITEM_TASKS: dict[int, str] = {1: "minds_first_order", 2: "minds_second_order"}
"""The item ``task`` of each belief order."""

_PERMUTATIONS: tuple[tuple[str, ...], ...] = tuple(itertools.permutations(ROLES))
_WHILE_NAME = re.compile(r"^While \{Name\}[^,]*,\s*")
_PERSON_SLOT = re.compile(r"\{(?:Name|sub|obj|Sub|Obj)\}")
_INT_COLUMNS = ("story_id", "variant", "detail")

Pronouns = tuple[str, str, str]


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    return role


def first_order_belief(role: str) -> str:
    """What the character of ``role`` believes: ``"y"`` (the new state) if they saw or were told, else ``"x"``."""
    return "y" if _check_role(role) in ("seer", "told") else "x"


def second_order_belief(subject: str, target: str) -> str:
    """What ``subject`` thinks ``target`` believes: ``"x"`` if ``subject`` is unaware (they know of no
    change), else ``target``'s own belief (seer and told one both know who saw, who was away and who heard)."""
    if _check_role(subject) == _check_role(target):
        raise ValueError(f"a second-order belief needs two different roles, got {subject!r} twice")
    return "x" if subject == "unaware" else first_order_belief(target)


def mind_truth(order: int, role: str, target: str = "") -> str:
    """The ground truth (``"x"`` or ``"y"``) of one mind of :data:`MINDS`."""
    if order == 1:
        return first_order_belief(role)
    if order == 2:
        return second_order_belief(role, target)
    raise ValueError(f"order must be 1 or 2, got {order!r}")


def mind_condition(role: str, target: str = "") -> str:
    """The ``condition`` naming a mind: ``"seer"`` or ``"seer_about_unaware"``."""
    return f"{role}_about_{target}" if target else role


# --------------------------------------------------------------------------------------------- rendering


def scenario_capacity(sc: Scenario) -> int:
    """Distinct stories of one scenario: variant x detail x ordered name triple x role assignment."""
    n = len(NAMES)
    return len(sc.variants) * len(sc.details) * n * (n - 1) * (n - 2) * len(_PERMUTATIONS)


def minds_capacity(scenarios: Sequence[Scenario] | None = None) -> int:
    """How many distinct stories :func:`generate_minds` can give from ``scenarios`` (default: all)."""
    return sum(scenario_capacity(sc) for sc in (SCENARIOS if scenarios is None else scenarios))


def _decode(sc: Scenario, index: int) -> tuple[int, int, list[int], tuple[str, ...]]:
    """Story ``index`` of a scenario -> (variant, detail, name indices in mention order, roles in mention order)."""
    n = len(NAMES)
    rest, perm = divmod(index, len(_PERMUTATIONS))
    rest, k = divmod(rest, n - 2)
    rest, j = divmod(rest, n - 1)
    rest, i = divmod(rest, n)
    variant, detail = divmod(rest, len(sc.details))
    pool = list(range(n))
    picked = [pool.pop(i), pool.pop(j), pool.pop(k)]
    return variant, detail, picked, _PERMUTATIONS[perm]


def _person(slots: Mapping[str, str], name: str, pronouns: Pronouns, pos: str) -> dict[str, str]:
    sub, obj, _ = pronouns
    return {**slots, "Name": name, "sub": sub, "obj": obj, "pos": pos,
            "Sub": _cap(sub), "Obj": _cap(obj), "Pos": _cap(pos)}


def render_minds_story(
    sc: Scenario,
    variant: Mapping[str, str],
    detail: Mapping[str, str],
    people: Sequence[tuple[str, Pronouns]],
    roles: Sequence[str],
) -> dict[str, str]:
    """One story: ``people`` (name, pronouns) in mention order, ``roles`` the role of each.

    Returns ``story``, ``x``, ``y`` and ``belief_prefix``.  Raises RuntimeError if the text keeps a
    template mark (a template bug).
    """
    if len(people) != 3 or sorted(roles) != sorted(ROLES) or len({p for p, _ in people}) != 3:
        raise ValueError(f"need three distinct people and the roles {ROLES}, got {people!r}, {roles!r}")
    (owner, owner_pron), *_ = people
    by_role = dict(zip(roles, people))
    seer, unaware, told = (by_role[r][0] for r in ROLES)
    own = _slots(owner, owner_pron, variant, detail)  # the context: the owner's own pronouns
    named = _slots(owner, (owner_pron[0], owner_pron[1], f"{owner}'s"), variant, detail)  # the owner's things
    belief, x, y = sc.belief.format_map(named), named["x"], named["y"]
    event = _WHILE_NAME.sub("", sc.event)
    event = (f"while they are away, something changes, and now {belief} {y}" if _PERSON_SLOT.search(event)
             else event.format_map(named))
    # "{pos}" in the access sentences names the owner's things when the event does ("her son"), else
    # the perceiver's own ("his phone")
    owner_things = "{pos}" in sc.event

    def access(template: str, name: str, pronouns: Pronouns) -> str:
        pos = (owner_pron[2] if name == owner else f"{owner}'s") if owner_things else pronouns[2]
        return template.format_map(_person(named, name, pronouns, pos)).rstrip(".")

    away = [(p, pr) for p, pr in people if p != seer]  # in mention order, which gives no role away
    n0, n1, n2 = (p for p, _ in people)
    sentences = [
        sc.context.format_map(own),
        f"{n1} and {n2} are with {owner_pron[1]}",
        f"{n0}, {n1} and {n2} all see that {belief} {x}",
        (f"then {away[0][0]} and {away[1][0]} go off for a while, and all three know that only {seer} "
         "stays behind"),
        event,
        access(sc.aware, *by_role["seer"]),
        *(access(sc.not_aware, p, pr) for p, pr in away),
        f"later, in private, {seer} tells {told} what happened",
        f"nobody tells {unaware} about it",
    ]
    story = " ".join(_cap(s.strip()) + "." for s in sentences)
    if any(c in story for c in "{}^"):
        raise RuntimeError(f"scenario {sc.key!r} renders a template mark: {story!r}")
    return {"story": story, "x": x, "y": y, "belief_prefix": belief}


def _allocate(n: int, capacities: Sequence[int], rng: random.Random) -> list[int]:
    """Spread ``n`` stories over scenarios as evenly as their capacities allow (a shuffled round robin)."""
    counts = [0] * len(capacities)
    order = list(range(len(capacities)))
    rng.shuffle(order)
    left = n
    while left:
        open_ = [i for i in order if counts[i] < capacities[i]]
        if left < len(open_):  # the remainder: one more each for the first scenarios of the shuffled order
            for i in open_[:left]:
                counts[i] += 1
            break
        step = min(left // len(open_), min(capacities[i] - counts[i] for i in open_))
        for i in open_:
            counts[i] += step
        left -= step * len(open_)
    return counts


def generate_minds(n: int, seed: int, scenarios: Sequence[Scenario] | None = None) -> pd.DataFrame:
    """``n`` distinct three-mind stories, deterministic per ``(n, seed)``, spread evenly over ``scenarios``.

    One row per story with the :data:`STORY_COLUMNS`: ``names`` lists the three names in mention
    order (``", "``-joined); ``seer``, ``unaware``, ``told`` hold the name of each role; ``variant`` and
    ``detail`` index the scenario's; ``story_id`` is ``0..n-1``.  Raises ValueError for ``n < 1`` or ``n``
    above :func:`minds_capacity`.
    """
    pool = tuple(SCENARIOS if scenarios is None else scenarios)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    capacities = [scenario_capacity(sc) for sc in pool]
    if n > sum(capacities):
        raise ValueError(f"cannot generate {n} distinct three-mind stories: "
                         f"the scenarios give at most {sum(capacities)}")
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for sc, count in zip(pool, _allocate(n, capacities, rng)):
        for index in rng.sample(range(scenario_capacity(sc)), count):
            var_i, det_i, picked, roles = _decode(sc, index)
            people = [NAMES[i] for i in picked]
            text = render_minds_story(sc, sc.variants[var_i], sc.details[det_i], people, roles)
            by_role = {role: name for role, (name, _) in zip(roles, people)}
            rows.append({"scenario": sc.key, "variant": var_i, "detail": det_i,
                         "names": ", ".join(name for name, _ in people), **by_role, **text})
    rng.shuffle(rows)
    frame = pd.DataFrame(rows)
    if frame["story"].duplicated().any():
        raise RuntimeError("the templates produced a duplicate story (a template bug)")
    frame["story_id"] = np.arange(len(frame), dtype=np.int64)
    return _typed(frame.loc[:, list(STORY_COLUMNS)])


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reset_index(drop=True)
    for column in _INT_COLUMNS:
        out[column] = out[column].astype(np.int64)
    for column in STORY_COLUMNS:
        if column not in _INT_COLUMNS:
            out[column] = out[column].astype(str).astype(object)
    return out


# -------------------------------------------------------------------------------- questions and answers


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing}")


def minds_question(subject: str, target_name: str, belief: str, x: str, y: str) -> str:
    """``"What does Ana believe <prefix>: x or y?"``; with a target, ``"What does Ana think Bo believes ..."``."""
    if target_name:
        return f"What does {subject} think {target_name} believes {belief}: {x} or {y}?"
    return f"What does {subject} believe {belief}: {x} or {y}?"


def minds_answer(subject: str, target_name: str, belief: str, value: str) -> str:
    """The full-sentence answer ``"Ana believes that <prefix> <value>."`` (second order: ``"Ana thinks that Bo
    believes that ..."``)."""
    if target_name:
        return f"{subject} thinks that {target_name} believes that {belief} {value}."
    return f"{subject} believes that {belief} {value}."


def _story_minds(rec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The minds of one story row, in :data:`MINDS` order, with names and truth."""
    for order, role, target in MINDS:
        yield {"order": order, "role": role, "target": target, "subject": str(rec[role]),
               "target_name": str(rec[target]) if target else "", "condition": mind_condition(role, target),
               "truth": mind_truth(order, role, target)}


def minds_questions(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (story, mind of :data:`MINDS`), with the :data:`QUESTION_COLUMNS`.

    ``truth`` is ``"x"`` or ``"y"`` from the ground-truth functions; ``correct`` and ``wrong`` are the
    full-sentence answers stating that state and the other one.
    """
    _require(frame, STORY_COLUMNS, "the story frame")
    rows: list[dict[str, Any]] = []
    for rec in frame.to_dict("records"):
        belief, states = str(rec["belief_prefix"]), {"x": str(rec["x"]), "y": str(rec["y"])}
        for mind in _story_minds(rec):
            other = "y" if mind["truth"] == "x" else "x"
            subject, target_name = mind["subject"], mind["target_name"]
            rows.append({
                "story_id": int(rec["story_id"]), "scenario": rec["scenario"], **mind,
                "question": minds_question(subject, target_name, belief, states["x"], states["y"]),
                "correct": minds_answer(subject, target_name, belief, states[mind["truth"]]),
                "wrong": minds_answer(subject, target_name, belief, states[other]),
                "story": rec["story"],
            })
    out = pd.DataFrame(rows, columns=list(QUESTION_COLUMNS))
    out[["story_id", "order"]] = out[["story_id", "order"]].astype(np.int64)
    return out


# ---------------------------------------------------------------------------------------- probe samples


def minds_probe_samples(frame: pd.DataFrame) -> pd.DataFrame:
    """Probe samples: per story, per mind of :data:`MINDS`, the ``x`` then the ``y`` statement.

    With several minds a statement must say whose belief it attributes, so it is the full answer
    sentence (:func:`minds_answer`: "Ana believes that ..." / "Ana thinks that Bo believes that ..."),
    the prompt the probing ``Story: ...\nBelief: ...`` one; every prompt is distinct. Labels:
    ``oracle`` (the believed content holds after the event: ``value == "y"``), ``belief`` (the
    attribution is true: the mind asked about holds it), ``joint = 2 * oracle + belief``, and
    ``protagonist`` equal to ``belief`` for the probe code that reads that column. Within one story the
    same content is held by one mind and not by another, so ``belief`` is no function of the content
    alone: a probe must combine who is asked about with what. Columns: :data:`SAMPLE_COLUMNS`.
    """
    _require(frame, STORY_COLUMNS, "the story frame")
    rows: list[dict[str, Any]] = []
    for rec in frame.to_dict("records"):
        belief = str(rec["belief_prefix"])
        for mind in _story_minds(rec):
            truth = mind.pop("truth")
            for value in ("x", "y"):
                oracle, held = int(value == "y"), int(value == truth)
                statement = minds_answer(mind["subject"], mind["target_name"], belief, str(rec[value]))
                rows.append({
                    "sample_id": len(rows), "task": "minds", "story_id": int(rec["story_id"]),
                    "scenario": rec["scenario"], **mind, "value": value, "prompt_id": len(rows),
                    "story": rec["story"], "statement": statement,
                    "prompt": make_prompt(str(rec["story"]), statement, "Belief"),
                    "oracle": oracle, "belief": held, "protagonist": held, "joint": 2 * oracle + held,
                })
    return pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))


# ------------------------------------------------------------------------------------- evaluation items


def minds_items(
    frame: pd.DataFrame, *, protocol: str = "original", seed: int = 0, parser: str | None = None
) -> pd.DataFrame:
    """Two-option evaluation items, with exactly the columns of :data:`ITEM_COLUMNS`.

    As :func:`tomlab.bigtom.evaluation.build_items`: one run per (task, condition) (``task`` from
    :data:`ITEM_TASKS`, ``condition`` from :func:`mind_condition`), stories in frame order within a run;
    the slot of the correct answer from :func:`tomlab.bigtom.protocol.correct_in_b` (the ``original``
    protocol draws by position in the run), the prompt from the protocol, ``parser`` the protocol's
    unless given, ``in_original`` false.  ``item_id`` is ``"{story_id}/{task}/{condition}"``.
    """
    parser = check_parser(parser or protocol_parser(protocol))
    questions = minds_questions(frame)
    story_ids = [int(s) for s in frame["story_id"]]
    if len(set(story_ids)) != len(story_ids):
        raise ValueError("the story frame repeats a story_id")
    rows: list[dict[str, Any]] = []
    for order, role, target in MINDS:
        task, condition = ITEM_TASKS[order], mind_condition(role, target)
        run = questions[questions["condition"] == condition]
        ids = story_ids if protocol == "tomlab" else list(range(len(run)))
        for q, in_b in zip(run.to_dict("records"), correct_in_b(protocol, seed, ids, task, condition)):
            correct, wrong = str(q["correct"]), str(q["wrong"])
            option_a, option_b, letter = (wrong, correct, "b") if in_b else (correct, wrong, "a")
            rows.append({
                "item_id": f"{q['story_id']}/{task}/{condition}", "story_id": q["story_id"], "task": task,
                "condition": condition, "story": q["story"], "question": q["question"], "correct": correct,
                "wrong": wrong, "option_a": option_a, "option_b": option_b, "answer_letter": letter,
                "prompt": item_prompt(protocol, str(q["story"]), str(q["question"]), option_a, option_b),
                "protocol": protocol, "parser": parser, "in_original": False,
            })
    items = pd.DataFrame(rows, columns=list(ITEM_COLUMNS))
    items["story_id"] = items["story_id"].astype(np.int64)
    items["in_original"] = items["in_original"].astype(bool)
    return items


# ------------------------------------------------------------------------------------------------ files


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: a three-mind story file is .csv or .parquet, not {suffix or 'no suffix'!r}")
    return suffix


def write_minds(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write the story frame (its :data:`STORY_COLUMNS`) as CSV or parquet (by suffix), atomically."""
    path = Path(path)
    suffix = _format(path)
    _require(frame, STORY_COLUMNS, f"cannot write {path}: the story frame")
    out = frame.loc[:, list(STORY_COLUMNS)]
    if suffix == ".parquet":
        write_parquet(path, out)
        return
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False)


def read_minds(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a file written by :func:`write_minds`; ValueError naming the file if it lacks a column, has
    non-integer ids or a story whose three roles are not three different names."""
    path = Path(path)
    if _format(path) == ".parquet":
        frame = io.read_parquet(path)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in STORY_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a three-mind story file, missing columns {missing}")
    try:
        frame = _typed(frame.loc[:, list(STORY_COLUMNS)])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: a column of {list(_INT_COLUMNS)} is not integer: {err}") from err
    seer, unaware, told = (frame[r] for r in ROLES)
    same = seer.eq(unaware) | unaware.eq(told) | seer.eq(told)
    if same.any():
        raise ValueError(f"{path}: story {int(frame.loc[same, 'story_id'].iloc[0])} gives one name two roles")
    if frame["story_id"].duplicated().any():
        raise ValueError(f"{path}: story_id values repeat")
    return frame
