"""Probe samples (Zhu, Zhang & Wang, 2024): for each story of the probe split, the true- and false-belief
version of a task's condition (init 0), each with both candidate answers turned into a statement, as
``Story: {story}\nBelief: {statement}`` (``Action:`` for forward action).

Order, as the original's ``load_data``: story by story; within a story the true-belief condition,
then the false-belief one; within a condition the condition's correct answer, then its wrong one.
Labels: ``protagonist`` (the statement is the condition's correct answer: what the protagonist
believes or does), ``oracle`` (the statement is the answer of a protagonist who saw the change: true
of the world), ``joint`` = 2 * oracle + protagonist (so 1 is "protagonist true, oracle false": TpFo).

Statements (``statements=``): ``original`` rewrites an answer as the original does (a belief loses
its first two words and a following "that"; an action becomes an imperative; then
``str.capitalize``); ``verbatim`` keeps the answer's own words (a belief only loses its
"<Name> believes (that)" opening)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from tomlab.bigtom.conditions import TASKS, read_condition, split_stories
from tomlab.schema import vocabulary

# task -> the label that introduces the statement in the probe prompt
_STATEMENT_LABEL: dict[str, str] = {"forward_belief": "Belief", "forward_action": "Action", "backward_belief": "Belief"}


#: Allowed values of ``build_probe_samples(statements=...)`` (the schema's ``probing.statements``).
STATEMENT_STYLES: tuple[str, ...] = vocabulary("statement_style")


# BigToM's answers open with "<Name> believes (that)"; one real row (story 30) says "knows" instead.
_BELIEVER = re.compile(r"^.*?\b(?:believes|knows|thinks)\b\s+(?:that\s+)?", flags=re.IGNORECASE)


def strip_believer(answer: str) -> str:
    """``"Noor believes that the jar is empty."`` -> ``"the jar is empty."`` (the ``verbatim`` belief).

    "knows" and "thinks" are accepted in place of "believes"; anything else raises ValueError.
    """
    text = answer.strip()
    stripped, n = _BELIEVER.subn("", text, count=1)
    if n == 0:
        raise ValueError(f"belief answer has no 'believes', 'knows' or 'thinks': {answer!r}")
    return stripped


def belief_statement(answer: str) -> str:
    """The original's belief statement: drop the first two whitespace-separated words ("<Name>
    believes") and a third one if it is exactly ``that``; join the rest with single spaces and apply
    ``str.capitalize`` (upper-cases the first character and lower-cases every other one).

    ``"Noor believes that the jar is Noor's."`` -> ``"The jar is noor's."``;
    ``"Noor believes the pitcher has  oat milk."`` -> ``"The pitcher has oat milk."``.  An answer of
    fewer than three words has no third word to inspect (the original fails on it): ValueError.
    """
    words = answer.split()
    if len(words) < 3:
        raise ValueError(f"belief answer has fewer than three words (needs '<Name> believes ...'): {answer!r}")
    start = 3 if words[2] == "that" else 2
    return " ".join(words[start:]).capitalize()


def action_statement(answer: str) -> str:
    """The original's action statement, an imperative, then ``str.capitalize``.

    * fewer than two words: the answer itself, capitalized (whitespace untouched);
    * second word ``will`` (any case): drop the first two words (``"Aarav will proceed with X."`` ->
      ``"Proceed with x."``);
    * otherwise drop the first word and strip a final ``s`` (but not ``ss``) from the second
      (``"Noor grabs the Cup."`` -> ``"Grab the cup."``, ``"Noor kisses Ana."`` -> ``"Kisses ana."``).

    Words are whitespace-separated and re-joined with single spaces.
    """
    words = answer.split()
    if len(words) < 2:
        return answer.capitalize()
    if words[1].lower() == "will":
        return " ".join(words[2:]).capitalize()
    verb = words[1]
    if verb.endswith("s") and not verb.endswith("ss"):
        verb = verb[:-1]
    return " ".join([verb, *words[2:]]).capitalize()


def probe_statement(task: str, answer: str, statements: str = "original") -> str:
    """The statement of ``answer`` in a probe prompt of ``task``, in the given style (:data:`STATEMENT_STYLES`)."""
    if task not in _STATEMENT_LABEL:
        raise ValueError(f"unknown task {task!r}; known: {list(_STATEMENT_LABEL)}")
    is_belief = _STATEMENT_LABEL[task] == "Belief"
    if statements == "original":
        return belief_statement(answer) if is_belief else action_statement(answer)
    if statements == "verbatim":
        return strip_believer(answer) if is_belief else answer.strip()
    raise ValueError(f"unknown statement style {statements!r}; allowed: {', '.join(STATEMENT_STYLES)}")


def make_prompt(story: str, statement: str, label: str = "Belief") -> str:
    return f"Story: {story}\n{label}: {statement}"


def probe_conditions(task: str) -> tuple[str, str]:
    """The init-0 true-belief and false-belief condition folders of a task."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {list(TASKS)}")
    return (f"0_{task}_true_belief", f"0_{task}_false_belief")


