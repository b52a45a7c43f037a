"""The report's debate section: ours beside the paper's, judge preference, an excerpt, commentary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomlab import io
from tomlab.debate.tables import answer_line_rate, instantiation_spread
from tomlab.manifest import Manifest
from tomlab.report.common import md_text

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


def available(m: Manifest, task: str = "arithmetic") -> bool:
    """Whether the debate's table for ``task`` (the manifest's ``debate_accuracy``) exists."""
    return m.exists("debate_accuracy", task)


def display_accuracy(m: Manifest) -> pd.DataFrame:
    acc = io.read_parquet(m.path("debate_accuracy", "arithmetic"))
    return pd.DataFrame({
        "method": acc["method"].map(lambda m: METHOD_NAMES.get(m, m)),
        "n": acc["n"],
        "accuracy [95% CI]": [f"{a:.1%} [{lo:.0%}, {hi:.0%}]" for a, lo, hi in zip(acc["accuracy"], acc["ci_low"],
                                                                               acc["ci_high"])],
        "gave the intuitive answer": [f"{x:.0%}" for x in acc["intuitive_rate"]],
        "tokens / question": [f"{x:,.0f}" for x in acc["tokens_per_question"]],
    })


def display_translation(m: Manifest) -> pd.DataFrame:
    acc = io.read_parquet(m.path("debate_accuracy", "translation"))
    return pd.DataFrame({
        "method": acc["method"].map(lambda m: METHOD_NAMES.get(m, m)),
        "n": acc["n"],
        "BLEU": [f"{x:.1f}" for x in acc["bleu"]],
        "chrF": [f"{x:.1f}" for x in acc["chrf"]],
        "closer to the correct reference": [f"{x:.0%}" for x in acc["contrastive"]],
        "COMET": ["not computed" if pd.isna(x) else f"{x:.3f}" for x in acc["comet"]],
        "tokens / question": [f"{x:,.0f}" for x in acc["tokens_per_question"]],
    })


def display_spread(m: Manifest) -> pd.DataFrame:
    spread = instantiation_spread(io.read_parquet(m.path("debate_scored")))
    return pd.DataFrame({
        "method": spread["method"].map(lambda m: METHOD_NAMES.get(m, m)),
        "sets x items": [f"{a} x {b}" for a, b in zip(spread["sets"], spread["items_per_set"])],
        "mean": [f"{x:.0%}" for x in spread["mean"]],
        "sd": [f"{x:.0%}" for x in spread["sd"]],
        "min - max": [f"{lo:.0%} - {hi:.0%}" for lo, hi in zip(spread["min"], spread["max"])],
    })


#: The methods that hold a debate (the others are single-agent baselines).
DEBATE_METHODS = ("debate", "debate_forced")


def judged(m: Manifest) -> bool:
    """Whether the run judged any adaptive debate (``debate.methods`` may list baselines only)."""
    path = _existing(m, "debate_judge_preference")
    return path is not None and int(io.read_parquet(path)["debates"].sum()) > 0


def judge_table(m: Manifest) -> pd.DataFrame:
    t = io.read_parquet(m.path("debate_judge_preference"))
    return t.assign(share=[f"{x:.0%}" if pd.notna(x) else "-" for x in t["share"]])


#: What the report says where the run held no debate of the kind a table needs.
NO_DEBATE = ("*No adaptive debate in this run (`debate.methods` does not list `debate`): there is no judge "
             "decision or disagreement to show.*")


def first_debate(m: Manifest, max_chars: int = 200, max_total: int = 1400) -> str:
    """The turns and judge decisions of the first arithmetic debate, for the report: each turn cut to
    ``max_chars`` characters and the whole to about ``max_total`` (cuts are marked)."""
    import json

    path = m.get("debate_transcripts")
    if path is None or not path.exists():
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
                       f"{_shown(path)}]")
            break
        out.append(part)
        used += len(part)
    return f"Question: {first.get('question_id', '')}\n\n" + "\n\n".join(out)


def _shown(path: Path) -> str:
    """A results path as the reader knows it: from the results folder on (``results/debate/...``)."""
    parts = path.parts
    return "/".join(parts[parts.index("results"):]) if "results" in parts else str(path)


def _existing(m: Manifest, name: str, key: str | None = None) -> Path | None:
    path = m.get(name, key)
    return path if path is not None and path.exists() else None


#: The papers' sizes: Liang et al.'s CIAR (50 questions) and Common MT lexical set (200 sentences).
PAPER_SIZES = {"arithmetic": 50, "translation": 200}


def scale_note(setup: Mapping[str, Any]) -> str:
    """Whether this run's debate data are the paper's: a line saying what is below paper scale (empty
    when both released files were given and the questions number at least the paper's)."""
    db = (setup.get("config") or {}).get("debate") or {}
    short = []
    arith = db.get("arithmetic") or {}
    if not arith.get("file"):
        short.append(f"{md_text(arith.get('n', 'n/a'))} generated arithmetic instances instead of CIAR's "
                     f"{PAPER_SIZES['arithmetic']} questions (debate.arithmetic.file)")
    if not (db.get("translation") or {}).get("file"):
        short.append("tomlab's built-in translation examples instead of the Common MT lexical set's "
                     f"{PAPER_SIZES['translation']} sentences (debate.translation.file)")
    if not short:
        return ""
    return ("**Below paper scale.** This run uses " + "; and ".join(short)
            + ". Its numbers prove the pipeline; they are not comparable with the paper's.")


def debate_commentary(m: Manifest) -> str:
    acc = io.read_parquet(m.path("debate_accuracy", "arithmetic")).set_index("method")
    out: list[str] = []
    if not any(method in acc.index for method in DEBATE_METHODS):
        out.append("**No debate was run**: `debate.methods` lists single-agent methods only, so there is no "
                   "debate to compare them with, and no disagreement or judge to measure.")
    if "debate" in acc.index:
        d = acc.loc["debate"]
        others = acc.drop(index=[m for m in ("debate", "debate_forced", "debate_affirmative") if m in acc.index])
        overlapping = [m for m, r in others.iterrows() if r["ci_low"] <= d["ci_high"] and d["ci_low"] <= r["ci_high"]]
        out.append(
            f"**Debate** answers {d['accuracy']:.0%} of {int(d['n'])} questions correctly "
            f"[{d['ci_low']:.0%}, {d['ci_high']:.0%}]. Its interval overlaps those of "
            f"{len(overlapping)} of {len(others)} single-agent methods"
            + (f" ({', '.join(md_text(METHOD_NAMES.get(m, m)) for m in overlapping)})" if overlapping else "")
            + ": where intervals overlap, the difference is within noise at this sample size."
        )
        if "debate_forced" in acc.index:
            f = acc.loc["debate_forced"]
            out.append(f"Forcing every debate to the round limit gives {f['accuracy']:.0%} against {d['accuracy']:.0%} "
                       f"with the adaptive break, at {f['tokens_per_question']:,.0f} against "
                       f"{d['tokens_per_question']:,.0f} tokens per question.")
            adaptive_path = _existing(m, "debate_answers", "debate")
            forced_path = _existing(m, "debate_answers", "debate_forced")
            if adaptive_path is not None and forced_path is not None:
                limit = int(io.read_parquet(forced_path)["rounds_run"].max())
                early = int((io.read_parquet(adaptive_path)["rounds_run"] < limit).sum())
                out[-1] += (f" The judge stopped {early} of {int(d['n'])} debates before round {limit}; every "
                            "round it does not stop costs one more judge call, so a break that rarely fires costs "
                            "more tokens than running every debate to the limit.")
    dis_path = _existing(m, "debate_disagreement") if "debate" in acc.index else None
    if dis_path is not None:
        dis = io.read_parquet(dis_path)
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
    judge_path = _existing(m, "debate_judge")
    unreadable = float("nan")
    if judge_path is not None:
        judge = io.read_parquet(judge_path)
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
    turns_path = _existing(m, "debate_turns")
    rate = answer_line_rate(io.read_parquet(turns_path)) if turns_path is not None else float("nan")
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
        out.append(f"The cheapest method is {md_text(METHOD_NAMES.get(cheapest, cheapest))} "
                   f"({acc.loc[cheapest, 'tokens_per_question']:,.0f} tokens per question); the paper's claim is "
                   "about accuracy, and the token column shows what each point of it costs.")
    return "\n\n".join(out)
