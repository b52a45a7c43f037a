"""Debate tasks: counter-intuitive arithmetic (generated families, the original's JSON format) and
ambiguous translation (built-in examples, files in the original's or this project's format) with its
scores. Reading and scoring arithmetic answers is :mod:`tomlab.debate.answers`."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    percent: bool = False  # the question asks for a percentage: "-4" and "-4%" both answer it


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
                    f"(1 + {p / 100:g}) * (1 - {p / 100:g}) = {1 - p * p / 10000:g}, a change of {_fmt(change)}%.",
                    percent=True)


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


def _forms(x: float, percent: bool) -> list[str]:
    """The acceptable written forms of a generated number (with its percent form when asked for one)."""
    return [_fmt(x), f"{_fmt(x)}%"] if percent else [_fmt(x)]


def generate_arithmetic(n: int, seed: int = 0, families: Sequence[str] | None = None) -> pd.DataFrame:
    """``n`` (at least one) fresh instances, cycling through ``families`` (default all) with numbers
    drawn from ``seed``. Columns: id, family, question, answer (the number as text), answers (its
    acceptable forms), intuitive (the tempting wrong answer's forms, a list), explanation."""
    if int(n) < 1:
        raise ValueError(f"debate.arithmetic.n: at least one instance is needed, got {n}")
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
                     "answers": _forms(inst.answer, inst.percent), "intuitive": _forms(inst.intuitive, inst.percent),
                     "explanation": inst.explanation})
    return pd.DataFrame(rows, columns=ARITHMETIC_COLUMNS)


# Field names of an arithmetic entry, this project's first, then the original's (CIAR.json).
ARITHMETIC_FIELDS: dict[str, tuple[str, ...]] = {
    "question": ("question",),
    "answers": ("answers", "answer"),
    "intuitive": ("intuitive", "incorrect answer"),
    "explanation": ("explanation",),
}


def _strings(value: Any) -> list[str]:
    """A field that holds one answer or a list of them, as a list of non-empty strings."""
    items = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def _field(entry: dict[str, Any], field: str, names: tuple[str, ...], where: str) -> Any:
    """The value of ``field`` under the first of its ``names`` that ``entry`` has; an error naming
    ``where``, the field and its accepted names when it has none."""
    for name in names:
        if name in entry:
            return entry[name]
    raise ValueError(f"{where} is missing field {field!r} (named one of {list(names)})")


def given_id(record: dict[str, Any]) -> str | None:
    """An item's own ``id`` as text; None when it has none (missing, null or blank)."""
    value = record.get("id")
    text = "" if value is None else str(value).strip()
    return text or None


def fill_ids(given: Sequence[str | None], prefix: str) -> list[str]:
    """Every item's id: its own where given, else ``<prefix>-<i>`` (``i`` its position from 0), with a
    ``-2``, ``-3``, ... suffix where that is an id given to another item: generated ids never clash."""
    taken = {g for g in given if g is not None}
    out: list[str] = []
    for i, own in enumerate(given):
        if own is None:
            own, k = f"{prefix}-{i}", 1
            while own in taken:
                k += 1
                own = f"{prefix}-{i}-{k}"
            taken.add(own)
        out.append(own)
    return out


def check_unique_ids(ids: Sequence[str | None], where: str, labels: Sequence[str] | None = None) -> None:
    """An error naming ``where`` and every id given to more than one item, with those items (``labels``,
    e.g. ``"line 3"``; default ``"item <n>"`` from 1). Items are matched by id when scored, so an id
    must name one item. ``None`` (no id of its own) is not an id."""
    names = list(labels) if labels is not None else [f"item {n}" for n in range(1, len(ids) + 1)]
    seen: dict[str, list[str]] = {}
    for own, label in zip(ids, names, strict=True):
        if own is not None:
            seen.setdefault(str(own), []).append(label)
    repeated = {i: ls for i, ls in seen.items() if len(ls) > 1}
    if repeated:
        shown = "; ".join(f"{i!r} ({', '.join(ls)})" for i, ls in list(repeated.items())[:5])
        more = f"; and {len(repeated) - 5} more" if len(repeated) > 5 else ""
        raise ValueError(f"{where}: duplicate id(s): {shown}{more}; every item needs its own id")


