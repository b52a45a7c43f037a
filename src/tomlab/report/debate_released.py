"""The debate section's "The paper's own outputs, rescored": Liang et al.'s released Common MT lexical outputs
through tomlab's scoring (``debate_released_*`` in the manifest), beside the paper's numbers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.debate.released import sense_verdict
from tomlab.manifest import Manifest
from tomlab.report.common import md_text

#: The released systems' names as the paper prints them.
SYSTEM_NAMES = {"gpt4": "GPT-4", "baseline": "GPT-3.5-Turbo", "rerank": "+ Rerank", "maps": "+ MAPS",
                "self_reflect": "+ Self-Reflect", "mad": "+ MAD"}

#: The paper's numbers on these outputs, from the MAD repository's README images: SacreBLEU, COMET and
#: BLEURT from its first version (commit 261245d, 22 May 2023, imgs/CommonMT.png); human accuracy from the
#: version after it (commit bb555d8, 25 May 2023), whose image drops SacreBLEU.
PAPER_RELEASED = pd.DataFrame([
    {"system": "gpt4", "SacreBLEU": 34.20, "COMET": 82.02, "BLEURT": 70.09, "human ACC (%)": 68.5},
    {"system": "baseline", "SacreBLEU": 30.29, "COMET": 80.32, "BLEURT": 68.16, "human ACC (%)": 62.5},
    {"system": "rerank", "SacreBLEU": 30.07, "COMET": 80.93, "BLEURT": 68.64, "human ACC (%)": 63.5},
    {"system": "maps", "SacreBLEU": 29.65, "COMET": 81.91, "BLEURT": 70.10, "human ACC (%)": 70.5},
    {"system": "self_reflect", "SacreBLEU": 27.54, "COMET": 80.95, "BLEURT": 69.10, "human ACC (%)": 69.0},
    {"system": "mad", "SacreBLEU": 29.15, "COMET": 81.96, "BLEURT": 70.88, "human ACC (%)": 79.5},
])

HOW_TO = ("*The paper's released outputs are not rescored in this run. Clone the MAD repository "
          "(github.com/Skytliang/Multi-Agents-Debate, GPL-3.0; nothing of it is copied here) and set "
          "`debate.translation.released: {dir: <checkout>/data/CommonMT/Lexical_Ambiguity}`: the pipeline then "
          "scores every released system (`tomlab debate-score`) and imports the 200 debate records "
          "(`tomlab debate-import`).*")


def available(m: Manifest) -> bool:
    return m.exists("debate_released_scores")


def _settings(setup: Mapping[str, Any] | None) -> dict[str, Any]:
    db = ((setup or {}).get("config") or {}).get("debate") or {}
    return dict((db.get("translation") or {}).get("released") or {})


def _name(system: str) -> str:
    return SYSTEM_NAMES.get(system, system)


def scores_table(m: Manifest, setup: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Every released system: the paper's SacreBLEU beside ours from the same outputs, chrF, contrastive
    accuracy [95% CI], the paired change against the baseline [95% CI], and the paper's human accuracy."""
    scores = io.read_parquet(m.path("debate_released_scores"))
    merged = scores.merge(PAPER_RELEASED, on="system", how="left")
    baseline = _settings(setup).get("baseline", "baseline")

    def pct(x: float) -> str:
        return "n/a" if pd.isna(x) else f"{100 * x:.1f}"

    return pd.DataFrame({
        "system": [_name(s) for s in merged["system"]],
        "SacreBLEU, paper": ["not given" if pd.isna(x) else f"{x:.2f}" for x in merged["SacreBLEU"]],
        "SacreBLEU, ours": [f"{x:.2f}" for x in merged["bleu"]],
        "chrF": [f"{x:.1f}" for x in merged["chrf"]],
        "closer to the right sense (%)": [f"{pct(c)} [{pct(lo)}, {pct(hi)}]" for c, lo, hi in
                                          zip(merged["contrastive"], merged["contrastive_low"], merged["contrastive_high"])],
        f"change vs {_name(baseline)} (points)": (
            ["-" if sys == baseline else f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
             for sys, d, lo, hi in zip(merged["system"], merged["diff"], merged["diff_low"], merged["diff_high"])]
            if "diff" in merged.columns else ["-"] * len(merged)),
        "human ACC (%), paper": ["not given" if pd.isna(x) else f"{x:.1f}" for x in merged["human ACC (%)"]],
    })


def debates_table(m: Manifest) -> pd.DataFrame:
    """How the released debates ended: rounds before the break, who ended them, the side supported."""
    deb = io.read_parquet(m.path("debate_released_debates"))
    out = (deb.assign(side=deb["supported_side"].replace("", "none stated"))
           .groupby(["ended_by", "rounds", "side"], as_index=False).size()
           .rename(columns={"ended_by": "ended by", "side": "side supported", "size": "debates"}))
    return out.sort_values(["ended by", "rounds", "debates"], ascending=[False, True, False], ignore_index=True)


