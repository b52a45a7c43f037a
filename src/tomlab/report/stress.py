"""The report's stress-test section: each doubt's experiment, and the verdict table."""

from __future__ import annotations

import pandas as pd

from tomlab import io
from tomlab.manifest import Manifest
from tomlab.report.common import md_text
from tomlab.stress.decodability import chance_level, curve_summary
from tomlab.stress.verdicts import (  # noqa: F401  (the section names the doubts through this module)
    DOUBT_MINDS,
    DOUBT_SIMPLE,
    DOUBT_SPECIFIC,
    DOUBT_STEERING,
    DOUBT_TOKENS,
    VERDICTS,
)

CONDITION_NAMES = {"best_head": "best head (chosen on training data)",
                   "best_head_on_val": "best head (chosen on validation, as the paper picks it)",
                   "random_heads": "random heads", "layer": "whole layer", "random_projection": "random projection"}


SPECIFIC_NOTE = (
    "The rule: a Spearman interval above 0.5 supports the claim, one below 0.2 undermines it; if the top heads do "
    "not decode the originals at all, or the originals' map is unreliable (below 0.5), the verdict is inconclusive. "
    "The perturbed sets share their stories with the "
    "originals, which raises their correlation beyond what the shift alone explains; the other-stories row is the "
    "test. Resampling adds noise to both maps, so a correlation's interval can sit below its estimate.")

TOKENS_NOTE = (
    "A note on the bag of words: for the protagonist's belief, whether a statement matches it is an exclusive-or of "
    "the story's perception sentence and the statement's content, which no linear read-out of word counts computes; "
    "with whole stories held out the baseline sits at chance by construction, a floor rather than a competitor (the "
    "oracle's label, the statement's content alone, is the lexical one: set `stress.target: oracle` to test that). "
    "Heads that carry the belief should hold on the perturbations that keep it and follow the decoys' belief; a word "
    "detector follows the decoys' words to the wrong belief and falls below chance, which is what the rule calls "
    "undermining.")


def available(m: Manifest) -> bool:
    """Whether the stress tests' verdicts (the manifest's ``stress_verdicts``) exist."""
    return m.exists("stress_verdicts")


def decodability_table(m: Manifest) -> pd.DataFrame:
    """The curve as a table: per condition and pool size, accuracy over draws (mean, lowest, highest)."""
    summary = curve_summary(io.read_parquet(m.path("stress_decodability")))
    return pd.DataFrame({
        "probe on": summary["condition"].map(lambda c: CONDITION_NAMES.get(c, c)),
        "heads' worth": summary["k"], "features": summary["n_features"], "draws": summary["draws"],
        "accuracy": [f"{a:.2f}" for a in summary["accuracy"]],
        "range over draws": [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(summary["lowest"], summary["highest"])],
    })


def verdicts(m: Manifest) -> pd.DataFrame:
    """The verdict table as shown: doubt, experiment, estimate [95% CI], verdict, evidence."""
    v = io.read_parquet(m.path("stress_verdicts"))
    return pd.DataFrame({
        "doubt": v["doubt"], "experiment": v["experiment"], "statistic": v["statistic"],
        "estimate [95% CI]": [f"{e:+.2f} [{lo:+.2f}, {hi:+.2f}]" for e, lo, hi in zip(v["estimate"], v["ci_low"],
                                                                                      v["ci_high"])],
        "verdict": v["verdict"], "evidence": v["evidence"],
    })


