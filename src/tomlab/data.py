"""BigToM raw stories: strict parsing and the 25 belief-probing condition files.

The raw BigToM file has no header, uses ``;`` between fields and carries 19 fields per row: 17
content fields (see :data:`RAW_FIELDS`) and two bookkeeping fields.  From each story this module
builds the condition datasets used by Zhu, Zhang & Wang (ICML 2024): two initialisations (``0``:
the initial-belief sentence ``p3`` is hidden, ``1``: it is shown), three variables
(``forward_belief``, ``forward_action``, ``backward_belief``) and four conditions
(``true_belief``, ``false_belief``, ``true_control``, ``false_control``), plus
``1_percept_to_belief_true_belief``: 25 datasets in all, each a list of
``story;question;correct;wrong`` rows.  The rules follow BigToM's own condition generator,
including its quirk that ``percept_to_belief`` (story cut after the percept sentence) scores the
*aware* belief answer as correct.

All functions are pure apart from the writers, which write atomically.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tomlab.io import atomic_dir, atomic_path

__all__ = [
    "RAW_FIELDS",
    "CONDITION_NAMES",
    "CONDITION_COLUMNS",
    "BigToMFormatError",
    "read_raw",
    "story_parts",
    "build_conditions",
    "write_conditions",
    "conditions_from_csv",
    "read_condition",
    "write_raw",
]

RAW_FIELDS: tuple[str, ...] = (
    "story",
    "aware_of_event",
    "not_aware_of_event",
    "action_aware",
    "action_not_aware",
    "belief_question",
    "desire_question",
    "action_question",
    "belief_answer_aware",
    "desire_answer_aware",
    "action_answer_aware",
    "belief_answer_not_aware",
    "desire_answer_not_aware",
    "action_answer_not_aware",
    "random_event",
    "aware_of_random_event",
    "not_aware_of_random_event",
)
"""The 17 content fields of a raw BigToM row, in file order."""

#: Bookkeeping values written as fields 18 and 19 of generated raw files.
BOOKKEEPING: tuple[str, str] = ("generated", "0")

#: Number of sentences every BigToM story has.
N_SENTENCES = 5

INITS: tuple[int, ...] = (0, 1)
VARIABLES: tuple[str, ...] = ("forward_belief", "forward_action", "backward_belief")
CONDITIONS: tuple[str, ...] = ("true_belief", "false_belief", "true_control", "false_control")
PERCEPT_TO_BELIEF = "1_percept_to_belief_true_belief"

CONDITION_NAMES: tuple[str, ...] = tuple(
    f"{init}_{variable}_{condition}" for init in INITS for variable in VARIABLES for condition in CONDITIONS
) + (PERCEPT_TO_BELIEF,)
"""The 25 condition keys, ``f"{init}_{variable}_{condition}"``, in a fixed order."""

CONDITION_COLUMNS: tuple[str, ...] = ("story", "question", "correct", "wrong")
"""Columns of a condition file (in file order; files have no header)."""

_CONDITION_FILE = "stories.csv"
_VALID_FIELD_COUNTS = (len(RAW_FIELDS), len(RAW_FIELDS) + len(BOOKKEEPING))


class BigToMFormatError(ValueError):
    """A BigToM-format file is malformed; the message names the file, the 1-based line and the problem."""

    def __init__(self, path: str | os.PathLike[str], line: int, problem: str) -> None:
        self.path = Path(path)
        self.line = int(line)
        self.problem = problem
        super().__init__(f"{self.path}, line {self.line}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[Path, int, str]]:
        return (type(self), (self.path, self.line, self.problem))


# ---------------------------------------------------------------------------------------------
# validation helpers


def _story_problem(story: str) -> str | None:
    """Describe what is wrong with a story's sentence structure, or return None if it is fine."""
    if not story.strip():
        return "the story is empty"
    parts = story.split(".")
    if parts[-1] != "":
        return "the story does not end with a period (text follows the last '.')"
    sentences = parts[:-1]
    if len(sentences) != N_SENTENCES:
        return (
            f"the story splits on '.' into {len(sentences)} sentences, expected {N_SENTENCES} "
            "(periods inside sentences are not allowed)"
        )
    empty = [i + 1 for i, s in enumerate(sentences) if not s.strip()]
    if empty:
        return f"the story has an empty sentence (sentence {empty[0]} has no text before its period)"
    return None


