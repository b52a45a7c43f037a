"""Debate tasks: counter-intuitive arithmetic (generated families, the original's JSON format), number
normalisation and scoring, and ambiguous translation with its scores."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ARITHMETIC_COLUMNS = ["id", "family", "question", "answer", "answers", "intuitive", "explanation"]


@dataclass(frozen=True)
class Instance:
    family: str
    question: str
    answer: float
    intuitive: float
    explanation: str


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _bat_and_ball(rng: np.random.Generator) -> Instance:
    diff = int(rng.integers(2, 20)) * 5  # cents
    ball = int(rng.integers(1, 20)) * 5
    total = 2 * ball + diff
    item, extra = ["bat", "pen", "notebook", "cup"][int(rng.integers(4))], ["ball", "cap", "eraser", "saucer"][int(rng.integers(4))]
    return Instance("bat_and_ball",
                    f"A {item} and a {extra} cost {total} cents in total. The {item} costs {diff} cents more than "
                    f"the {extra}. How many cents does the {extra} cost?",
                    ball, total - diff,
                    f"If the {extra} costs x, the {item} costs x + {diff}, so 2x + {diff} = {total} and x = {ball}.")


def _machines(rng: np.random.Generator) -> Instance:
    n = int(rng.integers(3, 12))
    minutes = int(rng.integers(2, 15))
    k = int(rng.integers(20, 200))
    return Instance("machines",
                    f"It takes {n} machines {minutes} minutes to make {n} widgets. How many minutes would it take "
                    f"{k} machines to make {k} widgets?",
                    minutes, k,
                    f"Each machine makes one widget in {minutes} minutes, so {k} machines make {k} widgets in "
                    f"{minutes} minutes.")


def _doubling(rng: np.random.Generator) -> Instance:
    days = int(rng.integers(10, 60)) * 2
    thing = ["a patch of lily pads", "a colony of mould", "a field of weeds"][int(rng.integers(3))]
    return Instance("doubling",
                    f"In a lake, {thing} doubles in size every day. It takes {days} days to cover the whole lake. "
                    "How many days does it take to cover half of the lake?",
                    days - 1, days // 2,
                    f"It doubles every day, so the day before it covers the lake it covers half: day {days - 1}.")


def _hens(rng: np.random.Generator) -> Instance:
    a = int(rng.integers(2, 7))
    b = a * int(rng.integers(2, 6))
    return Instance("hens",
                    f"If {a} hens lay {a} eggs in {a} days, how many eggs do {b} hens lay in {b} days?",
                    b * b / a, b,
                    f"Each hen lays one egg every {a} days, so in {b} days it lays {b}/{a} eggs, and {b} hens lay "
                    f"{b} * {b} / {a} = {_fmt(b * b / a)} eggs.")


def _race(rng: np.random.Generator) -> Instance:
    k = int(rng.integers(2, 10))
    return Instance("race",
                    f"In a race you overtake the runner in position {k}. What is your position now?",
                    k, k - 1,
                    f"You take the place of the runner you passed: position {k}.")


def _buy_sell(rng: np.random.Generator) -> Instance:
    a = int(rng.integers(5, 30)) * 10
    b = a + int(rng.integers(1, 10)) * 10
    c = b + int(rng.integers(1, 10)) * 10
    d = c + int(rng.integers(1, 10)) * 10
    return Instance("buy_sell",
                    f"A trader buys a horse for ${a}, sells it for ${b}, buys it back for ${c} and sells it again "
                    f"for ${d}. How many dollars did the trader make in total?",
                    (b - a) + (d - c), (b - a) - (c - b) + (d - c),
                    f"Two separate trades: {b} - {a} = {b - a} and {d} - {c} = {d - c}, together {(b - a) + (d - c)}.")


_HARMONIC_PAIRS = ((30, 60), (20, 30), (40, 60), (12, 24), (10, 15), (60, 90), (30, 45), (15, 30), (20, 60), (36, 45))


def _round_trip(rng: np.random.Generator) -> Instance:
    v1, v2 = _HARMONIC_PAIRS[int(rng.integers(len(_HARMONIC_PAIRS)))]
    dist = int(rng.integers(2, 20)) * 30
    avg = 2 * v1 * v2 / (v1 + v2)
    return Instance("round_trip",
                    f"A car drives {dist} km to a town at {v1} km/h and drives back the same way at {v2} km/h. "
                    "What is its average speed in km/h over the whole trip?",
                    avg, (v1 + v2) / 2,
                    f"Total distance over total time: 2 * {dist} / ({dist}/{v1} + {dist}/{v2}) = {_fmt(avg)} km/h.")


def _cuts(rng: np.random.Generator) -> Instance:
    t = int(rng.integers(2, 12))
    k = int(rng.integers(4, 13))
    return Instance("cuts",
                    f"It takes {t} minutes to saw a log into 2 pieces. How many minutes does it take to saw the same "
                    f"kind of log into {k} pieces?",
                    t * (k - 1), t * k / 2,
                    f"2 pieces need 1 cut; {k} pieces need {k - 1} cuts of {t} minutes each.")


def _fence(rng: np.random.Generator) -> Instance:
    d = int(rng.integers(2, 10))
    n = int(rng.integers(5, 30))
    length = d * n
    return Instance("fence",
                    f"A straight fence is {length} metres long, with a post every {d} metres including both ends. "
                    "How many posts are there?",
                    n + 1, n,
                    f"{length} / {d} = {n} gaps between posts, so {n + 1} posts.")


def _percent(rng: np.random.Generator) -> Instance:
    p = int(rng.integers(1, 10)) * 10
    change = -p * p / 100
    return Instance("percent",
                    f"A price rises by {p}% and then the new price falls by {p}%. By what percentage has the price "
                    "changed overall? (Give a negative number for a fall.)",
                    change, 0,
                    f"(1 + {p / 100:g}) * (1 - {p / 100:g}) = {1 - p * p / 10000:g}, a change of {_fmt(change)}%.")


def _socks(rng: np.random.Generator) -> Instance:
    n = int(rng.integers(2, 8))
    per = int(rng.integers(10, 40))
    return Instance("socks",
                    f"A drawer holds {per} socks of each of {n} colours, mixed. In the dark, how many socks must you "
                    "take out to be sure of having two of the same colour?",
                    n + 1, 2,
                    f"With {n} colours you could draw {n} different ones; the next one must match: {n + 1}.")


def _clock(rng: np.random.Generator) -> Instance:
    k = int(rng.integers(3, 7))
    gap = int(rng.integers(1, 6))
    m = int(rng.integers(k + 2, 13))
    s = gap * (k - 1)
    return Instance("clock",
                    f"A clock takes {s} seconds to strike {k} o'clock ({k} strikes). How many seconds does it take "
                    f"to strike {m} o'clock?",
                    gap * (m - 1), s * m / k,
                    f"{k} strikes have {k - 1} gaps of {gap} seconds; {m} strikes have {m - 1} gaps: {gap * (m - 1)}.")


FAMILIES: dict[str, Callable[[np.random.Generator], Instance]] = {
    "bat_and_ball": _bat_and_ball, "machines": _machines, "doubling": _doubling, "hens": _hens, "race": _race,
    "buy_sell": _buy_sell, "round_trip": _round_trip, "cuts": _cuts, "fence": _fence, "percent": _percent,
    "socks": _socks, "clock": _clock,
}


def generate_arithmetic(n: int, seed: int = 0, families: Sequence[str] | None = None) -> pd.DataFrame:
    """``n`` fresh instances, cycling through ``families`` (default all) with numbers drawn from
    ``seed``. Columns: id, family, question, answer (the number as text), answers (acceptable
    strings), intuitive (the tempting wrong answer), explanation."""
    names = list(families) if families else list(FAMILIES)
    unknown = set(names) - set(FAMILIES)
    if unknown:
        raise ValueError(f"debate.arithmetic.families: unknown {sorted(unknown)}; known: {sorted(FAMILIES)}")
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(int(n)):
        family = names[i % len(names)]
        for _ in range(100):  # redraw the rare instance whose intuitive answer happens to be right
            inst = FAMILIES[family](rng)
            if not math.isclose(inst.answer, inst.intuitive):
                break
        rows.append({"id": f"{family}-{i}", "family": family, "question": inst.question, "answer": _fmt(inst.answer),
                     "answers": [_fmt(inst.answer)], "intuitive": _fmt(inst.intuitive),
                     "explanation": inst.explanation})
    return pd.DataFrame(rows, columns=ARITHMETIC_COLUMNS)


def load_arithmetic_json(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The original counter-intuitive arithmetic format: a JSON list of objects with ``question``,
    ``answer`` (a list of acceptable strings), ``explanation``, ``incorrect answer`` and
    ``incorrect explanation``. Errors name the file and the entry."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}") from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of questions")
    rows = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "question" not in entry or "answer" not in entry:
            raise ValueError(f"{path}: entry {i} needs 'question' and 'answer'")
        answers = entry["answer"] if isinstance(entry["answer"], list) else [entry["answer"]]
        if not answers:
            raise ValueError(f"{path}: entry {i} has no acceptable answer")
        rows.append({"id": f"original-{i}", "family": "original", "question": str(entry["question"]),
                     "answer": str(answers[0]), "answers": [str(a) for a in answers],
                     "intuitive": str(entry.get("incorrect answer", "")),
                     "explanation": str(entry.get("explanation", ""))})
    return pd.DataFrame(rows, columns=ARITHMETIC_COLUMNS)


_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}


_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}


_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


_NUMBER_WORD = "|".join(sorted({*_UNITS, *_TENS, *_SCALES}, key=len, reverse=True))


_WORDS_RE = re.compile(rf"\b(?:{_NUMBER_WORD})(?:[\s-]+(?:and[\s-]+)?(?:{_NUMBER_WORD}))*\b")


_NUMBER_RE = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d|,\d)|(?<![\w.])-?\d+(?:\.\d+)?(?:/\d+)?")


def words_to_number(text: str) -> int | None:
    """``"twenty-one"`` -> 21, ``"one hundred and five"`` -> 105; ``None`` if it is not a number."""
    total = current = 0
    seen = False
    for word in re.split(r"[\s-]+", text.lower().strip()):
        if word == "and" or not word:
            continue
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total += (current or 1) * _SCALES[word]
            current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def extract_numbers(text: str) -> list[float]:
    """Every number in ``text``, in order: digits (with thousands commas, decimals, simple
    fractions) and numbers written in words. Currency signs, percent signs and units around them
    are ignored; "5 cents" is 5."""
    found: list[tuple[int, float]] = []
    lowered = str(text).lower()
    for m in _NUMBER_RE.finditer(lowered):
        token = m.group(0).replace(",", "")
        try:
            value = float(Fraction(token)) if "/" in token else float(token)
        except (ValueError, ZeroDivisionError):
            continue
        found.append((m.start(), value))
    for m in _WORDS_RE.finditer(lowered):
        value = words_to_number(m.group(0))
        if value is not None:
            found.append((m.start(), float(value)))
    return [v for _, v in sorted(found)]


def final_number(text: str) -> float | None:
    """The answer a reply commits to: the number after the last "answer" marker if there is one,
    else the last number in the reply."""
    lowered = str(text).lower()
    marks = [m.end() for m in re.finditer(r"answer\s*(?:is|:)?|=\s*", lowered)]
    if marks:
        after = extract_numbers(lowered[marks[-1]:])
        if after:
            return after[0]
    numbers = extract_numbers(lowered)
    return numbers[-1] if numbers else None


def stated_answer(text: str) -> float | None:
    """The number a reply explicitly commits to after its last "answer" marker ("Answer: 12", "the
    answer is twelve"), or None when it has no such marker followed by a number. Stricter than
    :func:`final_number`, which falls back to the last number anywhere (an echoed "Round 3" counts
    there, not here)."""
    lowered = str(text).lower()
    marks = [m.end() for m in re.finditer(r"answer\s*(?:is|:)?", lowered)]
    for end in reversed(marks):
        rest = lowered[end:].lstrip(" \t\n:*=")
        after = extract_numbers(rest.split("\n", 1)[0][:40])  # on the marker's own line only
        if after:
            return after[0]
    return None


def score_answer(reply: str, acceptable: Sequence[str], tol: float = 1e-6) -> bool:
    """Exact match after normalisation: the reply's final number equals one of the acceptable
    answers' numbers (an acceptable answer with no number is matched as text, case-insensitive)."""
    value = final_number(reply)
    for answer in acceptable:
        nums = extract_numbers(str(answer))
        if nums:
            if value is not None and math.isclose(value, nums[0], rel_tol=tol, abs_tol=tol):
                return True
        elif str(answer).strip().lower() and str(answer).strip().lower() in str(reply).lower():
            return True
    return False


TRANSLATION_COLUMNS = ["id", "source", "reference", "wrong_reference"]


# A handful of English sentences with a lexically ambiguous word, written for this project, with a
# correct French translation and one that takes the wrong sense. Enough to run the pipeline end to
# end on the embedded model; real experiments load their own file (load_translation).
EXAMPLE_TRANSLATIONS: tuple[tuple[str, str, str], ...] = (
    ("He sat on the bank and watched the river.", "Il s'est assis sur la rive et a regardé la rivière.",
     "Il s'est assis sur la banque et a regardé la rivière."),
    ("She put the letter in the mail this morning.", "Elle a posté la lettre ce matin.",
     "Elle a mis la lettre dans le courriel ce matin."),
    ("The pitcher was full of cold water.", "La cruche était pleine d'eau froide.",
     "Le lanceur était plein d'eau froide."),
    ("They walked along the coast until the light faded.", "Ils ont marché le long de la côte jusqu'à la tombée du jour.",
     "Ils ont marché le long de la côte jusqu'à ce que la lampe s'éteigne."),
    ("The bat flew out of the cave at dusk.", "La chauve-souris est sortie de la grotte au crépuscule.",
     "La batte est sortie de la grotte au crépuscule."),
    ("He left his coat on the chair.", "Il a laissé son manteau sur la chaise.",
     "Il a quitté son manteau sur la chaise."),
    ("The plant closed after the strike.", "L'usine a fermé après la grève.",
     "La plante s'est fermée après la grève."),
    ("Turn right at the second light.", "Tournez à droite au deuxième feu.",
     "Tournez à droite à la deuxième lumière."),
    ("She has a date with the dentist on Monday.", "Elle a rendez-vous chez le dentiste lundi.",
     "Elle a une datte avec le dentiste lundi."),
    ("The match was cancelled because of the rain.", "Le match a été annulé à cause de la pluie.",
     "L'allumette a été annulée à cause de la pluie."),
)


def example_translations() -> pd.DataFrame:
    return pd.DataFrame([{"id": f"mt-{i}", "source": s, "reference": r, "wrong_reference": w}
                         for i, (s, r, w) in enumerate(EXAMPLE_TRANSLATIONS)], columns=TRANSLATION_COLUMNS)


def load_translation(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Rows of (source, correct reference, wrong reference) from a CSV, TSV or JSONL file with the
    columns ``source``, ``reference`` and ``wrong_reference`` (an ``id`` column is optional)."""
    p = Path(path)
    try:
        if p.suffix == ".jsonl":
            frame = pd.read_json(p, lines=True)
        else:
            frame = pd.read_csv(p, sep="\t" if p.suffix == ".tsv" else ",")
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: cannot read as {p.suffix or 'csv'}: {err}") from err
    missing = {"source", "reference", "wrong_reference"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    empty = frame[["source", "reference", "wrong_reference"]].isna().any(axis=1)
    if empty.any():
        raise ValueError(f"{path}: row {int(empty.idxmax()) + 1} has an empty source or reference")
    if "id" not in frame.columns:
        frame["id"] = [f"mt-{i}" for i in range(len(frame))]
    return frame[TRANSLATION_COLUMNS].astype(str).reset_index(drop=True)


def final_translation(text: str) -> str:
    """The translation a reply commits to: what follows its last ``Translation:`` marker, else the
    reply's last non-empty line."""
    marks = list(re.finditer(r"translation\s*:\s*", str(text), flags=re.IGNORECASE))
    rest = str(text)[marks[-1].end():] if marks else str(text)
    lines = [ln.strip().strip('"').strip() for ln in rest.strip().splitlines() if ln.strip()]
    return (lines[0] if marks else lines[-1]) if lines else ""


def translation_scores(hypotheses: Sequence[str], rows: pd.DataFrame) -> dict[str, Any]:
    """Corpus BLEU and chrF against the correct references, and the contrastive accuracy: the share
    of outputs whose sentence chrF is higher against the correct reference than against the wrong
    one. COMET is reported only when the package and a local model are available."""
    import sacrebleu

    refs = list(rows["reference"])
    wrong = list(rows["wrong_reference"])
    hyps = [str(h) for h in hypotheses]
    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
    closer = [sacrebleu.sentence_chrf(h, [r]).score > sacrebleu.sentence_chrf(h, [w]).score
              for h, r, w in zip(hyps, refs, wrong)]
    return {"bleu": bleu, "chrf": chrf, "contrastive": float(np.mean(closer)) if closer else float("nan"),
            "comet": comet_score(hyps, rows)}


def comet_score(hypotheses: Sequence[str], rows: pd.DataFrame) -> float | None:
    """COMET when ``unbabel-comet`` is installed and ``TOMLAB_COMET_MODEL`` names a local checkpoint;
    ``None`` (not computed) otherwise: nothing is downloaded."""
    model_path = os.environ.get("TOMLAB_COMET_MODEL")
    if not model_path or not Path(model_path).exists():
        return None
    try:
        from comet import load_from_checkpoint  # type: ignore[import-not-found]
    except ImportError:
        return None
    model = load_from_checkpoint(model_path)
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(rows["source"], hypotheses, rows["reference"])]
    return float(model.predict(data, batch_size=8, gpus=0).system_score)
