"""The report's team-game section: ours beside the paper's, ToM accuracy, a transcript excerpt, commentary."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.manifest import Manifest
from tomlab.report.common import md_text
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
    return io.read_parquet(m.path("team_episodes"))


# Which of our rows each paper row is compared with (like for like: the same kind of team).
_GROUP = {"random": 0, "planner": 1, "mappo": 2, "llm": 3, "llm_belief": 4,
          "CBS planner": 1, "MAPPO": 2, "ChatGPT": 3, "GPT-4": 3, "GPT-4 + belief": 4}
_PAPER_MODEL = {"ChatGPT": "ChatGPT", "GPT-4": "GPT-4", "GPT-4 + belief": "GPT-4"}


def llm_model(setup: Mapping[str, Any] | None) -> str:
    """The model the LLM teams of this run played: ``team.model`` (or the main model), and any agent's own."""
    if not setup:
        return "the configured model"
    from tomlab.report.protocol import _spec_name

    team = (setup.get("config") or {}).get("team") or {}
    name = _spec_name(team.get("model"), setup)
    own = {a: _spec_name(spec, setup) for a, spec in (team.get("agent_models") or {}).items() if spec}
    return name + "".join(f"; {a}: {n}" for a, n in own.items())


def _model_of(agent_type: str, setup: Mapping[str, Any] | None) -> str:
    return llm_model(setup) if agent_type in ("llm", "llm_belief") else "no language model"


def ours_vs_paper(m: Manifest, setup: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Our agent types and the paper's rows in one table, like for like (each kind of team beside the
    paper's), with the model each row was run with (``source`` tells ours from the paper's)."""
    ours = summary_table(episodes(m))
    kinds = list(ours["agent_type"])
    ours.insert(0, "agents", ours.pop("agent_type").map(lambda a: AGENT_NAMES.get(a, a)))
    ours.insert(1, "source", "ours")
    ours.insert(2, "model", [_model_of(a, setup) for a in kinds])
    ours["_group"] = [_GROUP.get(a, 9) for a in kinds]
    paper = PAPER_TEAM.copy()
    paper.insert(1, "source", "Li et al.")
    paper.insert(2, "model", [_PAPER_MODEL.get(a, "no language model") for a in paper["agents"]])
    paper["_group"] = [_GROUP.get(a, 9) for a in paper["agents"]]
    both = pd.concat([ours.astype(str), paper.astype(str)], ignore_index=True)
    both["_group"] = both["_group"].astype(int)
    both = both.sort_values("_group", kind="stable").drop(columns="_group").reset_index(drop=True)
    return both.where(both.notna(), "-").replace("nan", "-")


def tom_vs_paper(m: Manifest, setup: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """ToM accuracy per order, ours (with 95% intervals and the model that answered) above the paper's."""
    tom = _pooled(io.read_parquet(m.path("team_tom")))
    rows = []
    for agent_type, g in tom.groupby("agent_type", sort=False):
        row = {"agents": AGENT_NAMES.get(agent_type, agent_type), "source": "ours", "model": _model_of(agent_type, setup)}
        for r in g.itertuples():
            row[ORDER_NAMES.get(r.order, r.order)] = f"{r.accuracy:.1%} [{r.ci_low:.0%}, {r.ci_high:.0%}]"
        rows.append(row)
    for rec in PAPER_TOM.to_dict("records"):
        rows.append({"agents": rec["agents"], "source": "Li et al.", "model": _PAPER_MODEL[rec["agents"]],
                     **{o: f"{rec[o]:.1f}%" for o in ("introspection", "first-order", "second-order")}})
    cols = ["agents", "source", "model", "introspection", "first-order", "second-order"]
    out = pd.DataFrame(rows).reindex(columns=cols).astype(object)
    return out.where(out.notna(), "-")


TOPIC_NAMES = {"all": "all topics", "room": "room contents", "bomb_change": "bomb changed", "sequence": "bomb sequence"}


def _pooled(tom: pd.DataFrame) -> pd.DataFrame:
    """The rows pooled over ToM topics (the paper's table); a table without topics is pooled already."""
    return tom[tom["topic"] == "all"] if "topic" in tom else tom


