"""The raw BigToM file: its fields, a strict reader that names the file and line of a problem, and a writer."""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tomlab.io import atomic_path

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
    nul = [name for name, value in zip(RAW_FIELDS, fields) if "\x00" in value]
    if nul:
        return f"fields contain a NUL byte: {', '.join(nul)}"
    empty = [name for name, value in zip(RAW_FIELDS, fields) if not str(value).strip()]
    if "story" in empty:
        return "the story is empty"
    if empty:
        return f"required fields are empty: {', '.join(empty)}"
    return _story_problem(str(fields[0]))


def _first_bad_utf8_line(path: Path) -> int | None:
    """The 1-based line of the first byte sequence that is not UTF-8 (the decoder reads in chunks, so
    its own position says little about the line)."""
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return None


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
                bad = _first_bad_utf8_line(path)
                raise BigToMFormatError(path, bad or start, f"the file is not valid UTF-8 on this line: {exc.reason}") from exc
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
    first_line: dict[str, int] = {}
    duplicates: list[str] = []
    for start, row in _records(path):
        problem = _row_problem(row)
        if problem is not None:
            raise BigToMFormatError(path, start, problem)
        records.append(row[: len(RAW_FIELDS)])
        if row[0] in first_line:
            duplicates.append(f"line {start} repeats the story of line {first_line[row[0]]}")
        first_line.setdefault(row[0], start)
    if duplicates:
        shown = "; ".join(duplicates[:5]) + (f"; and {len(duplicates) - 5} more" if len(duplicates) > 5 else "")
        warnings.warn(f"{path}: {len(duplicates)} duplicated stories: {shown}", stacklevel=2)
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


def story_parts(story: str) -> list[str]:
    """Split a five-sentence story on ``.`` and return the five sentences ``p0..p4``.

    The sentences keep the leading space that ``str.split`` leaves them with, so
    ``"".join(p + "." for p in story_parts(s)) == s``.  Raises ValueError for any other shape.
    """
    problem = _story_problem(story)
    if problem is not None:
        raise ValueError(f"{problem}: {story!r}")
    return story.split(".")[:N_SENTENCES]
