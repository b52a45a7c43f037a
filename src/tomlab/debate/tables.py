"""Debate tables: accuracy with intervals, spread across instantiations, disagreement, judge preference."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tomlab.debate.answers import answer_key, reply_values, score_answer
from tomlab.debate.protocol import SIDES
from tomlab.debate.tasks import final_translation, translation_scores
from tomlab.stats import bootstrap_ci

#: The columns of :func:`disagreement_by_round` (also of its empty table: no debate, or translation).
DISAGREEMENT_COLUMNS = ["round", "disagreement", "debates", "answered"]


def empty_disagreement() -> pd.DataFrame:
    """The disagreement table of a run without debate turns (no debate method, or the translation task)."""
    return pd.DataFrame({"round": pd.Series(dtype="int64"), "disagreement": pd.Series(dtype="float64"),
                         "debates": pd.Series(dtype="int64"), "answered": pd.Series(dtype="int64")})


def _forms(value: Any) -> list[str]:
    """A task column of answer forms as a list of strings: a list (or array, as parquet returns it)
    as is, one string (items written before ``intuitive`` became a list) as a list of one."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [str(v) for v in value if str(v).strip()]


def score_rows(answers: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """``answers`` (question_id, method, final_answer, tokens...) joined with the tasks' acceptable
    answers; adds ``correct`` (the reply's answer is one of ``answers``, see
    :func:`tomlab.debate.answers.score_answer`) and ``gave_intuitive`` (it is one of the
    ``intuitive`` wrong answers: matching any of them counts)."""
    merged = answers.merge(tasks[["id", "family", "answers", "intuitive"]], left_on="question_id", right_on="id",
                           how="left", validate="many_to_one")
    if merged["answers"].isna().any():
        missing = merged.loc[merged["answers"].isna(), "question_id"].iloc[0]
        raise ValueError(f"answer for question {missing!r}, which is not in the task file")
    merged["correct"] = [score_answer(str(a), _forms(acc)) for a, acc in zip(merged["final_answer"], merged["answers"])]
    merged["gave_intuitive"] = [score_answer(str(a), _forms(i))
                                for a, i in zip(merged["final_answer"], merged["intuitive"])]
    return merged.drop(columns=["id"])


def accuracy_table(scored: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per method: accuracy with a 95% bootstrap interval, the share of intuitive (trap) answers,
    and tokens per question."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, g in scored.groupby("method", sort=False):
        c = g["correct"].astype(float).to_numpy()
        low, high = bootstrap_ci(c, n_boot=n_boot, rng=rng)
        rows.append({"method": method, "n": len(g), "accuracy": float(c.mean()), "ci_low": low, "ci_high": high,
                     "intuitive_rate": float(g["gave_intuitive"].mean()),
                     "tokens_per_question": float((g["prompt_tokens"] + g["completion_tokens"]).mean())})
    return pd.DataFrame(rows)


def instantiation_spread(scored: pd.DataFrame) -> pd.DataFrame:
    """How much accuracy moves across instantiations of the same templates (as GSM-Symbolic shows):
    the k-th instance of every family (in item order) forms set k, and per method the table gives
    the number of complete sets, their size, and the mean, standard deviation, minimum and maximum
    of the per-set accuracy. Empty when there is a single family (the original JSON) or fewer than
    two complete sets."""
    columns = ["method", "sets", "items_per_set", "mean", "sd", "min", "max"]
    rows = []
    for method, g in scored.groupby("method", sort=False):
        families = g["family"].nunique()
        if families < 2:
            continue
        g = g.assign(instance=g.groupby("family").cumcount())
        per_set = g.groupby("instance")["correct"].agg(["mean", "size"])
        per_set = per_set[per_set["size"] == families]["mean"].astype(float)
        if len(per_set) < 2:
            continue
        rows.append({"method": method, "sets": len(per_set), "items_per_set": families, "mean": per_set.mean(),
                     "sd": per_set.std(ddof=1), "min": per_set.min(), "max": per_set.max()})
    return pd.DataFrame(rows, columns=columns)


def disagreement_by_round(debates: pd.DataFrame) -> pd.DataFrame:
    """From a table of debate turns (question_id, round, debater, text): per round, how many debates
    reached it (``debates``), in how many every debater stated an answer (``answered``: a value after
    an answer marker, see :func:`tomlab.debate.answers.reply_values`), and among those the share whose
    debaters ended on different answers (``disagreement``; NaN when no debate of that round was
    answered; "0.5" and "50%" agree, "6 or 12" and "6" differ). Turns without an answer are left out
    of the share rather than counted as disagreeing: two replies that both fail to answer say nothing
    about divergence. Without turns (no debate was run) the table is empty, with its columns."""
    if debates.empty:
        return empty_disagreement()
    rows = []
    for (qid, rnd), g in debates.groupby(["question_id", "round"]):
        stated = [reply_values(t, stated_only=True) for t in g.sort_values("debater")["text"]]
        answered = all(stated)
        rows.append({"question_id": qid, "round": rnd, "answered": answered,
                     "disagree": answered and len({answer_key(v) for v in stated}) > 1})
    per = pd.DataFrame(rows, columns=["question_id", "round", "answered", "disagree"])
    out = per.groupby("round").agg(debates=("answered", "size"), answered=("answered", "sum")).reset_index()
    shares = per[per["answered"].astype(bool)].groupby("round")["disagree"].mean()
    out["disagreement"] = out["round"].map(shares).astype(float)
    out["answered"] = out["answered"].astype(int)
    return out[DISAGREEMENT_COLUMNS]


def affirmative_answers(answers: pd.DataFrame, turns: pd.DataFrame, method: str = "debate",
                        as_method: str = "debate_affirmative") -> pd.DataFrame:
    """The same debates scored without their judge: each debate's answer is the affirmative side's
    last turn. Separates what the debaters reached from whether the judge could report it. Token
    counts are the debate's own (judge included)."""
    deb = answers[answers["method"] == method]
    own = turns[(turns["method"] == method) & (turns["debater"] == 0)].sort_values(["question_id", "round"])
    last = own.groupby("question_id")["text"].last()
    out = deb.copy()
    out["method"] = as_method
    out["final_answer"] = out["question_id"].map(last).fillna("")
    out["preference"] = None
    out["final_source"] = "affirmative's last turn"
    return out


def answer_line_rate(turns: pd.DataFrame) -> float:
    """Share of debater turns that state an answer ("Answer: <number>", the format they were asked
    for; see :func:`tomlab.debate.answers.reply_values`)."""
    if not len(turns):
        return float("nan")
    return float(np.mean([bool(reply_values(t, stated_only=True)) for t in turns["text"]]))


def judge_preferences(results: pd.DataFrame, side_models: dict[str, str], judge_model: str) -> pd.DataFrame:
    """How often the judge's decision sided with each side (or with none), and with a side played
    by its own model."""
    counts = results["preference"].fillna("none").value_counts()
    total = int(counts.sum())
    rows = [{"judge sided with": side, "debates": int(counts.get(side, 0)),
             "share": counts.get(side, 0) / total if total else float("nan"),
             "that side's model": side_models.get(side, "-"),
             "same model as the judge": side_models.get(side) == judge_model if side in side_models else False}
            for side in ("affirmative", "negative", "none")]
    return pd.DataFrame(rows)


def _model_name(spec_json: str) -> str:
    try:
        spec = json.loads(spec_json)
    except (TypeError, ValueError):
        return str(spec_json)
    return str(spec.get("model") or spec.get("name") or spec_json) if isinstance(spec, dict) else str(spec)


def translation_table(scored: pd.DataFrame) -> pd.DataFrame:
    """Per method: BLEU, chrF and the contrastive score of the final translations, and tokens per question."""
    rows = []
    for method, g in scored.groupby("method", sort=False):
        s = translation_scores(list(g["translation"]), g)
        rows.append({"method": method, "n": len(g), **s,
                     "tokens_per_question": float((g["prompt_tokens"] + g["completion_tokens"]).mean())})
    return pd.DataFrame(rows)


def debate_tables(task: str, tasks: pd.DataFrame, answers: pd.DataFrame, turns: pd.DataFrame,
                  models: Mapping[str, Any], *, n_boot: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every table of one debate task from the methods' answers and turns.

    The debates are also scored with the judge left out (the affirmative's last answer). ``models``
    is ``{"default": spec, role: spec | None}``, used to say whether the judge favours its own model.
    Returns ``scored``, ``accuracy``, ``disagreement`` (arithmetic only; empty otherwise) and ``judge``.
    """
    if (answers["method"] == "debate").any():  # the same debates, judge left out
        own = affirmative_answers(answers, turns)
        if task == "translation":
            own["translation"] = own["final_answer"].map(final_translation)
        answers = pd.concat([answers, own], ignore_index=True)
    if task == "arithmetic":
        scored = score_rows(answers, tasks)
        table = accuracy_table(scored, n_boot=n_boot, seed=seed)
    else:
        scored = answers.merge(tasks, left_on="question_id", right_on="id", how="left")
        table = translation_table(scored)
    debates = answers[answers["method"] == "debate"]
    side_models = {side: json.dumps(models.get(side) or models["default"], sort_keys=True) for side in SIDES}
    judge_model = json.dumps(models.get("judge") or models["default"], sort_keys=True)
    prefs = judge_preferences(debates, side_models, judge_model)
    prefs["that side's model"] = prefs["that side's model"].map(_model_name)
    disagreement = (disagreement_by_round(turns[turns["method"] == "debate"]) if task == "arithmetic"
                    else empty_disagreement())
    return {"scored": scored, "accuracy": table, "disagreement": disagreement, "judge": prefs}
