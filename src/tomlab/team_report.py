"""Tables, figures and commentary for the team game (the report's "Team game" section).

Numbers set against ours are Li et al.'s (EMNLP 2023) as quoted in this project's issue: their
Table 1 (score, rounds, valid-action rate) and their ToM accuracies (introspection, first- and
second-order). Our agents are different models, so the comparison is of the shape of the results
(does a belief state help, does ToM degrade with order), not of the values.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from tomlab.team_agents import TOM_ORDERS

AGENT_NAMES = {
    "random": "random",
    "planner": "centralised planner",
    "mappo": "MAPPO",
    "llm": "LLM",
    "llm_belief": "LLM + belief",
}
ORDER_NAMES = {"introspection": "introspection", "first_order": "first-order", "second_order": "second-order"}

# Li et al. (EMNLP 2023), as quoted in the issue: score, rounds, valid actions.
PAPER_TEAM = pd.DataFrame([
    {"agents": "ChatGPT", "score": "43 ± 4.7", "rounds": "30.0", "valid actions": "62.5%"},
    {"agents": "GPT-4", "score": "90 ± 0", "rounds": "28.3 ± 2.6", "valid actions": "71.8%"},
    {"agents": "GPT-4 + belief", "score": "90 ± 0", "rounds": "12.3 ± 2.0", "valid actions": "86.1%"},
    {"agents": "MAPPO", "score": "90 ± 0", "rounds": "11.0 ± 0.0", "valid actions": "-"},
    {"agents": "CBS planner", "score": "90 ± 0", "rounds": "6.0 ± 0.0", "valid actions": "-"},
    {"agents": "random", "score": "38 ± 14.7", "rounds": "30.0", "valid actions": "-"},
])
PAPER_TOM = pd.DataFrame([
    {"agents": "ChatGPT", "introspection": 79.0, "first-order": 41.9, "second-order": 11.6},
    {"agents": "GPT-4", "introspection": 80.0, "first-order": 60.0, "second-order": 64.3},
    {"agents": "GPT-4 + belief", "introspection": 97.2, "first-order": 80.1, "second-order": 69.4},
])


def _mean_sd(x: pd.Series, digits: int = 1) -> str:
    x = x.dropna()
    if x.empty:
        return "-"
    sd = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    return f"{x.mean():.{digits}f} ± {sd:.{digits}f}"


def summary_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Per agent type over its seeds: score and rounds (mean ± sd), the share of episodes that
    defused everything, the valid-action rate (pooled over actions) and tokens per episode."""
    rows = []
    for agent_type, g in episodes.groupby("agent_type", sort=False):
        actions = g["actions"].sum()
        rows.append({
            "agent_type": agent_type,
            "episodes": len(g),
            "score": _mean_sd(g["score"]),
            "rounds": _mean_sd(g["rounds"]),
            "completed": f"{g['complete'].mean():.0%}",
            "valid actions": f"{g['valid_actions'].sum() / actions:.1%}" if actions else "-",
            "tokens / episode": f"{g['total_tokens'].mean():,.0f}" if g["total_tokens"].sum() else "-",
        })
    order = {a: i for i, a in enumerate(AGENT_NAMES)}
    out = pd.DataFrame(rows)
    return out.sort_values("agent_type", key=lambda s: s.map(lambda a: order.get(a, 99))).reset_index(drop=True)


