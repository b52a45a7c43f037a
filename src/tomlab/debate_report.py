"""The debate analyses (accuracy, disagreement by round, judge preference, adaptive vs forced,
tokens) and the report section's tables.

Numbers set against ours are Liang et al.'s as quoted in this project's issue (counter-intuitive
arithmetic accuracy, %; Common MT COMET / BLEURT).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from tomlab.debate_tasks import final_number, score_answer

METHOD_NAMES = {
    "direct": "direct answer",
    "cot": "chain of thought",
    "self_consistency": "self-consistency",
    "self_reflection": "self-reflection",
    "debate": "debate (adaptive break)",
    "debate_forced": "debate (to the round limit)",
}
PAPER_ARITHMETIC = pd.DataFrame([
    {"method": "GPT-4", "accuracy (%)": "52.0"},
    {"method": "GPT-3.5", "accuracy (%)": "20.0"},
    {"method": "GPT-3.5 + CoT", "accuracy (%)": "24.0"},
    {"method": "GPT-3.5 + self-consistency", "accuracy (%)": "30.0"},
    {"method": "GPT-3.5 + self-reflection", "accuracy (%)": "20.0"},
    {"method": "GPT-3.5 + MAD", "accuracy (%)": "36.0"},
])
PAPER_MT = pd.DataFrame([
    {"method": "GPT-3.5", "COMET": "80.3", "BLEURT": "68.2"},
    {"method": "GPT-3.5 + self-reflection", "COMET": "81.0", "BLEURT": "69.1"},
    {"method": "GPT-3.5 + MAD", "COMET": "82.0", "BLEURT": "70.9"},
    {"method": "GPT-4", "COMET": "82.0", "BLEURT": "70.1"},
])


def score_rows(answers: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """``answers`` (question_id, method, final_answer, tokens...) joined with the tasks' acceptable
    answers; adds ``correct`` and ``intuitive`` (the reply gave the tempting wrong answer)."""
    merged = answers.merge(tasks[["id", "family", "answers", "intuitive"]], left_on="question_id", right_on="id",
                           how="left", validate="many_to_one")
    if merged["answers"].isna().any():
        missing = merged.loc[merged["answers"].isna(), "question_id"].iloc[0]
        raise ValueError(f"answer for question {missing!r}, which is not in the task file")
    merged["correct"] = [score_answer(str(a), list(acc)) for a, acc in zip(merged["final_answer"], merged["answers"])]
    merged["gave_intuitive"] = [bool(str(i)) and score_answer(str(a), [str(i)])
                                for a, i in zip(merged["final_answer"], merged["intuitive"])]
    return merged.drop(columns=["id"])


def accuracy_table(scored: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per method: accuracy with a 95% bootstrap interval, the share of intuitive (trap) answers,
    and tokens per question."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, g in scored.groupby("method", sort=False):
        c = g["correct"].astype(float).to_numpy()
        boots = rng.choice(c, size=(n_boot, len(c)), replace=True).mean(axis=1)
        rows.append({"method": method, "n": len(g), "accuracy": float(c.mean()),
                     "ci_low": float(np.quantile(boots, 0.025)), "ci_high": float(np.quantile(boots, 0.975)),
                     "intuitive_rate": float(g["gave_intuitive"].mean()),
                     "tokens_per_question": float((g["prompt_tokens"] + g["completion_tokens"]).mean())})
    return pd.DataFrame(rows)


def family_spread(scored: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per method and problem family: how much a number moves across instantiations."""
    return (scored.groupby(["method", "family"])["correct"].agg(["mean", "size"])
            .rename(columns={"mean": "accuracy", "size": "n"}).reset_index())


def disagreement_by_round(debates: pd.DataFrame) -> pd.DataFrame:
    """From a table of debate turns (question_id, round, debater, text): per round, the share of
    debates whose debaters ended their turns with different numbers (no number counts as its own
    answer), over the debates that reached that round."""
    rows = []
    for (qid, rnd), g in debates.groupby(["question_id", "round"]):
        values = [final_number(t) for t in g.sort_values("debater")["text"]]
        keys = {("none", i) if v is None else round(v, 9) for i, v in enumerate(values)}
        rows.append({"question_id": qid, "round": rnd, "disagree": len(keys) > 1})
    per = pd.DataFrame(rows, columns=["question_id", "round", "disagree"])
    return (per.groupby("round")["disagree"].agg(["mean", "size"])
            .rename(columns={"mean": "disagreement", "size": "debates"}).reset_index())


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


def tokens_table(scored: pd.DataFrame) -> pd.DataFrame:
    out = scored.groupby("method", sort=False)[["prompt_tokens", "completion_tokens"]].mean().reset_index()
    out["total"] = out["prompt_tokens"] + out["completion_tokens"]
    return out


def _path(results: str | os.PathLike[str], *parts: str) -> Path:
    return Path(results).joinpath("debate", *parts)


def available(results: str | os.PathLike[str], task: str = "arithmetic") -> bool:
    return _path(results, task, "accuracy.parquet").exists()


