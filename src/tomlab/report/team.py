"""The report's team-game section: ours beside the paper's, ToM accuracy, a transcript excerpt, commentary."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from tomlab.manifest import Manifest
from tomlab.team.tables import summary_table

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


def available(m: Manifest) -> bool:
    """Whether the team game's episodes (the manifest's ``team_episodes``) exist."""
    return m.exists("team_episodes")


def episodes(m: Manifest) -> pd.DataFrame:
    return pd.read_parquet(m.path("team_episodes"))


def ours_vs_paper(m: Manifest) -> pd.DataFrame:
    """Our agent types and the paper's rows in one table (a ``source`` column tells them apart)."""
    ours = summary_table(episodes(m))
    ours.insert(0, "agents", ours.pop("agent_type").map(lambda a: AGENT_NAMES.get(a, a)))
    ours.insert(1, "source", "ours")
    paper = PAPER_TEAM.copy()
    paper.insert(1, "source", "Li et al.")
    both = pd.concat([ours.astype(str), paper.astype(str)], ignore_index=True)
    return both.where(both.notna(), "-")


def tom_vs_paper(m: Manifest) -> pd.DataFrame:
    """ToM accuracy per order, ours (with 95% intervals) above the paper's."""
    tom = pd.read_parquet(m.path("team_tom"))
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


def tom_display(m: Manifest) -> pd.DataFrame:
    tom = pd.read_parquet(m.path("team_tom"))
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


def first_transcript(m: Manifest) -> tuple[str, Path] | None:
    """The first transcript of an LLM agent type (belief agents first), if there is one: the
    manifest's ``team_transcripts`` maps each LLM agent type to its transcript folder."""
    for agent in ("llm_belief", "llm"):
        folder = m.get("team_transcripts", agent)
        if folder is None:
            continue
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


def team_commentary(m: Manifest) -> str:
    """What the team-game numbers say, generated from them."""
    eps = episodes(m)
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
        curve_path = m.get("team_curve")
        trained = ""
        if curve_path is not None and curve_path.exists():
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
    tom_path = m.get("team_tom")
    if tom_path is not None and tom_path.exists():
        tom = pd.read_parquet(tom_path)
        if not tom.empty:
            worse = tom[tom["accuracy"] <= tom["majority_baseline"] + 1e-9]
            out.append(f"**Theory of mind.** {int(tom['n'].sum())} questions were asked in all (only after a valid "
                       f"move, inspection or cut). In {len(worse)} of {len(tom)} (agent, order) cells the answers are no "
                       "more accurate than always giving the majority answer, so there accuracy says nothing about "
                       "theory of mind; the 'said yes' column shows whether the model answers the question at all "
                       "or just repeats one word.")
    return "\n\n".join(out)