def _bootstrap(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    if len(values) == 0:
        return float("nan"), float("nan")
    means = rng.choice(values, size=(n_boot, len(values)), replace=True).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def tom_table(tom: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Accuracy per agent type and order with a 95% bootstrap interval, the unparseable rate, the
    share of questions whose true answer is yes, and the accuracy of always giving the majority
    answer (what a model that ignores the question would get)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (agent_type, order), g in tom.groupby(["agent_type", "order"], sort=False):
        correct = g["correct"].astype(float).to_numpy()
        low, high = _bootstrap(correct, n_boot, rng)
        yes = float(g["truth"].astype(float).mean())
        rows.append({"agent_type": agent_type, "order": order, "n": len(g), "accuracy": float(correct.mean()),
                     "ci_low": low, "ci_high": high, "unparseable": float(g["parsed"].isna().mean()),
                     "truth_yes": yes, "majority_baseline": max(yes, 1 - yes),
                     "said_yes": float((g["parsed"] == True).mean())})  # noqa: E712 (object column)
    cols = ["agent_type", "order", "n", "accuracy", "ci_low", "ci_high", "unparseable", "truth_yes",
            "majority_baseline", "said_yes"]
    out = pd.DataFrame(rows, columns=cols)
    if not out.empty:
        out["order"] = pd.Categorical(out["order"], categories=list(TOM_ORDERS), ordered=True)
        out = out.sort_values(["agent_type", "order"]).reset_index(drop=True)
        out["order"] = out["order"].astype(str)
    return out


# ------------------------------------------------------------------------------- report helpers


def _path(results: str | os.PathLike[str], *parts: str) -> Path:
    return Path(results).joinpath("team", *parts)


def available(results: str | os.PathLike[str]) -> bool:
    return _path(results, "episodes.parquet").exists()


def episodes(results: str | os.PathLike[str]) -> pd.DataFrame:
    return pd.read_parquet(_path(results, "episodes.parquet"))


def ours_vs_paper(results: str | os.PathLike[str]) -> pd.DataFrame:
    """Our agent types and the paper's rows in one table (a ``source`` column tells them apart)."""
    ours = summary_table(episodes(results))
    ours.insert(0, "agents", ours.pop("agent_type").map(lambda a: AGENT_NAMES.get(a, a)))
    ours.insert(1, "source", "ours")
    paper = PAPER_TEAM.copy()
    paper.insert(1, "source", "Li et al.")
    both = pd.concat([ours.astype(str), paper.astype(str)], ignore_index=True)
    return both.where(both.notna(), "-")


def tom_vs_paper(results: str | os.PathLike[str]) -> pd.DataFrame:
    """ToM accuracy per order, ours (with 95% intervals) above the paper's."""
    tom = pd.read_parquet(_path(results, "tom_accuracy.parquet"))
    rows = []
    for agent_type, g in tom.groupby("agent_type", sort=False):
        row = {"agents": AGENT_NAMES.get(agent_type, agent_type), "source": "ours"}
        for r in g.itertuples():
            row[ORDER_NAMES.get(r.order, r.order)] = f"{r.accuracy:.1%} [{r.ci_low:.0%}, {r.ci_high:.0%}]"
        rows.append(row)
    for rec in PAPER_TOM.to_dict("records"):
        rows.append({"agents": rec["agents"], "source": "Li et al.",
                     **{o: f"{rec[o]:.1f}%" for o in ("introspection", "first-order", "second-order")}})
    cols = ["agents", "source", "introspection", "first-order", "second-order"]
    out = pd.DataFrame(rows).reindex(columns=cols).astype(object)
    return out.where(out.notna(), "-")


def tom_display(results: str | os.PathLike[str]) -> pd.DataFrame:
    tom = pd.read_parquet(_path(results, "tom_accuracy.parquet"))
    if tom.empty:
        return tom
    out = pd.DataFrame({
        "agents": tom["agent_type"].map(lambda a: AGENT_NAMES.get(a, a)),
        "order": tom["order"].map(lambda o: ORDER_NAMES.get(o, o)),
        "n": tom["n"],
        "accuracy [95% CI]": [f"{a:.0%} [{lo:.0%}, {hi:.0%}]" for a, lo, hi in
                              zip(tom["accuracy"], tom["ci_low"], tom["ci_high"])],
        "always-majority": [f"{m:.0%}" for m in tom["majority_baseline"]],
        "true answer yes": [f"{y:.0%}" for y in tom["truth_yes"]],
        "said yes": [f"{y:.0%}" for y in tom["said_yes"]],
        "unparseable": [f"{u:.0%}" for u in tom["unparseable"]],
    })
    return out


def first_transcript(results: str | os.PathLike[str]) -> tuple[str, Path] | None:
    """The first transcript of an LLM agent type (belief agents first), if there is one."""
    for agent in ("llm_belief", "llm"):
        folder = _path(results, agent, "transcripts")
        files = sorted(folder.glob("seed*.jsonl")) if folder.is_dir() else []
        if files:
            return agent, files[0]
    return None


def transcript_excerpt(path: str | os.PathLike[str], max_turns: int = 3, max_chars: int = 700) -> str:
    """The first few action turns of a transcript: what the agent read (its last message) and
    what it replied, and what the game made of it."""
    import json

    turns: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("kind") == "action" and "prompt" in row:
            prompt = row["prompt"][-1]["content"] if isinstance(row["prompt"], list) else str(row["prompt"])
            now = prompt.split("Now:\n", 1)[-1].split("\n\nChoose one of the actions", 1)[0]
            turns.append(f"[{row['agent']}, round {row['round']}] reads:\n{now[:max_chars]}\n"
                         f"replies:\n{str(row['completion']).strip()[:max_chars]}\n"
                         f"game: {row['feedback']}")
            if len(turns) >= max_turns:
                break
    return "\n\n".join(turns)


def team_commentary(results: str | os.PathLike[str]) -> str:
    """What the team-game numbers say, generated from them."""
    eps = episodes(results)
    out: list[str] = []
    by = {a: g for a, g in eps.groupby("agent_type")}
    if "planner" in by:
        p = by["planner"]
        out.append(f"**Planner.** With full information the joint optimum takes {p['rounds'].mean():.1f} rounds on "
                   f"average here (range {p['rounds'].min()}-{p['rounds'].max()}), against the paper's 6.0 for CBS: "
                   "an exact search over the joint state is the lower bound any team can reach on these layouts.")
    if "random" in by:
        r = by["random"]
        out.append(f"**Random** agents score {r['score'].mean():.0f} ± {r['score'].std(ddof=1) if len(r) > 1 else 0:.0f} "
                   "(paper: 38 ± 14.7), the floor every learned or prompted team has to clear.")
    if "mappo" in by:
        m = by["mappo"]
        curve_path = _path(results, "mappo", "learning_curve.parquet")
        trained = ""
        if curve_path.exists():
            curve = pd.read_parquet(curve_path)
            if len(curve):
                tail = curve.tail(max(1, len(curve) // 10))
                trained = (f" after {int(curve['timestep'].max()):,} training rounds ({len(curve):,} episodes; the last "
                           f"tenth of training averaged {tail['score'].mean():.0f} points)")
        out.append(f"**MAPPO**{trained} scores {m['score'].mean():.0f} ± {m['score'].std(ddof=1) if len(m) > 1 else 0:.0f} "
                   f"in {m['rounds'].mean():.1f} rounds on the evaluation layouts, against the paper's 90 in 11 rounds. "
                   "Whether the gap is our CPU training budget or a difference in setup is not tested here; the "
                   "learning curve shows whether training had levelled off.")
    for llm in ("llm", "llm_belief"):
        if llm not in by:
            continue
        g = by[llm]
        rnd = by.get("random")
        beat = ""
        if rnd is not None:
            diff = g["score"].mean() - rnd["score"].mean()
            pooled = math.sqrt((g["score"].var(ddof=1) if len(g) > 1 else 0) / len(g)
                               + (rnd["score"].var(ddof=1) if len(rnd) > 1 else 0) / len(rnd))
            verdict = ("within noise of" if abs(diff) <= 2 * pooled or pooled == 0 and diff == 0
                       else ("above" if diff > 0 else "below"))
            beat = f", {verdict} the random team"
        out.append(f"**{AGENT_NAMES[llm]}** agents score {g['score'].mean():.0f} on average{beat}, with "
                   f"{g['valid_actions'].sum() / max(g['actions'].sum(), 1):.0%} of their replies naming a legal "
                   f"action; {int(g['stalled'].sum())} of {len(g)} episodes ended because the team stalled.")
    if "llm" in by and "llm_belief" in by:
        d = by["llm_belief"]["score"].mean() - by["llm"]["score"].mean()
        out.append(f"The explicit belief state changes the mean score by {d:+.0f} points over {len(by['llm'])} "
                   "seeds; with this few episodes that difference is only meaningful if it is larger than the "
                   "spread between seeds in the table.")
    tom_path = _path(results, "tom_accuracy.parquet")
    if tom_path.exists():
        tom = pd.read_parquet(tom_path)
        if not tom.empty:
            worse = tom[tom["accuracy"] <= tom["majority_baseline"] + 1e-9]
            out.append(f"**Theory of mind.** {int(tom['n'].sum())} questions were asked in all (only after a valid "
                       f"move, inspection or cut). In {len(worse)} of {len(tom)} (agent, order) cells the answers are no "
                       "more accurate than always giving the majority answer, so there accuracy says nothing about "
                       "theory of mind; the 'said yes' column shows whether the model answers the question at all "
                       "or just repeats one word.")
    return "\n\n".join(out)