def _row_problem(fields: Sequence[object]) -> str | None:
    """Describe what is wrong with one raw row (17 or 19 fields), or return None if it is fine."""
    if len(fields) not in _VALID_FIELD_COUNTS:
        return (
            f"expected {_VALID_FIELD_COUNTS[1]} ';'-separated fields "
            f"(or {_VALID_FIELD_COUNTS[0]} without bookkeeping), found {len(fields)}"
        )
    not_text = [name for name, value in zip(RAW_FIELDS, fields) if not isinstance(value, str)]
    if not_text:
        return f"fields are not text: {', '.join(not_text)}"
    empty = [name for name, value in zip(RAW_FIELDS, fields) if not str(value).strip()]
    if "story" in empty:
        return "the story is empty"
    if empty:
        return f"required fields are empty: {', '.join(empty)}"
    return _story_problem(str(fields[0]))


# ---------------------------------------------------------------------------------------------
# raw files


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line, fields)`` for each non-blank ``;``-separated record of ``path``.

    Line numbers are 1-based and count physical lines, so a quoted field spanning lines is
    placed where its record starts.  Blank lines are allowed only at the end of the file; CSV
    and encoding errors become :class:`BigToMFormatError` naming the file and line.
    """
    pending_blank: int | None = None  # first line of a run of blank lines not yet followed by data
    line = 1  # 1-based line on which the next record starts
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=";")
        while True:
            start = line
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise BigToMFormatError(path, max(reader.line_num, start), f"CSV error: {exc}") from exc
            except UnicodeDecodeError as exc:
                raise BigToMFormatError(path, start, f"the file is not valid UTF-8 near here: {exc}") from exc
            line = reader.line_num + 1
            if not row:
                if pending_blank is None:
                    pending_blank = start
                continue
            if pending_blank is not None:
                raise BigToMFormatError(
                    path, pending_blank, "blank line inside the file (only trailing blank lines are allowed)"
                )
            yield start, row


def read_raw(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Parse a raw BigToM file strictly.

    Rows must have exactly 19 fields (17 content fields and 2 bookkeeping fields) or exactly 17;
    every content field must be non-empty, and the story must be exactly five sentences, each
    ending in ``.`` (``story.split(".")`` gives five non-empty parts and a final empty string).
    Blank lines are allowed only at the end of the file.

    Returns a frame with the :data:`RAW_FIELDS` columns plus ``story_id`` (0-based row index in
    file order).  Raises :class:`BigToMFormatError` naming the file and 1-based line otherwise.
    """
    path = Path(path)
    records: list[list[str]] = []
    for start, row in _records(path):
        problem = _row_problem(row)
        if problem is not None:
            raise BigToMFormatError(path, start, problem)
        records.append(row[: len(RAW_FIELDS)])
    if not records:
        raise BigToMFormatError(path, 1, "the file contains no stories")
    frame = pd.DataFrame(records, columns=list(RAW_FIELDS), dtype=object)
    frame["story_id"] = np.arange(len(frame), dtype=np.int64)
    return frame


