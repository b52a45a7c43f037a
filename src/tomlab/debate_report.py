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

from tomlab.debate_tasks import score_answer, stated_answer

METHOD_NAMES = {
    "direct": "direct answer",
    "cot": "chain of thought",
    "self_consistency": "self-consistency",
    "self_reflection": "self-reflection",
    "debate": "debate (adaptive break)",
    "debate_forced": "debate (to the round limit)",
    "debate_affirmative": "debate, affirmative's last answer (judge not used)",
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
    reached it (``debates``), in how many every debater stated a numeric answer (``answered``, see
    :func:`tomlab.debate_tasks.stated_answer`),
    and among those the share whose debaters ended on different numbers (``disagreement``; NaN when
    no debate of that round was answered). Turns without a number are left out of the share rather
    than counted as disagreeing: two replies that both fail to answer say nothing about divergence."""
    rows = []
    for (qid, rnd), g in debates.groupby(["question_id", "round"]):
        values = [stated_answer(t) for t in g.sort_values("debater")["text"]]
        answered = all(v is not None for v in values)
        rows.append({"question_id": qid, "round": rnd, "answered": answered,
                     "disagree": answered and len({round(v, 9) for v in values}) > 1})
    per = pd.DataFrame(rows, columns=["question_id", "round", "answered", "disagree"])
    out = per.groupby("round").agg(debates=("answered", "size"), answered=("answered", "sum")).reset_index()
    shares = per[per["answered"]].groupby("round")["disagree"].mean()
    out["disagreement"] = out["round"].map(shares).astype(float)
    out["answered"] = out["answered"].astype(int)
    return out[["round", "disagreement", "debates", "answered"]]


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
    for; see :func:`tomlab.debate_tasks.stated_answer`)."""
    if not len(turns):
        return float("nan")
    return float(np.mean([stated_answer(t) is not None for t in turns["text"]]))


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


def display_spread(results: str | os.PathLike[str]) -> pd.DataFrame:
    spread = instantiation_spread(pd.read_parquet(_path(results, "arithmetic", "scored.parquet")))
    return pd.DataFrame({
        "method": spread["method"].map(lambda m: METHOD_NAMES.get(m, m)),
        "sets x items": [f"{a} x {b}" for a, b in zip(spread["sets"], spread["items_per_set"])],
        "mean": [f"{x:.0%}" for x in spread["mean"]],
        "sd": [f"{x:.0%}" for x in spread["sd"]],
        "min - max": [f"{lo:.0%} - {hi:.0%}" for lo, hi in zip(spread["min"], spread["max"])],
    })


def judge_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    t = pd.read_parquet(_path(results, "arithmetic", "judge_preference.parquet"))
    return t.assign(share=[f"{x:.0%}" if pd.notna(x) else "-" for x in t["share"]])


def first_debate(results: str | os.PathLike[str], max_chars: int = 200, max_total: int = 1400) -> str:
    """The turns and judge decisions of the first arithmetic debate, for the report: each turn cut to
    ``max_chars`` characters and the whole to about ``max_total`` (cuts are marked)."""
    import json

    path = _path(results, "arithmetic", "debate", "transcripts.jsonl")
    if not path.exists():
        return ""
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])

    def cut(text: object) -> str:
        text = str(text).strip()
        return text if len(text) <= max_chars else text[:max_chars].rstrip() + " [...]"

    parts = [f"[round {t['round']}, {t['speaker']}]\n{cut(t['text'])}" for t in first["turns"]]
    parts += [f"[judge, {j['mode']}, round {j['round']}]\n{cut(j['raw'])}" for j in first["judge"]]
    out, used = [], 0
    for part in parts:
        if used + len(part) > max_total and out:
            out.append(f"[... {len(parts) - len(out)} more turn(s) left out; all are in "
                       "results/debate/arithmetic/debate/transcripts.jsonl]")
            break
        out.append(part)
        used += len(part)
    return f"Question: {first.get('question_id', '')}\n\n" + "\n\n".join(out)