def moves_table(m: Manifest) -> pd.DataFrame:
    """Did the debate move the translation, and toward the right sense? (paired, the same sentences)."""
    mv = io.read_parquet(m.path("debate_released_moves"))
    return pd.DataFrame({
        "debates": mv["debates"], "n": mv["n"], "final differs from base": [f"{x:.0%}" for x in mv["moved"]],
        "right sense, base (%)": [f"{100 * x:.1f}" for x in mv["contrastive_before"]],
        "right sense, final (%)": [f"{100 * x:.1f}" for x in mv["contrastive_after"]],
        "change (points) [95% CI]": [f"{100 * c:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                                     for c, lo, hi in zip(mv["change"], mv["change_low"], mv["change_high"])],
        "toward / away from the right sense": [f"{a} / {b}" for a, b in zip(mv["toward_correct"], mv["away_from_correct"])],
    })


def verdict(m: Manifest, setup: Mapping[str, Any] | None = None) -> dict[str, Any]:
    settings = _settings(setup)
    return sense_verdict(io.read_parquet(m.path("debate_released_scores")), settings.get("debate", "mad"),
                         settings.get("baseline", "baseline"))


def verdict_row(m: Manifest, setup: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The claim's row in the stress tests' verdict table format (with a ``model`` naming the outputs)."""
    v = verdict(m, setup)
    return pd.DataFrame([{
        "model": "MAD's released outputs (gpt-3.5-turbo)",
        "doubt": "Does debate resolve lexical ambiguity better than its baseline?",
        "experiment": "the paper's released Common MT lexical outputs, rescored",
        "statistic": v["statistic"],
        "estimate [95% CI]": f"{v['estimate']:+.2f} [{v['ci_low']:+.2f}, {v['ci_high']:+.2f}]",
        "verdict": v["verdict"],
        "evidence": f"{v['n']} sentences; an output counts when its sentence chrF is closer to the correct reference",
    }])


def with_verdict(stress: pd.DataFrame, m: Manifest, setup: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The stress tests' verdict table with the released outputs' row below it (when they were rescored)."""
    if not available(m):
        return stress
    row = verdict_row(m, setup)
    if "model" not in stress.columns:
        stress = stress.assign(model="this run's model")[["model", *stress.columns]]
    return pd.concat([stress, row[stress.columns.intersection(row.columns, sort=False)]], ignore_index=True)


def commentary(m: Manifest, setup: Mapping[str, Any] | None = None) -> str:
    scores = io.read_parquet(m.path("debate_released_scores")).set_index("system")
    settings = _settings(setup)
    debate, base = settings.get("debate", "mad"), settings.get("baseline", "baseline")
    v = verdict(m, setup)
    paper = PAPER_RELEASED.set_index("system")
    agree = [s for s in scores.index if s in paper.index and abs(scores.loc[s, "bleu"] - paper.loc[s, "SacreBLEU"]) < 0.01]
    name = {system: md_text(_name(system)) for system in (debate, base)}  # config names, shown in prose
    text = (f"From the released outputs tomlab recomputes the paper's SacreBLEU for {len(agree)} of {len(scores)} "
            "systems to within 0.01. ")
    if debate in scores.index and base in scores.index:
        d, b = scores.loc[debate], scores.loc[base]
        rank = "below" if d["bleu"] < b["bleu"] else "above" if d["bleu"] > b["bleu"] else "level with"
        text += (f"BLEU ranks {name[debate]} ({d['bleu']:.2f}) {rank} its own baseline {name[base]} ({b['bleu']:.2f}); "
                 f"the question BLEU cannot answer is whether the debate picked the right sense. By sentence chrF, "
                 f"{d['contrastive']:.0%} of {name[debate]}'s outputs are closer to the correct than to the incorrect "
                 f"reference, against {b['contrastive']:.0%} for {name[base]}: a paired change of "
                 f"{100 * v['estimate']:+.1f} points [{100 * v['ci_low']:+.1f}, {100 * v['ci_high']:+.1f}] over the same "
                 f"{v['n']} sentences. Verdict on the claim that {md_text(v['claim'])}: **{md_text(v['verdict'])}**.")
        if debate in paper.index and base in paper.index:
            human = paper.loc[debate, "human ACC (%)"] - paper.loc[base, "human ACC (%)"]
            same = (human > 0) == (v["estimate"] > 0)
            text += (f" The paper's human accuracy moves {'the same way' if same else 'the other way'} "
                     f"({human:+.1f} points).")
        text += (" The proxy is chrF against two references, not a human judgment: a right sense worded unlike "
                 "both references is not seen.")
    problems = io.read_parquet(m.path("debate_released_problems")) if m.exists("debate_released_problems") else None
    if problems is not None:
        text += f" Of the moderator's and judge's replies, {len(problems)} could not be read as a dict."
    return text
