"""The report's stress-test section: each doubt's experiment, and the verdict table."""

from __future__ import annotations

import pandas as pd

from tomlab.manifest import Manifest
from tomlab.stress.decodability import chance_level, curve_summary
from tomlab.stress.verdicts import DOUBT_SIMPLE

CONDITION_NAMES = {"best_head": "best head (chosen on training data)",
                   "best_head_on_val": "best head (chosen on validation, as the paper picks it)",
                   "random_heads": "random heads", "layer": "whole layer", "random_projection": "random projection"}


def available(m: Manifest) -> bool:
    """Whether the stress tests' verdicts (the manifest's ``stress_verdicts``) exist."""
    return m.exists("stress_verdicts")


def decodability_table(m: Manifest) -> pd.DataFrame:
    """The curve as a table: per condition and pool size, accuracy over draws (mean, lowest, highest)."""
    summary = curve_summary(pd.read_parquet(m.path("stress_decodability")))
    return pd.DataFrame({
        "probe on": summary["condition"].map(lambda c: CONDITION_NAMES.get(c, c)),
        "heads' worth": summary["k"], "features": summary["n_features"], "draws": summary["draws"],
        "accuracy": [f"{a:.2f}" for a in summary["accuracy"]],
        "range over draws": [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(summary["lowest"], summary["highest"])],
    })


def verdicts(m: Manifest) -> pd.DataFrame:
    """The verdict table as shown: doubt, experiment, estimate [95% CI], verdict, evidence."""
    v = pd.read_parquet(m.path("stress_verdicts"))
    return pd.DataFrame({
        "doubt": v["doubt"], "experiment": v["experiment"], "statistic": v["statistic"],
        "estimate [95% CI]": [f"{e:+.2f} [{lo:+.2f}, {hi:+.2f}]" for e, lo, hi in zip(v["estimate"], v["ci_low"],
                                                                                      v["ci_high"])],
        "verdict": v["verdict"], "evidence": v["evidence"],
    })


def decodability_commentary(m: Manifest) -> str:
    """What the decodability curve says, generated from the verdict and the curve."""
    v = pd.read_parquet(m.path("stress_verdicts"))
    row = v[v["doubt"] == DOUBT_SIMPLE]
    if row.empty:
        return ""
    r = row.iloc[0]
    correct = pd.read_parquet(m.path("stress_decodability"))
    n_val = int(correct["sample"].nunique())
    text = (f"On this model the difference is {r['estimate']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] "
            f"({r['evidence']}): **{r['verdict']}**. ")
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