def display_accuracy(results: str | os.PathLike[str]) -> pd.DataFrame:
    acc = pd.read_parquet(_path(results, "arithmetic", "accuracy.parquet"))
    return pd.DataFrame({
        "method": acc["method"].map(lambda m: METHOD_NAMES.get(m, m)),
        "n": acc["n"],
        "accuracy [95% CI]": [f"{a:.1%} [{lo:.0%}, {hi:.0%}]" for a, lo, hi in zip(acc["accuracy"], acc["ci_low"],
                                                                               acc["ci_high"])],
        "gave the intuitive answer": [f"{x:.0%}" for x in acc["intuitive_rate"]],
        "tokens / question": [f"{x:,.0f}" for x in acc["tokens_per_question"]],
    })


def display_translation(results: str | os.PathLike[str]) -> pd.DataFrame:
    acc = pd.read_parquet(_path(results, "translation", "accuracy.parquet"))
    return pd.DataFrame({
        "method": acc["method"].map(lambda m: METHOD_NAMES.get(m, m)),
        "n": acc["n"],
        "BLEU": [f"{x:.1f}" for x in acc["bleu"]],
        "chrF": [f"{x:.1f}" for x in acc["chrf"]],
        "closer to the correct reference": [f"{x:.0%}" for x in acc["contrastive"]],
        "COMET": ["not computed" if pd.isna(x) else f"{x:.3f}" for x in acc["comet"]],
        "tokens / question": [f"{x:,.0f}" for x in acc["tokens_per_question"]],
    })


def judge_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    t = pd.read_parquet(_path(results, "arithmetic", "judge_preference.parquet"))
    return t.assign(share=[f"{x:.0%}" if pd.notna(x) else "-" for x in t["share"]])


def first_debate(results: str | os.PathLike[str], max_chars: int = 600) -> str:
    """The turns and judge decisions of the first arithmetic debate, for the report."""
    import json

    path = _path(results, "arithmetic", "debate", "transcripts.jsonl")
    if not path.exists():
        return ""
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    parts = [f"[round {t['round']}, {t['speaker']}]\n{str(t['text']).strip()[:max_chars]}" for t in first["turns"]]
    parts += [f"[judge, {j['mode']}, round {j['round']}]\n{str(j['raw']).strip()[:max_chars]}" for j in first["judge"]]
    return "\n\n".join(parts)


def debate_commentary(results: str | os.PathLike[str]) -> str:
    acc = pd.read_parquet(_path(results, "arithmetic", "accuracy.parquet")).set_index("method")
    out: list[str] = []
    if "debate" in acc.index:
        d = acc.loc["debate"]
        others = acc.drop(index=[m for m in ("debate", "debate_forced") if m in acc.index])
        overlapping = [m for m, r in others.iterrows() if r["ci_low"] <= d["ci_high"] and d["ci_low"] <= r["ci_high"]]
        out.append(
            f"**Debate** answers {d['accuracy']:.0%} of {int(d['n'])} questions correctly "
            f"[{d['ci_low']:.0%}, {d['ci_high']:.0%}]. Its interval overlaps those of "
            f"{len(overlapping)} of {len(others)} single-agent methods"
            + (f" ({', '.join(METHOD_NAMES.get(m, m) for m in overlapping)})" if overlapping else "")
            + ": where intervals overlap, the difference is within noise at this sample size."
        )
        if "debate_forced" in acc.index:
            f = acc.loc["debate_forced"]
            out.append(f"Forcing every debate to the round limit gives {f['accuracy']:.0%} against {d['accuracy']:.0%} "
                       f"with the adaptive break, at {f['tokens_per_question']:,.0f} against "
                       f"{d['tokens_per_question']:,.0f} tokens per question.")
    dis_path = _path(results, "arithmetic", "disagreement.parquet")
    if dis_path.exists():
        dis = pd.read_parquet(dis_path)
        if len(dis):
            first, last = dis.iloc[0], dis.iloc[-1]
            out.append(f"**Disagreement.** In round {int(first['round'])} the debaters end on different answers in "
                       f"{first['disagreement']:.0%} of debates, in round {int(last['round'])} in "
                       f"{last['disagreement']:.0%} (over the debates still running). The paper's point is that the "
                       "negative side keeps the debate divergent; a debate whose sides agree from the start cannot "
                       "correct a shared mistake.")
    judge_path = _path(results, "arithmetic", "debate", "judge.parquet")
    if judge_path.exists():
        judge = pd.read_parquet(judge_path)
        if len(judge):
            out.append(f"**Judge.** {int((~judge['parsed'].astype(bool)).sum())} of {len(judge)} judge replies could not "
                       "be read as JSON (counted as no decision); the table above shows which side its decisions "
                       "favoured.")
    cheapest = acc["tokens_per_question"].idxmin() if len(acc) else None
    if cheapest is not None:
        out.append(f"The cheapest method is {METHOD_NAMES.get(cheapest, cheapest)} "
                   f"({acc.loc[cheapest, 'tokens_per_question']:,.0f} tokens per question); the paper's claim is "
                   "about accuracy, and the token column shows what each point of it costs.")
    return "\n\n".join(out)