def write_raw(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``df`` (with the :data:`RAW_FIELDS` columns) as a raw BigToM file, atomically.

    Each row gets the 17 content fields followed by the bookkeeping fields ``generated`` and
    ``0``; fields are ``;``-separated (quoted by the csv module where needed), lines end in CRLF,
    and there is no header.  Every row is validated first, so whatever is written reads back with
    :func:`read_raw` to the same content; a ValueError is raised (and nothing is written) otherwise.
    """
    missing = [name for name in RAW_FIELDS if name not in df.columns]
    if missing:
        raise ValueError(f"cannot write a raw BigToM file: missing columns {missing}")
    rows = [list(values) for values in df.loc[:, list(RAW_FIELDS)].itertuples(index=False, name=None)]
    for i, row in enumerate(rows):
        problem = _row_problem(row)
        if problem is not None:
            raise ValueError(f"cannot write {path}: row {i} (line {i + 1}): {problem}")
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter=";")
            for row in rows:
                writer.writerow([*row, *BOOKKEEPING])


# ---------------------------------------------------------------------------------------------
# conditions


def story_parts(story: str) -> list[str]:
    """Split a five-sentence story on ``.`` and return the five sentences ``p0..p4``.

    The sentences keep the leading space that ``str.split`` leaves them with, so
    ``"".join(p + "." for p in story_parts(s)) == s``.  Raises ValueError for any other shape.
    """
    problem = _story_problem(story)
    if problem is not None:
        raise ValueError(f"{problem}: {story!r}")
    return story.split(".")[:N_SENTENCES]


def _sentences(parts: Sequence[str]) -> str:
    return "".join(p + "." for p in parts)


def build_conditions(raw: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Build the 25 condition datasets from a raw frame (as returned by :func:`read_raw`).

    Returns ``{key: frame}`` for every key of :data:`CONDITION_NAMES`; each frame has the columns
    ``story, question, correct, wrong, story_id`` and one row per raw row, in input order.  With
    ``p0..p4`` the story sentences, the trunk is ``p0.p1.p2.p4.`` (init 0) or ``p0.p1.p2.p3.p4.``
    (init 1) and the control trunk replaces the causal event ``p4`` by the random event.
    """
    missing = [name for name in RAW_FIELDS if name not in raw.columns]
    if missing:
        raise ValueError(f"raw frame is missing columns {missing}")
    if "story_id" in raw.columns:
        story_ids = [int(s) for s in raw["story_id"]]
    else:
        story_ids = list(range(len(raw)))
    out: dict[str, list[tuple[str, str, str, str, int]]] = {key: [] for key in CONDITION_NAMES}
    for sid, values in zip(story_ids, raw.loc[:, list(RAW_FIELDS)].itertuples(index=False, name=None)):
        problem = _row_problem(values)
        if problem is not None:
            raise ValueError(f"story_id {sid}: {problem}")
        f = dict(zip(RAW_FIELDS, values))
        p = story_parts(f["story"])
        belief_a, belief_n = f["belief_answer_aware"], f["belief_answer_not_aware"]
        action_a, action_n = f["action_answer_aware"], f["action_answer_not_aware"]
        for init in INITS:
            kept = [p[0], p[1], p[2], p[4]] if init == 0 else list(p)
            trunk = _sentences(kept)
            control = ".".join([*kept[:-1], " " + f["random_event"]])
            forward = {
                "true_belief": (trunk + " " + f["aware_of_event"], True),
                "false_belief": (trunk + " " + f["not_aware_of_event"], False),
                "true_control": (control + " " + f["aware_of_random_event"], False),
                "false_control": (control + " " + f["not_aware_of_random_event"], False),
            }
            backward = {
                "true_belief": (trunk + " " + f["action_aware"], True),
                "false_belief": (trunk + " " + f["action_not_aware"], False),
                "true_control": (control + " " + f["action_not_aware"], False),
                "false_control": (control + " " + f["action_not_aware"], False),
            }
            for variable, question, aware, not_aware, table in (
                ("forward_belief", f["belief_question"], belief_a, belief_n, forward),
                ("forward_action", f["action_question"], action_a, action_n, forward),
                ("backward_belief", f["belief_question"], belief_a, belief_n, backward),
            ):
                for condition in CONDITIONS:
                    story, aware_is_correct = table[condition]
                    correct, wrong = (aware, not_aware) if aware_is_correct else (not_aware, aware)
                    out[f"{init}_{variable}_{condition}"].append((story, question, correct, wrong, sid))
        out[PERCEPT_TO_BELIEF].append((_sentences(p[:3]), f["belief_question"], belief_a, belief_n, sid))
    columns = [*CONDITION_COLUMNS, "story_id"]
    frames: dict[str, pd.DataFrame] = {}
    for key in CONDITION_NAMES:
        frame = pd.DataFrame(out[key], columns=columns)
        frame["story_id"] = frame["story_id"].astype(np.int64)
        frames[key] = frame
    return frames


def _write_condition_file(path: Path, frame: pd.DataFrame) -> None:
    """Write one condition frame as ``story;question;correct;wrong`` rows, no header, CRLF."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=";")
        for row in frame.loc[:, list(CONDITION_COLUMNS)].itertuples(index=False, name=None):
            writer.writerow(row)


def write_conditions(raw: pd.DataFrame, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Build the 25 conditions and write ``out_dir/<key>/stories.csv`` for each, atomically.

    Everything is first written into a temporary directory beside ``out_dir``, which replaces
    ``out_dir`` (if it exists) only after all 25 files are written; on any error nothing is left
    behind and an existing ``out_dir`` is untouched.  Returns the 25 final file paths in
    :data:`CONDITION_NAMES` order.
    """
    out_dir = Path(out_dir)
    frames = build_conditions(raw)
    with atomic_dir(out_dir) as tmp:
        for key in CONDITION_NAMES:
            (tmp / key).mkdir()
            _write_condition_file(tmp / key / _CONDITION_FILE, frames[key])
    return [out_dir / key / _CONDITION_FILE for key in CONDITION_NAMES]


def conditions_from_csv(csv_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Read a raw BigToM file and write its 25 condition files (see :func:`write_conditions`).

    Parsing errors are raised before anything is written.
    """
    return write_conditions(read_raw(csv_path), out_dir)


def read_condition(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read one condition ``stories.csv`` back into a frame with columns story, question, correct, wrong.

    Raises :class:`BigToMFormatError` for a row that does not have exactly four fields or for a
    blank line that is not at the end of the file.
    """
    path = Path(path)
    records: list[list[str]] = []
    for start, row in _records(path):
        if len(row) != len(CONDITION_COLUMNS):
            raise BigToMFormatError(
                path, start, f"expected {len(CONDITION_COLUMNS)} ';'-separated fields, found {len(row)}"
            )
        records.append(row)
    return pd.DataFrame(records, columns=list(CONDITION_COLUMNS), dtype=object)