def build_probe_samples(
    conditions_dir: str | Path,
    *,
    task: str = "forward_belief",
    eval_fraction: float = 0.5,
    max_stories: int | None = None,
    statements: str = "original",
) -> pd.DataFrame:
    """The four probing samples of each story in the probe split of ``task``, in the original's order.

    Per story: true belief (correct answer, wrong answer), then false belief (correct, wrong), so
    ``sample_id`` is the row index of the original's ``load_data`` arrays.  In the true-belief
    condition the correct answer is the "aware" one (a protagonist who saw the change); in the
    false-belief condition it is the "not_aware" one (column ``answer``).  Columns: sample_id, task,
    story_id, condition, answer, story, statement, prompt, oracle, protagonist, joint.
    """
    if statements not in STATEMENT_STYLES:
        raise ValueError(f"unknown statement style {statements!r}; allowed: {', '.join(STATEMENT_STYLES)}")
    root = Path(conditions_dir)
    tb_dir, fb_dir = probe_conditions(task)
    tb = read_condition(root / tb_dir / "stories.csv")
    fb = read_condition(root / fb_dir / "stories.csv")
    if len(tb) != len(fb):
        raise ValueError(f"{root}: true-belief and false-belief files differ in length ({len(tb)} vs {len(fb)})")
    _, probe_ids = split_stories(len(tb), eval_fraction)
    if max_stories is not None:
        probe_ids = probe_ids[:max_stories]
    label = _STATEMENT_LABEL[task]
    rows: list[dict[str, Any]] = []
    for story_id in probe_ids:
        t, f = tb.iloc[story_id], fb.iloc[story_id]
        if (f["correct"], f["wrong"]) != (t["wrong"], t["correct"]):
            raise ValueError(f"{root}: story {story_id}: false-belief answers are not the true-belief ones swapped")
        for condition, row in (("true_belief", t), ("false_belief", f)):
            for is_correct in (True, False):
                text = row["correct"] if is_correct else row["wrong"]
                # the original's oracle label: the setting's truth equals the statement's
                oracle = int((condition == "true_belief") == is_correct)
                protagonist = int(is_correct)
                statement = probe_statement(task, text, statements)
                rows.append(
                    {
                        "sample_id": len(rows),
                        "task": task,
                        "story_id": int(story_id),
                        "condition": condition,
                        "answer": "aware" if oracle else "not_aware",
                        "story": row["story"],
                        "statement": statement,
                        "prompt": make_prompt(row["story"], statement, label),
                        "oracle": oracle,
                        "protagonist": protagonist,
                        "joint": 2 * oracle + protagonist,
                    }
                )
    if not rows:
        raise ValueError(f"{root}: the probe split is empty (eval_fraction={eval_fraction}, {len(tb)} stories)")
    return pd.DataFrame(rows)