def debate_commentary(results: str | os.PathLike[str]) -> str:
    acc = pd.read_parquet(_path(results, "arithmetic", "accuracy.parquet")).set_index("method")
    out: list[str] = []
    if "debate" in acc.index:
        d = acc.loc["debate"]
        others = acc.drop(index=[m for m in ("debate", "debate_forced", "debate_affirmative") if m in acc.index])
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
            adaptive_path = _path(results, "arithmetic", "debate", "answers.parquet")
            forced_path = _path(results, "arithmetic", "debate_forced", "answers.parquet")
            if adaptive_path.exists() and forced_path.exists():
                limit = int(pd.read_parquet(forced_path)["rounds_run"].max())
                early = int((pd.read_parquet(adaptive_path)["rounds_run"] < limit).sum())
                out[-1] += (f" The judge stopped {early} of {int(d['n'])} debates before round {limit}; every "
                            "round it does not stop costs one more judge call, so a break that rarely fires costs "
                            "more tokens than running every debate to the limit.")
    dis_path = _path(results, "arithmetic", "disagreement.parquet")
    if dis_path.exists():
        dis = pd.read_parquet(dis_path)
        dis = dis[dis["disagreement"].notna()] if "disagreement" in dis else dis
        if len(dis):
            first, last = dis.iloc[0], dis.iloc[-1]
            out.append(f"**Disagreement.** Over the debates in which every debater gave a number, the debaters end "
                       f"round {int(first['round'])} on different answers in {first['disagreement']:.0%} of "
                       f"{int(first['answered'])} debates, and round {int(last['round'])} in "
                       f"{last['disagreement']:.0%} of {int(last['answered'])}. The paper's point is that the "
                       "negative side keeps the debate divergent; a debate whose sides agree from the start cannot "
                       "correct a shared mistake.")
        else:
            out.append("**Disagreement** cannot be measured here: in no round did every debater give a number.")
    judge_path = _path(results, "arithmetic", "debate", "judge.parquet")
    unreadable = float("nan")
    if judge_path.exists():
        judge = pd.read_parquet(judge_path)
        if len(judge):
            bad = int((~judge["parsed"].astype(bool)).sum())
            unreadable = bad / len(judge)
            out.append(f"**Judge.** {bad} of {len(judge)} judge replies could not be read as JSON (counted as no "
                       "decision); the table above shows which side its decisions favoured.")
    if "debate_affirmative" in acc.index and "debate" in acc.index:
        a = acc.loc["debate_affirmative"]
        out.append(f"Scored without the judge (the affirmative side's last answer), the same debates get "
                   f"{a['accuracy']:.0%} [{a['ci_low']:.0%}, {a['ci_high']:.0%}]: the gap to the judged "
                   f"{acc.loc['debate', 'accuracy']:.0%} is what the judge adds or loses.")
    turns_path = _path(results, "arithmetic", "debate", "turns.parquet")
    rate = answer_line_rate(pd.read_parquet(turns_path)) if turns_path.exists() else float("nan")
    if not np.isnan(rate):
        out.append(f"**Protocol.** {rate:.0%} of debater turns state an answer in the form every debater was asked "
                   "for (`Answer: <number>`).")
    if (not np.isnan(rate) and rate < 0.5) or (not np.isnan(unreadable) and unreadable > 0.5):
        out.append("**How much this says.** Little about debate as a method: most turns carry no answer or most "
                   "judge replies are unreadable, so the model is not carrying out the protocol the paper "
                   "studies, and every debate number above measures instruction following as much as "
                   "reasoning. The comparison the paper makes needs a model that can play the roles (set "
                   "`model`, or `debate.models` to a served model, in the config).")
    cheapest = acc["tokens_per_question"].idxmin() if len(acc) else None
    if cheapest is not None:
        out.append(f"The cheapest method is {METHOD_NAMES.get(cheapest, cheapest)} "
                   f"({acc.loc[cheapest, 'tokens_per_question']:,.0f} tokens per question); the paper's claim is "
                   "about accuracy, and the token column shows what each point of it costs.")
    return "\n\n".join(out)