def load_arithmetic_json(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Counter-intuitive arithmetic from a JSON list of objects, in the original's format
    (``question``, ``answer`` (a list of acceptable forms, or one), ``explanation``, ``incorrect
    answer`` (the intuitive wrong answer's forms, a list or one), ``incorrect explanation``) or with
    this project's names (``answers``, ``intuitive``). ``question`` and the answer are required; errors
    name the file, the entry and the field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}") from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of questions")  # noqa: TRY004 (bad file content: the CLI reports ValueError)
    if not data:
        raise ValueError(f"{path}: no questions (the list is empty)")
    rows = []
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not an object")  # noqa: TRY004 (bad file content: the CLI reports ValueError)
        question = str(_field(entry, "question", ARITHMETIC_FIELDS["question"], where)).strip()
        answers = _strings(_field(entry, "answers", ARITHMETIC_FIELDS["answers"], where))
        if not question or not answers:
            raise ValueError(f"{where} has an empty {'question' if not question else 'answer'}")
        intuitive = next((entry[k] for k in ARITHMETIC_FIELDS["intuitive"] if k in entry), [])
        explanation = next((entry[k] for k in ARITHMETIC_FIELDS["explanation"] if k in entry), "")
        rows.append({"id": given_id(entry), "family": "original", "question": question,
                     "answer": answers[0], "answers": answers, "intuitive": _strings(intuitive),
                     "explanation": str(explanation)})
    check_unique_ids([r["id"] for r in rows], str(path), [f"entry {i}" for i in range(len(rows))])
    for row, own in zip(rows, fill_ids([r["id"] for r in rows], "original")):
        row["id"] = own
    return pd.DataFrame(rows, columns=ARITHMETIC_COLUMNS)


TRANSLATION_COLUMNS = ["id", "source", "reference", "wrong_reference", "source_language", "target_language"]

# Field names of a translation item, this project's first, then the original's (Common MT records:
# ``source``, ``correct reference``, ``incorrect reference``).
TRANSLATION_FIELDS: dict[str, tuple[str, ...]] = {
    "source": ("source",),
    "reference": ("reference", "correct reference", "correct_reference"),
    "wrong_reference": ("wrong_reference", "incorrect reference", "incorrect_reference"),
}

#: The language pair of the built-in examples.
EXAMPLE_PAIR: tuple[str, str] = ("Chinese", "English")

# A few Chinese sentences written for this project, each with an idiom or a word whose literal sense
# is the wrong one, with a correct English translation and a literal, wrong one. Enough to run the
# pipeline end to end; real experiments load their own file (load_translation).
EXAMPLE_TRANSLATIONS: tuple[tuple[str, str, str], ...] = (
    ("我们打车去机场吧。", "Let's take a taxi to the airport.", "Let's hit a car to the airport."),
    ("老师说他做作业太马虎了。", "The teacher said he was too careless with his homework.",
     "The teacher said he was too horse tiger with his homework."),
    ("别给我戴高帽子，我知道自己的水平。", "Don't flatter me, I know my own level.",
     "Don't put a tall hat on me, I know my own water level."),
    ("这家小店的北京烤鸭很地道。", "The Peking duck at this little shop is very authentic.",
     "The Peking duck at this little shop is very underground tunnel."),
    ("我去找他帮忙，结果吃了闭门羹。", "I went to ask him for help, but he turned me away.",
     "I went to ask him for help, but ate closed-door soup."),
    ("她把钥匙落在办公室了。", "She left her keys at the office.", "She fell her keys in the office."),
    ("为了明天的考试，他昨晚开夜车了。", "He stayed up late last night studying for tomorrow's exam.",
     "He drove a night car last night for tomorrow's exam."),
    ("这个问题很棘手，我们得慢慢来。", "This problem is very tricky; we have to take it slowly.",
     "This problem is very thorny hand; we have to come slowly."),
)


def example_translations() -> pd.DataFrame:
    """The built-in examples, Chinese -> English (:data:`EXAMPLE_PAIR`)."""
    source_language, target_language = EXAMPLE_PAIR
    return pd.DataFrame([{"id": f"mt-{i}", "source": s, "reference": r, "wrong_reference": w,
                          "source_language": source_language, "target_language": target_language}
                         for i, (s, r, w) in enumerate(EXAMPLE_TRANSLATIONS)], columns=TRANSLATION_COLUMNS)


def _translation_records(p: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The items of a translation file as dicts, and what each is called in errors ("entry 2", "line 5",
    "row 3": entries and rows counted from 1, lines of a JSONL file as the file numbers them)."""
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{p}: not valid JSON (line {err.lineno}): {err.msg}") from err
        data = [data] if isinstance(data, dict) else data  # one record, as the original stores per item
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise ValueError(f"{p}: expected a JSON array of objects")
        return data, [f"entry {i}" for i in range(1, len(data) + 1)]
    if suffix == ".jsonl":
        records, lines = [], []
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{p}: line {n} is not valid JSON: {err.msg}") from err
            if not isinstance(record, dict):
                raise ValueError(f"{p}: line {n} is not a JSON object")  # noqa: TRY004 (bad file content: the CLI reports ValueError)
            records.append(record)
            lines.append(f"line {n}")
        return records, lines
    if suffix in (".csv", ".tsv"):
        try:
            frame = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as err:
            raise ValueError(f"{p}: cannot read as {suffix[1:].upper()}: {err}") from err
        for field, names in TRANSLATION_FIELDS.items():
            if not set(names) & set(frame.columns):
                raise ValueError(f"{p}: missing field {field!r} (a column named one of {list(names)})")
        return frame.to_dict("records"), [f"row {i}" for i in range(1, len(frame) + 1)]
    raise ValueError(f"{p}: unknown translation file type {p.suffix!r}; expected .json, .jsonl, .csv or .tsv")


def load_translation(path: str | os.PathLike[str], source_language: str, target_language: str) -> pd.DataFrame:
    """Translation items from a JSON array (or one JSON object), JSONL, CSV or TSV file with the
    fields ``source``, ``reference`` and ``wrong_reference``, or the original's ``correct
    reference`` and ``incorrect reference``; ``id`` is optional. Each item's language pair is its own
    ``source_language``/``target_language`` fields where the file has them, else the given pair.
    An item without an ``id`` gets ``mt-<i>`` (its position from 0), never one another item has; an
    ``id`` given twice is refused. Errors name the file, the item and the missing or empty field."""
    p = Path(path)
    records, labels = _translation_records(p)
    given = [given_id(record) for record in records]
    check_unique_ids(given, str(p), labels)
    rows = []
    for record, label, own in zip(records, labels, fill_ids(given, "mt"), strict=True):
        where = f"{p}: {label}"
        row: dict[str, Any] = {"id": own}
        for field, names in TRANSLATION_FIELDS.items():
            present = [n for n in names if n in record]
            if len(present) > 1:
                raise ValueError(f"{where} has field {field!r} twice, as {present}")
            value = _field(record, field, names, where)
            if value is None or not str(value).strip():
                raise ValueError(f"{where} has an empty {field!r}")
            row[field] = str(value).strip()
        row["source_language"] = str(record.get("source_language") or source_language)
        row["target_language"] = str(record.get("target_language") or target_language)
        rows.append(row)
    if not rows:
        raise ValueError(f"{p}: no translation items")
    return pd.DataFrame(rows, columns=TRANSLATION_COLUMNS)


def final_translation(text: str) -> str:
    """The translation a reply commits to: what follows its last ``Translation:`` marker, else the
    reply's last non-empty line."""
    marks = list(re.finditer(r"translation\s*:\s*", str(text), flags=re.IGNORECASE))
    rest = str(text)[marks[-1].end():] if marks else str(text)
    lines = [ln.strip().strip('"').strip() for ln in rest.strip().splitlines() if ln.strip()]
    return (lines[0] if marks else lines[-1]) if lines else ""


def bleu_tokenizer(target_language: str) -> str:
    """sacrebleu's tokenizer for a target language: ``zh`` for Chinese, ``13a`` otherwise."""
    return "zh" if str(target_language).strip().lower() in ("chinese", "zh", "mandarin") else "13a"


def translation_scores(hypotheses: Sequence[str], rows: pd.DataFrame) -> dict[str, Any]:
    """Corpus BLEU (tokenised for the items' target language) and chrF against the correct
    references, and the contrastive accuracy: the share of outputs whose sentence chrF is higher
    against the correct reference than against the wrong one. COMET is reported only when the
    package and a local model are available."""
    import sacrebleu

    refs = list(rows["reference"])
    wrong = list(rows["wrong_reference"])
    hyps = [str(h) for h in hypotheses]
    targets = set(rows["target_language"]) if "target_language" in rows else set()
    tokenize = bleu_tokenizer(next(iter(targets))) if len(targets) == 1 else "13a"
    bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score
    chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
    closer = contrastive_hits(hyps, refs, wrong)
    return {"bleu": bleu, "chrf": chrf, "contrastive": float(np.mean(closer)) if len(closer) else float("nan"),
            "comet": comet_score(hyps, rows)}


def contrastive_hits(hypotheses: Sequence[str], references: Sequence[str], wrong: Sequence[str]) -> np.ndarray:
    """Per output: whether its sentence chrF is higher against the correct reference than the wrong one."""
    import sacrebleu

    return np.array([sacrebleu.sentence_chrf(str(h), [str(r)]).score > sacrebleu.sentence_chrf(str(h), [str(w)]).score
                     for h, r, w in zip(hypotheses, references, wrong, strict=True)], dtype=bool)


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


#: The chain-of-thought instruction of the generation benchmark's prompts (``tomlab bench generation``).
COT_INSTRUCTION = "Let's think step by step."


def cot_prompts(questions: Sequence[str], n: int, instruction: str = COT_INSTRUCTION) -> list[str]:
    """``n`` chain-of-thought prompts for the generation benchmark: each question and the instruction, the
    questions repeated (numbered) when there are fewer than ``n``."""
    if not questions:
        raise ValueError("no questions to make prompts of")
    return [f"{questions[i % len(questions)]}\n\n{instruction}"
            + (f" (copy {i // len(questions) + 1})" if i >= len(questions) else "") for i in range(n)]