def tom_display(m: Manifest) -> pd.DataFrame:
    """Every (agent, topic, order) cell: accuracy beside always-majority, the yes shares, unparseable."""
    tom = io.read_parquet(m.path("team_tom"))
    if tom.empty:
        return tom
    topic = tom["topic"] if "topic" in tom else pd.Series("all", index=tom.index)
    out = pd.DataFrame({
        "agents": tom["agent_type"].map(lambda a: AGENT_NAMES.get(a, a)),
        "topic": topic.map(lambda t: TOPIC_NAMES.get(t, t)),
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


def _ended(g: pd.DataFrame) -> str:
    """How a team's unfinished episodes ended: deadlock (the paper's stop), stall, or the round limit."""
    dead = int(g["deadlocked"].sum()) if "deadlocked" in g else 0
    stalled = int(g["stalled"].sum()) if "stalled" in g else 0
    parts = [(f"{dead} of {len(g)} episodes ended in a deadlock (recorded at the round limit with the score "
              "they had)")]
    if stalled:
        parts.append(f"{stalled} because nothing changed for the configured number of rounds")
    return "; ".join(parts)


def team_commentary(m: Manifest, setup: Mapping[str, Any] | None = None) -> str:
    """What the team-game numbers say, generated from them."""
    eps = episodes(m)
    out: list[str] = []
    by = {a: g for a, g in eps.groupby("agent_type")}
    llm_rows = [AGENT_NAMES[a] for a in ("llm", "llm_belief") if a in by]
    out.append("**Which model played which row.** Our random, planner and MAPPO rows involve no language model"
               + (f"; our {' and '.join(llm_rows)} rows were played by {md_text(llm_model(setup))}" if llm_rows else "")
               + ". The paper's LLM rows were played by ChatGPT and GPT-4, so only the baselines are like for like "
               "in model as well as in rules.")
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
        mp = by["mappo"]
        curve_path = m.get("team_curve")
        trained = ""
        if curve_path is not None and curve_path.exists():
            curve = io.read_parquet(curve_path)
            if len(curve):
                tail = curve.tail(max(1, len(curve) // 10))
                wall = (f" in {curve['wall_s'].max() / 60:.1f} minutes on this machine"
                        if "wall_s" in curve and curve["wall_s"].notna().any() else "")
                trained = (f" after {int(curve['timestep'].max()):,} training rounds{wall} (the paper trained for 45 "
                           f"million steps; {len(curve):,} training episodes, the last tenth averaging "
                           f"{tail['score'].mean():.0f} points)")
        rnd = by.get("random")
        versus = (f", against random agents' {rnd['score'].mean():.0f} on the same layouts" if rnd is not None else "")
        out.append(f"**MAPPO**{trained} scores {mp['score'].mean():.0f} ± "
                   f"{mp['score'].std(ddof=1) if len(mp) > 1 else 0:.0f} in {mp['rounds'].mean():.1f} rounds on the "
                   f"evaluation layouts{versus}; the paper's MAPPO reached 90 in 11 rounds. Whether the gap is our CPU "
                   "training budget or a difference in setup is not tested here; the learning curve shows whether "
                   "training had levelled off.")
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
                   f"action; {_ended(g)}.")
    if "llm" in by and "llm_belief" in by:
        d = by["llm_belief"]["score"].mean() - by["llm"]["score"].mean()
        out.append(f"The explicit belief state changes the mean score by {d:+.0f} points over {len(by['llm'])} "
                   "seeds; with this few episodes that difference is only meaningful if it is larger than the "
                   "spread between seeds in the table.")
    tom_path = m.get("team_tom")
    if tom_path is not None and tom_path.exists():
        tom = io.read_parquet(tom_path)
        if not tom.empty:
            tom = _pooled(tom)
            worse = tom[tom["accuracy"] <= tom["majority_baseline"] + 1e-9]
            out.append(f"**Theory of mind.** {int(tom['n'].sum())} questions were asked in all (after the moves, "
                       f"inspections and cuts the rules variant asks about). In {len(worse)} of {len(tom)} (agent, order) cells the answers are no "
                       "more accurate than always giving the majority answer, so there accuracy says nothing about "
                       "theory of mind; the 'said yes' column shows whether the model answers the question at all "
                       "or just repeats one word.")
    return "\n\n".join(out)