def decodability_commentary(m: Manifest) -> str:
    """What the decodability curve says, generated from the verdict and the curve."""
    v = io.read_parquet(m.path("stress_verdicts"))
    row = v[v["doubt"] == DOUBT_SIMPLE]
    if row.empty:
        return ""
    r = row.iloc[0]
    correct = io.read_parquet(m.path("stress_decodability"))
    n_val = int(correct["sample"].nunique())
    text = (f"On this model the difference is {r['estimate']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] "
            f"({md_text(r['evidence'])}): **{md_text(r['verdict'])}**. ")
    if r["verdict"] == "supports the claim":
        text += ("A single head, picked without looking at the validation data, reads the belief better than a few "
                 "heads taken at random, so 'a belief head' is more than 'any linear read-out'. ")
    elif r["verdict"] == "undermines it":
        text += ("A few heads taken at random read the belief as well as the best single head: the information is "
                 "spread widely, and finding one head that decodes it says little about where belief lives. ")
    else:
        text += "The validation set is too small, or the signal too weak, to tell the two apart at this scale. "
    chance = chance_level(correct)
    on_val = correct[correct["condition"] == "best_head_on_val"]["correct"].mean()
    if on_val < chance:
        text += (f"Even the best head on validation ({on_val:.2f}) is below chance ({chance:.2f}): with the "
                 "by-sample split a story's other samples, whose labels are balanced, sit in the training set, so a "
                 "probe that recognises the story predicts the wrong label for its held-out sample (the probing "
                 "section's story split avoids this). ")
    text += (f"All of this rests on {n_val} validation samples. The paper's way of picking the head, the best "
             "validation accuracy among hundreds of heads, is shown beside the fair pick: the gap between the two "
             "is the selection bias of that maximum.")
    return text


def _ci(estimate: float, low: float, high: float, signed: bool = False) -> str:
    f = "{:+.2f}" if signed else "{:.2f}"
    if pd.isna(estimate):
        return ""
    return f"{f.format(estimate)} [{f.format(low)}, {f.format(high)}]"


SHIFT_NAMES = {"original": "originals (validation stories)", "generated": "other stories (generated)",
               "generated_to_original": "originals, probes trained on the generated stories",
               "kept_belief": "all that keep the belief (pooled)", "decoys": "both decoys (pooled)"}


def transfer_table(m: Manifest) -> pd.DataFrame:
    """Doubts 2 and 3 as numbers: per story set, the top heads and the bag of words, both trained on the
    originals, and how the per-head map compares with the originals'."""
    s = io.read_parquet(m.path("stress_transfer"))
    return pd.DataFrame({
        "tested on": [SHIFT_NAMES.get(x, x.replace("_", " ")) for x in s["shift"]], "samples": s["n"],
        "top heads [95% CI]": [_ci(*r) for r in zip(s["top_acc"], s["top_acc_low"], s["top_acc_high"])],
        "same stories unperturbed": [f"{x:.2f}" if p else "" for x, p in zip(s["original_top_acc"], s["paired"])],
        "bag of words": [_ci(*r) for r in zip(s["lexical_acc"], s["lexical_low"], s["lexical_high"])],
        "heads - words": [_ci(*r, signed=True) for r in zip(s["margin"], s["margin_low"], s["margin_high"])],
        "Spearman of head maps": [_ci(*r, signed=True) for r in zip(s["spearman"], s["spearman_low"],
                                                                     s["spearman_high"])],
        "top-k Jaccard": [_ci(*r) for r in zip(s["jaccard"], s["jaccard_low"], s["jaccard_high"])],
    })


def examples(m: Manifest) -> pd.DataFrame:
    """One before/after example per perturbation, with how many stories it applied to and skipped."""
    e = io.read_parquet(m.path("stress_examples"))
    return pd.DataFrame({"perturbation": e["perturbation"].str.replace("_", " "), "story": e["story"],
                         "sentence": e["field"].map({"story": "story", "aware_of_event": "perception (true belief)",
                                                     "not_aware_of_event": "perception (false belief)"}),
                         "before": e["before"], "after": e["after"], "applied": e["applied"], "skipped": e["skipped"]})


def minds_table(m: Manifest) -> pd.DataFrame:
    """Doubt 4's probes: per group, the best head (chosen on training stories), the belief heads refitted
    on this group, and how this group's head map compares with the forward-belief one."""
    s = io.read_parquet(m.path("stress_minds"))
    return pd.DataFrame({
        "probe for": s["group"].str.replace("_", " "), "label": s["target"], "validation samples": s["n"],
        "stories": s["n_stories"], "chance": [f"{c:.2f}" for c in s["chance"]], "best head": s["best_head"],
        "its accuracy [95% CI]": [_ci(*r) for r in zip(s["best_acc"], s["best_low"], s["best_high"])],
        "belief heads [95% CI]": [_ci(*r) for r in zip(s["belief_heads_acc"], s["belief_heads_low"],
                                                       s["belief_heads_high"])],
        "Spearman with belief map": [f"{x:+.2f}" for x in s["spearman"]],
        "top-k Jaccard": [f"{x:.2f}" for x in s["jaccard"]],
    })


