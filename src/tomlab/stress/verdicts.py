"""Verdicts on the doubts: one row per doubt, with the statistic that decides it and its 95% interval.

A verdict is one of :data:`VERDICTS`, decided by fixed rules written beside each experiment's
statistic (so a reader can check the call from the numbers in the row). Every rule first asks for at
least :data:`MIN_STORIES` validation stories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab.schema import vocabulary
from tomlab.stats import bootstrap_ci
from tomlab.stress.behaviour import MODE_COLUMNS
from tomlab.stress.decodability import chance_level
from tomlab.stress.transfer import percentile_interval, story_weights

VERDICTS: tuple[str, ...] = vocabulary("verdict")
COLUMNS: tuple[str, ...] = ("doubt", "experiment", "statistic", "estimate", "ci_low", "ci_high", "verdict", "evidence")

_MODE_COLUMNS = {mode: MODE_COLUMNS[mode] for mode in ("log-likelihood", "generation")}  # log-likelihood first

MIN_STORIES = 5
"""Fewer validation stories than this give no verdict but "inconclusive at this scale": a bootstrap over
two or three stories has nothing to resample."""

DOUBT_SIMPLE = "Too simple a problem: any linear read-out would succeed"
DOUBT_SPECIFIC = "Problem-specific: in other situations, would the same heads respond?"
DOUBT_TOKENS = "Token detectors: do the heads just detect words for the causal variables?"
DOUBT_STEERING = "What steering does: does a direction learned on the original stories help beyond them?"
DOUBT_MINDS = "Several minds: do the belief heads read the beliefs of three characters, first and second order?"


def _difference_rule(informative: bool, low: float, high: float, max_width: float) -> str:
    """The rule of a difference the claim predicts to be positive, with its interval: nothing to judge
    (not ``informative``) is inconclusive; an interval above 0 supports the claim; below 0, or around 0
    and narrower than ``max_width``, undermines it; a wide interval around 0 is inconclusive."""
    if not informative:
        return VERDICTS[2]
    if low > 0:
        return VERDICTS[0]
    if high < 0 or high - low <= max_width:
        return VERDICTS[1]
    return VERDICTS[2]


def _per_sample(correct: pd.DataFrame, condition: str, k: int) -> np.ndarray:
    """Each validation sample's accuracy under one condition and pool size, averaged over draws."""
    rows = correct[(correct["condition"] == condition) & (correct["k"] == k)]
    if rows.empty:
        raise ValueError(f"no {condition} probes with k={k} in the decodability results")
    return rows.groupby("sample")["correct"].mean().sort_index().to_numpy(dtype=float)


