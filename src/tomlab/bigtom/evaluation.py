"""BigToM multiple-choice evaluation: items on the evaluation split, the prompt, the answer parser, and
scoring by generation and by log-likelihood."""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomlab.backends.likelihood import option_logprobs
from tomlab.backends.models import LoadedModel
from tomlab.bigtom.conditions import CONDITIONS, TASKS, read_condition, split_stories
from tomlab.bigtom.protocol import (
    INVALID,
    ORIGINAL_CONDITIONS,
    PARSERS,
    check_parser,
    check_protocol,
    correct_in_b,
    make_prompt,
    parse_original,
    protocol_parser,
)
from tomlab.schema import vocabulary
from tomlab.stats import bootstrap_ci

EVAL_INIT = 0


MODES: tuple[str, ...] = vocabulary("mode")


ITEM_COLUMNS: tuple[str, ...] = (
    "item_id", "story_id", "task", "condition", "story", "question", "correct", "wrong",
    "option_a", "option_b", "answer_letter", "prompt", "protocol", "parser", "in_original",
)


def free_text_prompt(story: str, question: str) -> str:
    """An open prompt with no options to choose from: the free-text view of steering."""
    return f"Story: {story}\nQuestion: {question}\nAnswer:"


def build_items(
    conditions_dir: str | os.PathLike[str],
    *,
    eval_fraction: float = 0.5,
    tasks: Sequence[str] = TASKS,
    conditions: Sequence[str] = CONDITIONS,
    init: int = EVAL_INIT,
    seed: int = 0,
    max_stories: int | None = None,
    protocol: str = "original",
    parser: str | None = None,
    story_ids: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The two-option evaluation items of the stories in the evaluation split.

    Reads ``conditions_dir/{init}_{task}_{condition}/stories.csv`` for every task and condition;
    all files must have the same number of stories ``n``; the evaluation stories are the first
    ``int(n * eval_fraction)`` (``max_stories`` keeps only the first of those).  One row per
    (task, condition, story), in that nesting order, with the columns of :data:`ITEM_COLUMNS`:
    ``item_id`` is ``"{story_id}/{task}/{condition}"``; ``answer_letter`` names the slot (``"a"``
    or ``"b"``) holding the correct answer; ``prompt`` is the ``protocol``'s prompt
    (:func:`tomlab.bigtom.protocol.make_prompt`) and the option order is the protocol's
    (:func:`tomlab.bigtom.protocol.correct_in_b`); ``in_original`` is false for the conditions
    the released evaluation does not run (the controls, tomlab's addition); ``parser`` names the
    headline parser of generated answers (None: the protocol's, see
    :func:`tomlab.bigtom.protocol.protocol_parser`).  ``story_ids``, when given, replaces the
    evaluation split (and ``max_stories``) with exactly these stories, in this order (the stress
    tests evaluate perturbed copies of the evaluation stories).
    """
    root = Path(conditions_dir)
    parser = check_parser(parser or protocol_parser(protocol))
    tasks, conditions = tuple(tasks), tuple(conditions)
    if not tasks or not conditions:
        raise ValueError("build_items needs at least one task and one condition")
    frames: dict[tuple[str, str], pd.DataFrame] = {}
    for task in tasks:
        for condition in conditions:
            frames[task, condition] = read_condition(root / f"{init}_{task}_{condition}" / "stories.csv")
    lengths = {key: len(frame) for key, frame in frames.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{root}: condition files differ in length: {lengths}")
    n_stories = next(iter(lengths.values()))
    eval_ids, _ = split_stories(n_stories, eval_fraction)
    if max_stories is not None:
        eval_ids = eval_ids[: max(int(max_stories), 0)]
    if story_ids is not None:
        eval_ids = np.asarray(story_ids, dtype=np.int64)
        if len(eval_ids) and (eval_ids.min() < 0 or eval_ids.max() >= n_stories):
            raise ValueError(f"{root}: story_ids outside 0..{n_stories - 1}")
    elif len(eval_ids) == 0:
        raise ValueError(f"{root}: no evaluation stories: split.eval_fraction={eval_fraction} keeps none of "
                         f"{n_stories} stories for evaluation (raise it, or give more stories)")
    rows: list[dict[str, Any]] = []
    for task in tasks:
        for condition in conditions:
            frame = frames[task, condition]
            slots = correct_in_b(protocol, seed, eval_ids, task, condition)
            for story_id, in_b in zip(eval_ids, slots):
                sid = int(story_id)
                rec = frame.iloc[sid]
                correct, wrong = str(rec["correct"]), str(rec["wrong"])
                option_a, option_b, letter = (wrong, correct, "b") if in_b else (correct, wrong, "a")
                rows.append({
                    "item_id": f"{sid}/{task}/{condition}",
                    "story_id": sid,
                    "task": task,
                    "condition": condition,
                    "story": str(rec["story"]),
                    "question": str(rec["question"]),
                    "correct": correct,
                    "wrong": wrong,
                    "option_a": option_a,
                    "option_b": option_b,
                    "answer_letter": letter,
                    "prompt": make_prompt(protocol, str(rec["story"]), str(rec["question"]), option_a, option_b),
                    "protocol": protocol,
                    "parser": parser,
                    "in_original": condition in ORIGINAL_CONDITIONS,
                })
    items = pd.DataFrame(rows, columns=list(ITEM_COLUMNS))
    items["story_id"] = items["story_id"].astype(np.int64)
    items["in_original"] = items["in_original"].astype(bool)
    return items


def _one_value(items: pd.DataFrame, column: str) -> str | None:
    if column not in items.columns or items.empty:
        return None
    found = set(items[column].astype(str))
    if len(found) != 1:
        raise ValueError(f"the items mix values of {column!r}: {sorted(found)}")
    return found.pop()


def items_protocol(items: pd.DataFrame) -> str:
    """The protocol an item table was built with (tables without the column: ``tomlab``)."""
    return check_protocol(_one_value(items, "protocol") or "tomlab")


def items_parser(items: pd.DataFrame) -> str:
    """The headline parser an item table names (without the column: its protocol's)."""
    return _one_value(items, "parser") or protocol_parser(items_protocol(items))


# The model went on to write a new item: nothing after this is part of its answer.  The cut is at the
# first newline of the whitespace before the label; a search starts only where a whitespace run starts
# (group ``nl`` is that newline), so a long run of blank lines is read once, not once per line.
_RUN_ON = re.compile(r"(?<!\s)[^\S\n]*+(?P<nl>\n)\s*+(?:story|question|choose one of the following)\s*:", re.IGNORECASE)


# Leading decoration: whitespace, markdown emphasis, quotes, and "Answer:" / "Answer -" labels.
_LEAD_LABEL = re.compile(r"(?:[\s*_\"'`>#]+|(?:final\s+)?answer\b\s*+(?:is\b\s*+)?[:\-–—]?)", re.IGNORECASE)


# A letter at the very start: "a)", "(a)", "[a]", "a.", "a:", "a,", "a -", "a" alone or on its own line.
_LEAD_LETTER = re.compile(
    r"^[\(\[]?([ab])(?:\s*[\)\]]|[\.:,;!]|\s*$|\s*\n|\s+[-–—])", re.IGNORECASE
)


# An explicit letter marker anywhere: "a)" or "(a)" / "[a]" not glued to a preceding word.
_MARK_PAREN = re.compile(r"(?<![\w])[\(\[]?([ab])[\)\]]", re.IGNORECASE)


# "option a" / "choice (b)" (the word before the letter rules out the article "a").
_MARK_OPTION = re.compile(r"\b(?:option|choice|letter)\s*+(?:[:\-]\s*+)?[\(\[]?([ab])(?![\w])", re.IGNORECASE)


# "answer is b" / "answer: a." with the letter followed by punctuation or the end (not "is a cat").
_MARK_ANSWER = re.compile(
    r"\banswer\s*+(?:(?:is|would\s+be|:)\s*+)?(?:[:\-]\s*+)?[\(\[]?([ab])(?=\s*+(?:[\)\]\.:,;!]|$))", re.IGNORECASE
)


def _normalise(text: str) -> str:
    """Lower case, every run of non-alphanumerics replaced by one space, padded by spaces."""
    words = re.sub(r"[^0-9a-z]+", " ", text.lower()).split()
    return " " + " ".join(words) + " " if words else " "


def _option_keys(option_a: str, option_b: str) -> tuple[list[str], list[str]]:
    """Normalised texts that identify each option: the full text, the text after the words both
    options start with, and the part where they differ (shared leading and trailing words removed)."""
    a, b = _normalise(option_a).split(), _normalise(option_b).split()
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    keys: list[list[str]] = []
    for words in (a, b):
        found = [" ".join(words), " ".join(words[start:]), " ".join(words[start: len(words) - end])]
        keys.append([k for i, k in enumerate(found) if k and k not in found[:i]])
    return keys[0], keys[1]


def _spans(haystack: str, needles: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of every whole-word occurrence of each needle (normalised, space padded)."""
    out: list[tuple[int, int]] = []
    for needle in needles:
        if not needle.strip():
            continue
        pattern = " " + needle.strip() + " "
        pos = haystack.find(pattern)
        while pos != -1:
            out.append((pos, pos + len(pattern)))
            pos = haystack.find(pattern, pos + 1)
    return out


def _free(mine: list[tuple[int, int]], theirs: list[tuple[int, int]]) -> bool:
    """Whether a span of ``mine`` lies inside no longer span of ``theirs`` ("empty" inside "not empty"
    does not count). Their spans are grouped by length (one group per needle length) and searched by
    start, so the time grows with the number of spans, not with its square."""
    starts: dict[int, list[int]] = {}
    for s, e in theirs:
        starts.setdefault(e - s, []).append(s)
    for found in starts.values():
        found.sort()

    def covered(m0: int, m1: int) -> bool:
        # a span [s, s + length) of theirs with length > m1 - m0, s <= m0 and s + length >= m1
        for length, found in starts.items():
            if length > m1 - m0:
                i = bisect.bisect_right(found, m0)
                if i and found[i - 1] >= m1 - length:
                    return True
        return False

    return any(not covered(m0, m1) for m0, m1 in mine)


def _match_by_text(text: str, option_a: str, option_b: str) -> str:
    norm = _normalise(text)
    if _normalise(option_a) == _normalise(option_b):
        return INVALID
    needles_a, needles_b = _option_keys(option_a, option_b)
    spans_a, spans_b = _spans(norm, needles_a), _spans(norm, needles_b)

    hit_a, hit_b = _free(spans_a, spans_b), _free(spans_b, spans_a)
    if hit_a and not hit_b:
        return "a"
    if hit_b and not hit_a:
        return "b"
    return INVALID


def parse_answer(text: str, option_a: str, option_b: str) -> str:
    """Which option a completion chose: ``"a"``, ``"b"`` or ``"invalid"``.

    Rules, in order:

    1. The completion is cut where the model starts writing a new item (a line opening with
       ``Story:``, ``Question:`` or ``Choose one of the following:``).  Leading whitespace, markdown
       emphasis, quotes and an ``Answer:`` label (also ``Answer is``, ``Final answer:``) are removed.
    2. **Leading letter.**  If what is left starts with an explicit letter (case-insensitive):
       ``a)``, ``(a)``, ``[a]``, ``a.``, ``a:``, ``a,``, ``a -``, or the letter alone (the whole
       text, or alone on its first line), that letter is the answer, *whatever option text follows*
       (``"a) <text of option b>"`` is ``"a"``), unless the rest of the completion also carries an
       explicit marker of the *other* letter (``"a) the cat ... b) the dog"``): then the model
       listed both options and the answer is ``"invalid"``.  A capital ``A`` followed by a word
       (``"A coworker swaps ..."``) is the article, not a choice.
    3. **Letter markers anywhere.**  Otherwise explicit markers are collected from the whole text:
       ``a)`` / ``(a)`` / ``[a]`` (not glued to a preceding word), ``option a`` / ``choice a``,
       and ``answer is a`` / ``answer: a`` when the letter is followed by punctuation or the end.
       One letter marked (possibly several times) -> that letter; both letters -> ``"invalid"``.
    4. **Option text.**  Otherwise the options' texts are searched for in the completion, all
       normalised (lower case, punctuation removed, whitespace collapsed, whole words only).  An
       option is found if its full text, its text after the leading words both options share
       (such as ``"<Name> believes that the jar is"``), or the part where the two options differ
       (shared leading and trailing words removed) occurs; a match lying inside a longer match of
       the other option (``empty`` inside ``not empty``) does not count.  Exactly one option found
       -> its letter; both or neither (``"Both are possible"``, ``""``) -> ``"invalid"``.  Negation is not understood:
       ``"she does not believe it is empty"`` counts as choosing the ``empty`` option.
    """
    if not isinstance(text, str):
        return INVALID
    run_on = _RUN_ON.search(text)
    if run_on is not None:
        text = text[: run_on.start("nl")]
    start = 0  # leading labels are skipped by position: no copy of the text per label
    while (label := _LEAD_LABEL.match(text, start)) is not None:
        start = label.end()
    body = text[start:]
    if not body.strip():
        return INVALID

    lead = _LEAD_LETTER.match(body)
    if lead is not None:
        letter = lead.group(1).lower()
        rest = body[lead.end():]
        others = {m.group(1).lower() for pat in (_MARK_PAREN, _MARK_OPTION) for m in pat.finditer(rest)}
        return INVALID if others - {letter} else letter

    marked = {m.group(1).lower() for pat in (_MARK_PAREN, _MARK_OPTION, _MARK_ANSWER) for m in pat.finditer(body)}
    if len(marked) == 1:
        return marked.pop()
    if len(marked) > 1:
        return INVALID
    return _match_by_text(body, option_a, option_b)


def score_generation(
    items: pd.DataFrame, generate: Callable[[list[str]], list[str]], *, parser: str = "original"
) -> pd.DataFrame:
    """Score free generation: ``generate`` is called once with every prompt, in row order.

    Every completion is read by both parsers: ``parsed_original`` (the released code's,
    :func:`tomlab.bigtom.protocol.parse_original`, on prompt + completion) and ``parsed_lenient``
    (:func:`parse_answer`), each ``"a"``, ``"b"`` or ``"invalid"``.  ``parser`` picks the headline:
    ``parsed``, ``valid`` (parsed is a letter) and ``correct_pred`` (parsed == answer_letter; an
    invalid answer counts as wrong) come from it.  Returns a copy of ``items`` with those columns
    and ``completion``.
    """
    check_parser(parser)
    prompts = [str(p) for p in items["prompt"]]
    completions = list(generate(prompts))
    if len(completions) != len(prompts):
        raise ValueError(f"generate returned {len(completions)} completions for {len(prompts)} prompts")
    out = items.copy()
    out["completion"] = ["" if c is None else str(c) for c in completions]
    out["parsed_original"] = [
        parse_original(p, c, a, b, k)
        for p, c, a, b, k in zip(prompts, out["completion"], out["option_a"], out["option_b"], out["answer_letter"])
    ]
    out["parsed_lenient"] = [
        parse_answer(c, a, b) for c, a, b in zip(out["completion"], out["option_a"], out["option_b"])
    ]
    out["parsed"] = out[f"parsed_{parser}"]
    out["valid"] = out["parsed"] != INVALID
    out["correct_pred"] = out["parsed"] == out["answer_letter"]
    return out


def _groups(scored: pd.DataFrame, by: list[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    """``(key tuple, rows)`` per group of ``by`` in order of first appearance; one group ``()`` when
    ``by`` is empty."""
    if not by:
        return [((), scored)]
    return [(key if isinstance(key, tuple) else (key,), frame)
            for key, frame in scored.groupby(by, sort=False, dropna=False)]


def parser_table(scored: pd.DataFrame, *, by: Sequence[str] = ("task", "condition")) -> pd.DataFrame:
    """Generation accuracy and invalid rate under each parser, side by side, per group of ``by``.

    Columns ``*by, n`` and, for each parser of :data:`PARSERS`, ``accuracy_<parser>`` and
    ``invalid_<parser>``: how much of a number is the parser.
    """
    missing = [f"parsed_{p}" for p in PARSERS if f"parsed_{p}" not in scored.columns]
    if missing:
        raise KeyError(f"the scored frame has no {', '.join(missing)} column (score generation first)")
    by = list(by)
    rows: list[dict[str, Any]] = []
    for key, frame in _groups(scored, by):
        row: dict[str, Any] = {**dict(zip(by, key)), "n": len(frame)}
        for p in PARSERS:
            parsed = frame[f"parsed_{p}"]
            row[f"accuracy_{p}"] = float((parsed == frame["answer_letter"]).mean())
            row[f"invalid_{p}"] = float((parsed == INVALID).mean())
        rows.append(row)
    columns = [*by, "n", *[f"{m}_{p}" for p in PARSERS for m in ("accuracy", "invalid")]]
    return pd.DataFrame(rows, columns=columns)


def evaluate_items(
    lm: LoadedModel | None,
    items: pd.DataFrame,
    generator: Any,
    config: Any,
    *,
    modes: Sequence[str] = ("generation", "log-likelihood"),
    batch_size: int = 8,
    intervention: Any = None,
    progress: bool = True,
    parser: str | None = None,
) -> pd.DataFrame:
    """Answer every item in the chosen ``modes`` and score it.

    ``parser`` is the headline parser of generation (see :func:`score_generation`); None takes the
    one the items name (:func:`items_parser`).

    ``lm`` may be ``None`` (a served model) when ``modes`` is generation only.
    ``generator`` is a :class:`tomlab.lm.LanguageModel` (usually a cached
    :class:`tomlab.lm.TransformersLM` over ``lm``) asked with ``config`` (a
    :class:`tomlab.lm.GenerationConfig`); its ``chat_template`` setting is used for log-likelihood
    scoring too.  ``intervention`` only reaches log-likelihood scoring: for generation it acts
    through its hooks while active.
    """
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {list(MODES)}; got {list(modes)}")
    scored = items.copy()
    if "generation" in modes:
        scored = score_generation(scored, lambda prompts: [c.text for c in generator.generate(prompts, config)],
                                  parser=parser or items_parser(items))
    if "log-likelihood" in modes:
        if lm is None:
            raise ValueError("log-likelihood scoring needs the model's weights (a served model gives generation only)")
        scored = option_logprobs(lm, scored, batch_size=batch_size, chat_template=bool(config.chat_template),
                                 progress=progress, intervention=intervention)
    return scored


def mode_tables(
    scored: pd.DataFrame, *, by: Sequence[str] = ("task", "condition"), n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """:func:`accuracy_table` for every scoring mode present in ``scored``, stacked with a ``mode`` column."""
    frames = []
    if "correct_pred" in scored.columns:
        frames.append(accuracy_table(scored, "correct_pred", n_boot=n_boot, seed=seed, by=by).assign(mode="generation"))
    if "ll_correct" in scored.columns:
        frames.append(accuracy_table(scored.drop(columns=["valid"], errors="ignore"), "ll_correct", n_boot=n_boot,
                                     seed=seed, by=by).assign(mode="log-likelihood"))
    if not frames:
        raise ValueError("the scored frame has neither generation nor log-likelihood results")
    return pd.concat(frames, ignore_index=True)


def accuracy_table(
    scored: pd.DataFrame,
    correct_col: str = "correct_pred",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    by: Sequence[str] = ("task", "condition"),
) -> pd.DataFrame:
    """Accuracy per group with a 95% percentile-bootstrap interval (see :func:`bootstrap_ci`).

    One row per group of ``by`` (in order of first appearance; ``by=()`` gives one overall row)
    with the columns ``*by, n, accuracy, ci_low, ci_high, invalid_rate``; ``invalid_rate`` is the
    share of rows whose ``valid`` column is false, or NaN when ``scored`` has no ``valid`` column.
    Each group's interval uses ``seed``, so a group's numbers do not depend on the other groups.
    """
    by = list(by)
    if correct_col not in scored.columns:
        raise KeyError(f"column {correct_col!r} not in the scored frame")
    has_valid = "valid" in scored.columns
    rows: list[dict[str, Any]] = []
    for key, frame in _groups(scored, by):
        values = frame[correct_col].astype(float).to_numpy()
        low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
        invalid = float(1.0 - frame["valid"].astype(float).mean()) if has_valid and len(frame) else float("nan")
        rows.append({
            **dict(zip(by, key)),
            "n": len(frame),
            "accuracy": float(values.mean()) if len(values) else float("nan"),
            "ci_low": low,
            "ci_high": high,
            "invalid_rate": invalid,
        })
    return pd.DataFrame(rows, columns=[*by, "n", "accuracy", "ci_low", "ci_high", "invalid_rate"])