def behaviour(m: Manifest, mode: str) -> pd.DataFrame:
    """Doubts 3 and 5 in behaviour, one scoring mode: plain accuracy per item set and condition, the change
    from the original items of the same stories, and the steered accuracy with its paired change."""
    t = io.read_parquet(m.path("stress_behaviour"))
    t = t[t["mode"] == mode]
    return pd.DataFrame({
        "items": t["set"].str.replace("_", " "), "question": t["task"].str.replace("_", " "),
        "condition": t["condition"].str.replace("_", " "), "n": t["n"],
        "plain [95% CI]": [_ci(*r) for r in zip(t["plain"], t["plain_low"], t["plain_high"])],
        "vs original stories": [_ci(*r, signed=True) for r in zip(t["versus_original"], t["versus_original_low"],
                                                                  t["versus_original_high"])],
        "steered": [f"{x:.2f}" if pd.notna(x) else "" for x in t["steered"]],
        "steered - plain [95% CI]": [_ci(*r, signed=True) for r in zip(t["delta"], t["delta_low"], t["delta_high"])],
    })


def behaviour_modes(m: Manifest) -> list[str]:
    """The scoring modes of the behavioural stress table, log-likelihood first."""
    modes = set(io.read_parquet(m.path("stress_behaviour"))["mode"])
    return [x for x in ("log-likelihood", "generation") if x in modes]


def symbolic(m: Manifest) -> pd.DataFrame:
    """GSM-Symbolic's view: accuracy over draws of new names, beside the original stories'."""
    from tomlab.stress.behaviour import symbolic_summary

    s = symbolic_summary(io.read_parquet(m.path("stress_behaviour")))
    return pd.DataFrame({"mode": s["mode"], "condition": s["condition"].str.replace("_", " "),
                         "draws": s["instantiations"], "mean": s["mean"].round(2), "sd": s["sd"].round(2),
                         "range": [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(s["lowest"], s["highest"])],
                         "original names": s["original"].round(2)})


def verdict_sentence(m: Manifest, doubt: str) -> str:
    """The verdict of one doubt as a sentence (empty when that doubt was not run)."""
    v = io.read_parquet(m.path("stress_verdicts"))
    row = v[v["doubt"] == doubt]
    if row.empty:
        return ""
    r = row.iloc[0]
    return (f"Verdict: **{md_text(r['verdict'])}**. The statistic, {md_text(r['statistic'])}, is {r['estimate']:+.2f} "
            f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]; {md_text(r['evidence'])}.")


def closing(m: Manifest) -> str:
    """What the verdicts add up to on this model, and where the evidence is weak."""
    v = io.read_parquet(m.path("stress_verdicts"))
    counts = v["verdict"].value_counts()
    text = (f"Of {len(v)} doubts tested, " + ", ".join(f"{int(counts.get(x, 0))} {x}" for x in VERDICTS) + ". ")
    t = io.read_parquet(m.path("stress_transfer"))
    orig = t[t["shift"] == "original"]
    if len(orig):
        o = orig.iloc[0]
        if o["top_acc_low"] <= o["chance"] + 0.05:
            text += (f"The evidence is weak where it starts: on this model the top heads read the protagonist's belief at "
                     f"{o['top_acc']:.2f} [{o['top_acc_low']:.2f}, {o['top_acc_high']:.2f}] on held-out stories, against "
                     f"chance {o['chance']:.2f}, so there is little belief signal for the stress tests to stress; the "
                     "verdicts that depend on it say so rather than guess. The paper's scale (Mistral-7B on the real "
                     "BigToM file: `config/bigtom.yaml` with `config/paper.yaml`) is where these tests bite. ")
    text += ("Every interval rests on the numbers of samples and stories shown beside it; the verdict rules are in "
             "the docstrings of `tomlab.stress.verdicts`, so each call can be checked from its row.")
    return text
