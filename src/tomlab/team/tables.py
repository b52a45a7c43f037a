"""Team-game tables: score, rounds and valid actions per agent type; ToM accuracy per order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tomlab.stats import bootstrap_ci
from tomlab.team import AGENT_TYPES
from tomlab.team.epistemic import TOM_ORDERS, TOM_TOPICS


def _mean_sd(x: pd.Series, digits: int = 1) -> str:
    x = x.dropna()
    if x.empty:
        return "-"
    sd = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    return f"{x.mean():.{digits}f} ± {sd:.{digits}f}"


def summary_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Per agent type over its seeds: score and rounds (mean ± sd), the share of episodes that
    defused everything and the share that ended in a deadlock, the valid-action rate (pooled over actions) and tokens per episode."""
    rows = []
    for agent_type, g in episodes.groupby("agent_type", sort=False):
        actions = g["actions"].sum()
        rows.append({
            "agent_type": agent_type,
            "episodes": len(g),
            "score": _mean_sd(g["score"]),
            "rounds": _mean_sd(g["rounds"]),
            "completed": f"{g['complete'].mean():.0%}",
            "deadlocked": f"{g['deadlocked'].mean():.0%}" if "deadlocked" in g else "-",
            "valid actions": f"{g['valid_actions'].sum() / actions:.1%}" if actions else "-",
            "tokens / episode": f"{g['total_tokens'].mean():,.0f}" if g["total_tokens"].sum() else "-",
        })
    order = {a: i for i, a in enumerate(AGENT_TYPES)}
    out = pd.DataFrame(rows)
    return out.sort_values("agent_type", key=lambda s: s.map(lambda a: order.get(a, 99))).reset_index(drop=True)


def tom_table(tom: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Accuracy per agent type and order with a 95% bootstrap interval, the unparseable rate, the
    share of questions whose true answer is yes, and the accuracy of always giving the majority
    answer (what a model that ignores the question would get). ``topic`` is ``"all"`` for the rows
    pooled over the ToM topics (the paper's table), then one row per topic (room contents, bomb
    change, sequence) where the questions have a ``topic`` column."""
    rng = np.random.default_rng(seed)
    rows = []
    pooled = tom.assign(topic="all")
    parts = [pooled] + ([tom] if "topic" in tom and not tom.empty else [])
    for (agent_type, topic, order), g in pd.concat(parts).groupby(["agent_type", "topic", "order"], sort=False):
        correct = g["correct"].astype(float).to_numpy()
        low, high = bootstrap_ci(correct, n_boot=n_boot, rng=rng)
        yes = float(g["truth"].astype(float).mean())
        rows.append({"agent_type": agent_type, "topic": topic, "order": order, "n": len(g),
                     "accuracy": float(correct.mean()), "ci_low": low, "ci_high": high,
                     "unparseable": float(g["parsed"].isna().mean()), "truth_yes": yes,
                     "majority_baseline": max(yes, 1 - yes), "said_yes": float((g["parsed"] == True).mean())})
    cols = ["agent_type", "topic", "order", "n", "accuracy", "ci_low", "ci_high", "unparseable", "truth_yes",
            "majority_baseline", "said_yes"]
    out = pd.DataFrame(rows, columns=cols)
    if not out.empty:
        out["order"] = pd.Categorical(out["order"], categories=list(TOM_ORDERS), ordered=True)
        out["topic"] = pd.Categorical(out["topic"], categories=["all", *TOM_TOPICS], ordered=True)
        out = out.sort_values(["agent_type", "topic", "order"]).reset_index(drop=True)
        out["order"] = out["order"].astype(str)
        out["topic"] = out["topic"].astype(str)
    return out