def clustered_ci(values: np.ndarray, stories: np.ndarray | None, *, n_boot: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean of ``values``, resampling whole stories when ``stories`` is
    given (samples of one story are not independent), single values otherwise."""
    if stories is None:
        return bootstrap_ci(values, n_boot=n_boot, seed=seed)
    w = story_weights(np.asarray(stories), n_boot, np.random.default_rng(seed))
    return percentile_interval(np.asarray(values, dtype=float) @ w)


def decodability_verdict(correct: pd.DataFrame, *, few: int = 4, n_boot: int = 1000, seed: int = 0,
                         max_width: float = 0.2, margin: float = 0.1) -> dict[str, Any]:
    """Doubt 1's row. Statistic: accuracy of the best single head (chosen on training data) minus the
    mean accuracy of random pools of ``few`` heads (the largest pool size not above ``few``), paired
    over validation samples, with a percentile bootstrap interval over their stories.

    Rules: if the best head is within ``margin`` of chance, nothing decodes, so "inconclusive at this
    scale"; an interval above 0 "supports the claim" (one head carries more than a few random ones);
    below 0, or containing 0 while narrower than ``max_width``, "undermines it" (random pools do as
    well); an interval containing 0 and wider than ``max_width`` is "inconclusive at this scale".
    """
    sizes = sorted(int(k) for k in correct.loc[correct["condition"] == "random_heads", "k"].unique())
    pool = max([k for k in sizes if k <= few], default=None)
    if pool is None:
        raise ValueError("the decodability results have no random-head pools")
    best = _per_sample(correct, "best_head", 1)
    rand = _per_sample(correct, "random_heads", pool)
    diff = best - rand
    stories = None
    if "story" in correct.columns:
        stories = correct[correct["condition"] == "best_head"].groupby("sample")["story"].first().sort_index().to_numpy()
    low, high = clustered_ci(diff, stories, n_boot=n_boot, seed=seed)
    enough = stories is None or len(np.unique(stories)) >= MIN_STORIES
    verdict = _difference_rule(enough and best.mean() > chance_level(correct) + margin, low, high, max_width)
    layer = correct[correct["condition"] == "layer"].groupby("draw")["correct"].mean()
    evidence = (f"best head {best.mean():.2f} vs {pool} random heads {rand.mean():.2f} on {len(best)} validation "
                f"samples; best whole layer {layer.max():.2f}" if len(layer) else
                f"best head {best.mean():.2f} vs {pool} random heads {rand.mean():.2f} on {len(best)} samples")
    return {"doubt": DOUBT_SIMPLE,
            "experiment": f"decodability curve: the best single head (chosen on training data) against random pools "
                          f"of {pool} heads",
            "statistic": f"accuracy(best head) - accuracy({pool} random heads)", "estimate": float(diff.mean()),
            "ci_low": low, "ci_high": high, "verdict": verdict, "evidence": evidence}


def _stat(stats: pd.DataFrame, shift: str) -> pd.Series | None:
    rows = stats[stats["shift"] == shift]
    return None if rows.empty else rows.iloc[0]


def _above(estimate: float, low: float, chance: float, margin: float) -> bool:
    """A read-out that decodes: ``margin`` above chance, its interval ``margin / 2`` above it."""
    return estimate > chance + margin and low > chance + margin / 2


def _decodes(stats: pd.DataFrame, margin: float) -> bool:
    """Whether the top heads read the label off the original validation samples at all."""
    original = _stat(stats, "original")
    return (original is not None and original["n_stories"] >= MIN_STORIES
            and _above(original["top_acc"], original["top_acc_low"], original["chance"], margin))


def specific_verdict(stats: pd.DataFrame, *, shift: str = "generated", high: float = 0.5, low: float = 0.2,
                     margin: float = 0.1, reliable: float = 0.5) -> dict[str, Any] | None:
    """Doubt 2's row, from :func:`tomlab.stress.transfer.transfer_stats`. Statistic: the Spearman
    correlation between the per-head accuracy maps on the original validation stories and on other
    stories (probes trained on the originals), with its bootstrap interval.

    Rules, in this order: if the top heads do not decode the originals (``margin`` above chance, their
    interval ``margin / 2`` above it), or the originals' own map is mostly noise (its split-half
    reliability, ``spearman_ceiling``, below ``reliable``: no correlation with another map could show
    much), "inconclusive at this scale"; an interval above ``high`` "supports the claim" (the same
    heads respond elsewhere); one below ``low`` "undermines it"; anything else is inconclusive. None
    when the shift was not run."""
    row = _stat(stats, shift)
    if row is None:
        return None
    if not _decodes(stats, margin) or not row["spearman_ceiling"] >= reliable:
        verdict = VERDICTS[2]
    elif row["spearman_low"] > high:
        verdict = VERDICTS[0]
    elif row["spearman_high"] < low:
        verdict = VERDICTS[1]
    else:
        verdict = VERDICTS[2]
    original = _stat(stats, "original")
    evidence = (f"top-{int(row['top_k'])} heads {original['top_acc']:.2f} on the originals, {row['top_acc']:.2f} on "
                f"{int(row['n'])} samples of other stories; top-{int(row['top_k'])} overlap (Jaccard) "
                f"{row['jaccard']:.2f} [{row['jaccard_low']:.2f}, {row['jaccard_high']:.2f}]; the originals' map agrees "
                f"with itself at {row['spearman_ceiling']:.2f} (split-half reliability), their top heads at Jaccard "
                f"{row['jaccard_ceiling']:.2f} between halves")
    return {"doubt": DOUBT_SPECIFIC,
            "experiment": "probes trained on the original stories, tested unchanged on other stories: do the same "
                          "heads rank high?",
            "statistic": "Spearman correlation of the per-head accuracy maps (originals vs other stories)",
            "estimate": float(row["spearman"]), "ci_low": float(row["spearman_low"]),
            "ci_high": float(row["spearman_high"]), "verdict": verdict, "evidence": evidence}


def tokens_verdict(stats: pd.DataFrame, *, pool: str = "decoys", margin: float = 0.1) -> dict[str, Any] | None:
    """Doubt 3's row. Statistic: on the decoys (the words of one belief, the other belief), the top
    heads' accuracy minus the lexical baseline's, paired over samples.

    Rules, in this order: if the top heads do not decode the originals (``margin`` above chance, their
    interval ``margin / 2`` above it), "inconclusive at this scale"; an interval above 0 with the heads'
    interval on the decoys ``margin / 2`` above chance "supports the claim" (they track the belief where
    the words mislead); the heads' interval on the decoys below chance "undermines it" (they follow the
    words to the wrong belief, as a word detector does); anything else is inconclusive (with the
    protagonist's label the bag of words sits at chance by construction, so the margin alone cannot tell
    a weak belief signal from a word detector). None when no decoy was run."""
    row = _stat(stats, pool)
    if row is None:
        return None
    if not _decodes(stats, margin):
        verdict = VERDICTS[2]
    elif row["margin_low"] > 0 and row["top_acc_low"] > row["chance"] + margin / 2:
        verdict = VERDICTS[0]
    elif row["top_acc_high"] < row["chance"]:
        verdict = VERDICTS[1]
    else:
        verdict = VERDICTS[2]
    kept = _stat(stats, "kept_belief")
    evidence = (f"decoys: heads {row['top_acc']:.2f} vs words {row['lexical_acc']:.2f} on {int(row['n'])} samples "
                f"(the same stories unperturbed: heads {row['original_top_acc']:.2f})")
    if kept is not None:
        evidence += (f"; perturbations that keep the belief: heads {kept['top_acc']:.2f} vs words "
                     f"{kept['lexical_acc']:.2f} (drop {kept['drop']:+.2f} from the originals)")
    return {"doubt": DOUBT_TOKENS,
            "experiment": f"perturbed stories: the top-{int(row['top_k'])} heads and the lexical baseline, both "
                          "trained on the originals, on decoys whose words and belief disagree",
            "statistic": "accuracy(top heads) - accuracy(bag of words) on the decoys",
            "estimate": float(row["margin"]), "ci_low": float(row["margin_low"]), "ci_high": float(row["margin_high"]),
            "verdict": verdict, "evidence": evidence}


def minds_verdict(stats: pd.DataFrame, behaviour: pd.DataFrame | None = None, *,
                  margin: float = 0.1) -> dict[str, Any]:
    """Doubt 4's row, from :func:`tomlab.stress.minds_probes.minds_stats` (and the scored stress items
    of ``tomlab stress-behaviour``, whose several-minds answers go into the evidence). Statistic: the forward-belief top heads,
    refitted on the first-order beliefs of three minds, their accuracy minus chance.

    Rules, in this order: if no head decodes the three minds' beliefs (the best head, chosen on the inner split, not
    ``margin`` above chance with its interval ``margin / 2`` above it), "inconclusive at this scale";
    an interval above ``margin / 2`` "supports the claim" (the belief heads read several minds); an
    interval below ``margin`` while the best head decodes "undermines it" (the belief heads do not
    decode it, other heads do); anything else is inconclusive."""
    first = stats[stats["group"] == "first_order"]
    if first.empty:
        raise ValueError("the several-minds statistics have no first_order group")
    r = first.iloc[0]
    est, low, high = (float(r[c]) - float(r["chance"]) for c in ("belief_heads_acc", "belief_heads_low",
                                                                  "belief_heads_high"))
    if r["n_stories"] < MIN_STORIES or not _above(r["best_acc"], r["best_low"], r["chance"], margin):
        verdict = VERDICTS[2]
    elif low > margin / 2:
        verdict = VERDICTS[0]
    elif high < margin:
        verdict = VERDICTS[1]
    else:
        verdict = VERDICTS[2]
    second = stats[stats["group"] == "second_order"]
    evidence = (f"first order: belief heads {r['belief_heads_acc']:.2f}, best head {r['best_head']} {r['best_acc']:.2f}, "
                f"top-{int(r['top_k'])} overlap with the belief heads {r['jaccard']:.2f}, on {int(r['n_stories'])} "
                "validation stories")
    if not second.empty:
        s = second.iloc[0]
        evidence += f"; second order: belief heads {s['belief_heads_acc']:.2f}, best head {s['best_acc']:.2f}"
    if behaviour is not None:
        minds = behaviour[(behaviour["set"] == "minds") & (behaviour["direction"] == "none")]
        answers = [f"{task.removeprefix('minds_').replace('_', ' ')} "
                   f"{minds.loc[minds['task'] == task, col].astype(float).mean():.2f} ({mode})"
                   for mode, col in _MODE_COLUMNS.items() if col in minds.columns
                   for task in sorted(minds["task"].unique())]
        if answers:
            evidence += "; answers: " + ", ".join(answers)
    return {"doubt": DOUBT_MINDS,
            "experiment": "stories with three characters (one sees the change, one does not, one is told); per-head "
                          "probes for each kind of belief, and the model's answers to first- and second-order questions",
            "statistic": "accuracy(forward-belief top heads on first-order beliefs of three minds) - chance",
            "estimate": est, "ci_low": low, "ci_high": high, "verdict": verdict, "evidence": evidence}


def steering_verdict(behaviour: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
                     max_width: float = 0.2) -> dict[str, Any] | None:
    """Doubt 5's row, from the scored stress items. Statistic: on the false-belief items of the perturbed
    stories (every perturbation pooled, the GSM-Symbolic draws included), the steered accuracy minus the
    plain accuracy, paired per item (the interval resamples stories: the draws of names share theirs), in
    the first scoring mode present of log-likelihood and generation.

    Rules: if the direction does not raise the original false-belief items themselves (their paired
    interval not above 0), there is nothing to transfer: "inconclusive at this scale"; otherwise an
    interval above 0 "supports the claim" (the direction helps beyond the stories it was learned on);
    below 0, or containing 0 while narrower than ``max_width``, "undermines it"; anything else is
    inconclusive. None when nothing was steered."""
    steered = behaviour[behaviour["direction"] != "none"]
    if steered.empty:
        return None
    mode, col = next(((m, c) for m, c in _MODE_COLUMNS.items() if c in behaviour.columns), (None, None))
    if col is None:
        return None
    plain = behaviour[behaviour["direction"] == "none"].set_index("item_id")[col].astype(float)

    def delta(rows: pd.DataFrame) -> np.ndarray:
        return rows[col].astype(float).to_numpy() - plain.loc[rows["item_id"]].to_numpy()

    fb = steered[(steered["condition"] == "false_belief") & ~steered["set"].isin(["original", "minds"])]
    if fb.empty:
        return None
    d = delta(fb)
    low, high = clustered_ci(d, fb["origin_story"].to_numpy(), n_boot=n_boot, seed=seed)
    original = steered[(steered["set"] == "original") & (steered["condition"] == "false_belief")]
    moves = len(original) > 0 and clustered_ci(delta(original), original["origin_story"].to_numpy(), n_boot=n_boot,
                                               seed=seed)[0] > 0
    enough = fb["origin_story"].nunique() >= MIN_STORIES
    verdict = _difference_rule(moves and enough, low, high, max_width)
    parts = [f"perturbed false-belief items {d.mean():+.2f} on {len(d)} items"]
    for name, label in (("original", "the original false-belief items"), ("minds", "several-minds items")):
        rows = steered[(steered["set"] == name) & ((steered["condition"] == "false_belief") | (name == "minds"))]
        if len(rows):
            parts.append(f"{label} {delta(rows).mean():+.2f} on {len(rows)}")
    kind = str(steered["direction"].iloc[0])
    return {"doubt": DOUBT_STEERING,
            "experiment": f"the {kind} direction learned on the original stories, applied to perturbed stories and "
                          f"several-minds stories ({mode})",
            "statistic": "accuracy(steered) - accuracy(plain), false-belief items of the perturbed stories",
            "estimate": float(d.mean()), "ci_low": low, "ci_high": high, "verdict": verdict,
            "evidence": "; ".join(parts)}


def transfer_verdicts(stats: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of doubts 2 and 3 that the shifts run allow."""
    return [r for r in (specific_verdict(stats), tokens_verdict(stats)) if r is not None]


def verdict_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The verdict rows as a frame with :data:`COLUMNS` (a bad verdict is refused)."""
    for row in rows:
        if row["verdict"] not in VERDICTS:
            raise ValueError(f"unknown verdict {row['verdict']!r}; known: {VERDICTS}")
    return pd.DataFrame([{c: row[c] for c in COLUMNS} for row in rows], columns=list(COLUMNS))
