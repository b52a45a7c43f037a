"""BigToM's tasks and conditions (defined here, once), the condition files built from a raw file, and
the story split shared by probing and evaluation."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tomlab.bigtom.raw import (
    RAW_FIELDS,
    BigToMFormatError,
    _records,
    _row_problem,
    read_raw,
    story_parts,
)
from tomlab.io import atomic_dir
from tomlab.schema import vocabulary

INITS: tuple[int, ...] = (0, 1)


#: BigToM's three tasks (the "causal variables" asked about), defined here once for the whole library.
TASKS: tuple[str, ...] = vocabulary("task")
#: The task the paper probes; directions learned on it are also tried on the other tasks.
MAIN_TASK = "forward_belief"
#: Display titles of the tasks.
TASK_TITLES: dict[str, str] = {"forward_belief": "Forward belief", "forward_action": "Forward action",
                               "backward_belief": "Backward belief"}


CONDITIONS: tuple[str, ...] = ("true_belief", "false_belief", "true_control", "false_control")


PERCEPT_TO_BELIEF = "1_percept_to_belief_true_belief"


CONDITION_NAMES: tuple[str, ...] = tuple(
    f"{init}_{variable}_{condition}" for init in INITS for variable in TASKS for condition in CONDITIONS
) + (PERCEPT_TO_BELIEF,)
"""The 25 condition keys, ``f"{init}_{variable}_{condition}"``, in a fixed order."""


CONDITION_COLUMNS: tuple[str, ...] = ("story", "question", "correct", "wrong")
"""Columns of a condition file (in file order; files have no header)."""


def steering_pairs(tasks: Sequence[str]) -> list[tuple[str, str]]:
    """The (direction source, evaluated task) pairs steering runs: each task on itself (the paper's Table 1),
    then the main task's directions on the other tasks (Table 2)."""
    return [(t, t) for t in tasks] + [(MAIN_TASK, t) for t in tasks if t != MAIN_TASK]


_CONDITION_FILE = "stories.csv"


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


def split_stories(n_stories: int, eval_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Story indices kept for evaluation (the first part) and used for probing (the rest).

    With 200 BigToM stories and the default 0.5 this is the original's 0-99 / 100-199.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    n_eval = int(n_stories * eval_fraction)
    return np.arange(n_eval), np.arange(n_eval, n_stories)
