"""Doubt 3, "maybe the heads just detect words for the causal variables": perturbations of BigToM rows.

Each perturbation is a function from a raw BigToM row (the 17 fields of :data:`RAW_FIELDS`) to a row,
deterministic per (seed, story), applicable to real and generated rows alike; one that cannot apply
to a row returns ``None`` (the caller skips the row and counts it). The rows stay valid raw rows (a
five-sentence story), so the condition files, probe samples and evaluation items are built from them
exactly as from the originals.

Two families:

- **the belief is kept, the words change**: ``names`` (the protagonist gets a new name everywhere,
  GSM-Symbolic style), ``noop`` (an irrelevant true clause is added to the first sentence, GSM-NoOp
  style), ``percept_paraphrase`` (the not-seeing sentence is said with other words: "misses", "is
  unaware of", "has no idea about"), ``percept_implicit`` (perception is implied by where the
  protagonist is: "in another room" / "right there" when it happens);
- **decoys, the words are kept, the belief goes the other way**: ``decoy_told`` (the true-belief
  story says the protagonist does not see the event, then that a friend tells them about it later:
  not-seeing words, a true belief) and ``decoy_photo`` (the false-belief story says the protagonist
  sees a photo taken before the event: a seeing word, a false belief).

Every decoy sentence is placed in the slot of the belief it implies (the true-belief story's
perception sentence, or the false-belief one's), so the answers, and with them every label, follow
the belief and not the words: no answer field changes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping

import pandas as pd

from tomlab.bigtom.raw import RAW_FIELDS, story_parts

Row = dict[str, str]

KEEP_BELIEF: tuple[str, ...] = ("names", "noop", "percept_paraphrase", "percept_implicit")
DECOYS: tuple[str, ...] = ("decoy_told", "decoy_photo")
PERTURBATIONS: tuple[str, ...] = KEEP_BELIEF + DECOYS

# Names that are in no BigToM story and carry no gender, so the stories' pronouns still fit.
_NAMES = ("Avery", "Rowan", "Quinn", "Emerson", "Hayden", "Remy", "Sasha", "Ariel", "Blair", "Sage", "Reese",
          "Jules")
# Irrelevant, true-in-any-story clauses (no period: the story keeps its five sentences).
_NOOPS = ("a radio is playing quietly somewhere nearby", "the weather outside is mild for the season",
          "a clock on the wall ticks steadily", "there is a faint smell of coffee in the air",
          "a bird is singing outside the window")
_PERCEIVE = frozenset({"see", "notice", "witness", "observe", "hear", "realize", "feel", "sense", "discover", "catch",
                       "get", "read", "receive", "spot", "smell", "taste", "learn"})
_NOT_SEEING = re.compile(r"^(?P<name>\S+) (?:does not|doesn't|did not) (?P<verb>\w+) (?P<rest>.+?)\.?$")


def _rng(kind: str, row: Mapping[str, str], seed: int) -> random.Random:
    return random.Random(f"{seed}:{kind}:{row['story']}")  # str seeds are hashed with SHA-512: stable


def _protagonist(row: Mapping[str, str]) -> str | None:
    name = row["story"].split(" ", 1)[0]
    fields = ("aware_of_event", "not_aware_of_event", "belief_answer_aware", "belief_answer_not_aware")
    return name if name.isalpha() and all(re.search(rf"\b{re.escape(name)}\b", row[f]) for f in fields) else None


def _names(row: Row, rng: random.Random) -> Row | None:
    old = _protagonist(row)
    if old is None:
        return None
    words = set(re.findall(r"\w+", " ".join(row[f] for f in RAW_FIELDS)))
    new = rng.choice([n for n in _NAMES if n not in words])
    return {f: re.sub(rf"\b{re.escape(old)}\b", new, row[f]) if f in RAW_FIELDS else row[f] for f in row}


def _noop(row: Row, rng: random.Random) -> Row | None:
    first, dot, rest = row["story"].partition(".")
    if not dot:
        return None
    return {**row, "story": f"{first}; {rng.choice(_NOOPS)}.{rest}"}


def _paraphrase(row: Row, rng: random.Random) -> Row | None:
    m = _NOT_SEEING.match(row["not_aware_of_event"].strip())
    if m is None or m.group("verb") not in _PERCEIVE or " not " in m.group("rest"):
        return None  # not a plain "does not <perceive> <what>" sentence: paraphrasing would garble it
    name, rest = m.group("name"), m.group("rest")
    clause = rest.startswith("that ")
    styles = [f"{name} misses {rest}", f"{name} is unaware {'' if clause else 'of '}{rest}",
              f"{name} has no idea {'' if clause else 'about '}{rest}"]
    if clause:  # "misses that ..." is not English
        styles = styles[1:]
    return {**row, "not_aware_of_event": rng.choice(styles) + "."}


def _implicit(row: Row, rng: random.Random) -> Row | None:
    name = _protagonist(row)
    if name is None:
        return None
    return {**row, "aware_of_event": f"{name} is right there when this happens.",
            "not_aware_of_event": f"{name} is in another room when this happens."}


def _decoy_told(row: Row, rng: random.Random) -> Row | None:
    name = _protagonist(row)
    if name is None:
        return None
    unseen = row["not_aware_of_event"].strip().rstrip(".")
    return {**row, "aware_of_event": f"{unseen}, but a friend tells {name} all about it later."}


def _decoy_photo(row: Row, rng: random.Random) -> Row | None:
    name = _protagonist(row)
    if name is None:
        return None
    return {**row, "not_aware_of_event": f"{name} sees a photo of the scene that was taken before this happened."}


_FUNCTIONS: dict[str, Callable[[Row, random.Random], Row | None]] = {
    "names": _names, "noop": _noop, "percept_paraphrase": _paraphrase, "percept_implicit": _implicit,
    "decoy_told": _decoy_told, "decoy_photo": _decoy_photo,
}


def perturb_row(row: Mapping[str, str], kind: str, seed: int = 0) -> Row | None:
    """``row`` perturbed by ``kind`` (one of :data:`PERTURBATIONS`), or ``None`` when it cannot apply."""
    if kind not in _FUNCTIONS:
        raise ValueError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")
    out = _FUNCTIONS[kind](dict(row), _rng(kind, row, seed))
    if out is None:
        return None
    try:  # it must still be a valid BigToM row (five sentences, no empty field): else skipped, not broken
        story_parts(out["story"])
    except ValueError:
        return None
    return out if all(str(out[f]).strip() for f in RAW_FIELDS) else None


def perturb_frame(raw: pd.DataFrame, kind: str, seed: int = 0) -> tuple[pd.DataFrame, list[int]]:
    """Every row of a raw frame (as :func:`tomlab.bigtom.raw.read_raw` returns it) perturbed by ``kind``;
    returns the perturbed rows (``story_id`` kept) and the story ids of the rows it could not apply to."""
    kept, skipped = [], []
    for i, rec in enumerate(raw.to_dict("records")):
        out = perturb_row(rec, kind, seed)
        if out is None:
            skipped.append(int(rec.get("story_id", i)))
        else:
            kept.append(out)
    return pd.DataFrame(kept, columns=raw.columns), skipped
