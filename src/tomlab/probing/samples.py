"""Probe samples (Zhu, Zhang & Wang, 2024): for each story of the probe split, the true- and false-belief
version of a task's condition (init 0), each with both candidate answers, as
``Story: {story}\nBelief: {statement}``. Labels: ``protagonist`` (the statement is what the
protagonist believes), ``oracle`` (the statement is true of the world), ``joint`` = 2 * oracle +
protagonist (so 1 is "protagonist true, oracle false": TpFo)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from tomlab.bigtom.conditions import TASKS, read_condition, split_stories

# task -> the label that introduces the statement in the probe prompt
_STATEMENT_LABEL: dict[str, str] = {"forward_belief": "Belief", "forward_action": "Action", "backward_belief": "Belief"}


# BigToM's answers open with "<Name> believes (that)"; one real row (story 30) says "knows" instead.
_BELIEVER = re.compile(r"^.*?\b(?:believes|knows|thinks)\b\s+(?:that\s+)?", flags=re.IGNORECASE)


def strip_believer(answer: str) -> str:
    """``"Noor believes that the jar is empty."`` -> ``"the jar is empty."``.

    "knows" and "thinks" are accepted in place of "believes"; anything else raises ValueError.
    """
    text = answer.strip()
    stripped, n = _BELIEVER.subn("", text, count=1)
    if n == 0:
        raise ValueError(f"belief answer has no 'believes', 'knows' or 'thinks': {answer!r}")
    return stripped


def make_prompt(story: str, statement: str, label: str = "Belief") -> str:
    return f"Story: {story}\n{label}: {statement}"


def probe_conditions(task: str) -> tuple[str, str]:
    """The init-0 true-belief and false-belief condition folders of a task."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {list(TASKS)}")
    return (f"0_{task}_true_belief", f"0_{task}_false_belief")


def _statement(task: str, answer: str) -> str:
    return strip_believer(answer) if _STATEMENT_LABEL[task] == "Belief" else answer.strip()


def build_probe_samples(
    conditions_dir: str | Path,
    *,
    task: str = "forward_belief",
    eval_fraction: float = 0.5,
    max_stories: int | None = None,
) -> pd.DataFrame:
    """The four probing samples of each story in the probe split of ``task``, in story order.

    "aware" is the answer of a protagonist who saw the change (the true-belief condition's correct
    answer); the oracle label marks it, the protagonist label marks the condition's correct answer.
    """
    root = Path(conditions_dir)
    tb_dir, fb_dir = probe_conditions(task)
    tb = read_condition(root / tb_dir / "stories.csv")
    fb = read_condition(root / fb_dir / "stories.csv")
    if len(tb) != len(fb):
        raise ValueError(f"{root}: true-belief and false-belief files differ in length ({len(tb)} vs {len(fb)})")
    _, probe_ids = split_stories(len(tb), eval_fraction)
    if max_stories is not None:
        probe_ids = probe_ids[:max_stories]
    rows: list[dict[str, Any]] = []
    for story_id in probe_ids:
        t, f = tb.iloc[story_id], fb.iloc[story_id]
        aware, unaware = t["correct"], t["wrong"]  # true belief: the aware answer is correct
        if (f["correct"], f["wrong"]) != (unaware, aware):
            raise ValueError(f"{root}: story {story_id}: false-belief answers are not the true-belief ones swapped")
        for condition, row in (("true_belief", t), ("false_belief", f)):
            for answer, text in (("aware", aware), ("not_aware", unaware)):
                oracle = int(answer == "aware")
                protagonist = int(text == row["correct"])
                statement = _statement(task, text)
                rows.append(
                    {
                        "sample_id": len(rows),
                        "task": task,
                        "story_id": int(story_id),
                        "condition": condition,
                        "answer": answer,
                        "story": row["story"],
                        "statement": statement,
                        "prompt": make_prompt(row["story"], statement, _STATEMENT_LABEL[task]),
                        "oracle": oracle,
                        "protagonist": protagonist,
                        "joint": 2 * oracle + protagonist,
                    }
                )
    if not rows:
        raise ValueError(f"{root}: the probe split is empty (eval_fraction={eval_fraction}, {len(tb)} stories)")
    return pd.DataFrame(rows)
