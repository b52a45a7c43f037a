"""What each rule of a run cost: Snakemake's benchmark files (wall time, CPU time, memory) joined with
the model usage the command line writes (``tomlab --usage``), per job and per experiment.

A job is named by the path of its benchmark file below the benchmarks folder: ``<rule>.tsv`` for a
rule without wildcards, ``<rule>/<wildcards>.tsv`` for one with; its usage file, when the rule runs a
model, has the same name below the usage folder with ``.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tomlab.backends.meter import FIELDS
from tomlab.report.common import md_text

#: The columns of :func:`job_costs`, in order.
JOB_COLUMNS = ("experiment", "rule", "job", "model", "seconds", "cpu_seconds", "max_rss_mb", *FIELDS,
               "model_tokens", "tokens_per_s", "completion_tokens_per_s")

#: Snakemake's benchmark columns that the cost table keeps, and their names here.
_BENCH_COLUMNS = {"s": "seconds", "cpu_time": "cpu_seconds", "max_rss": "max_rss_mb"}


def _job_name(path: Path, root: Path) -> tuple[str, str]:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts
    return parts[0], "/".join(parts[1:])


def read_benchmark(path: str | os.PathLike[str]) -> dict[str, float]:
    """The first measurement of one Snakemake benchmark file: seconds, cpu_seconds, max_rss_mb (NaN
    where Snakemake could not measure)."""
    try:
        frame = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable Snakemake benchmark file ({err})") from err
    if frame.empty or "s" not in frame.columns:
        raise ValueError(f"{path}: a Snakemake benchmark file has a header with 's' and one row per repeat")
    row = frame.iloc[0]
    return {name: float(pd.to_numeric(row.get(col, np.nan), errors="coerce")) for col, name in _BENCH_COLUMNS.items()}


def read_usage(path: str | os.PathLike[str]) -> dict[str, int]:
    """The model counters one ``tomlab --usage`` file holds (every field of :data:`FIELDS`)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable usage file ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a usage file holds one JSON object")  # noqa: TRY004 (bad file content)
    return {field: int(data.get(field, 0) or 0) for field in FIELDS}


def job_costs(benchmarks: str | os.PathLike[str], usage: str | os.PathLike[str] | None,
              experiments: Mapping[str, str], models: Sequence[str] = (),
              per_model: Sequence[str] = ()) -> pd.DataFrame:
    """One row per job that has a benchmark file under ``benchmarks``, with its usage when it has one.

    ``experiments`` maps each rule of the workflow to its experiment (the rule file it is written
    in); benchmark files of rules the workflow no longer has are left out.  ``model_tokens`` is every
    token a model processed (prompt, completion and scored); ``tokens_per_s`` divides it, and
    ``completion_tokens_per_s`` the completion tokens, by the job's wall time.  Rows are sorted by
    experiment, rule and job.  ``model`` is the panel model a job ran (the first part of its job name,
    when that is one of ``models``), else empty: a job that runs no model, or one made once for all.  A
    job of a ``per_model`` rule (one with a model wildcard) whose model is not in ``models`` is left out:
    its file is from a model the panel no longer has, or from the layout before panels.
    """
    root = Path(benchmarks)
    usage_root = Path(usage) if usage else None
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        rule, job = _job_name(path, root)
        if rule not in experiments:
            continue
        first = job.split("/", 1)[0]
        if rule in per_model and first not in models:
            continue
        row: dict[str, object] = {"experiment": experiments[rule], "rule": rule, "job": job,
                                  "model": first if first in models else "", **read_benchmark(path)}
        used = usage_root / path.relative_to(root).with_suffix(".json") if usage_root else None
        counts = read_usage(used) if used is not None and used.is_file() else {}
        row.update({field: counts.get(field, 0) for field in FIELDS})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in JOB_COLUMNS if c not in ("model_tokens", "tokens_per_s",
                                                                              "completion_tokens_per_s")])
    for field in FIELDS:
        frame[field] = frame[field].astype("int64")
    frame["model_tokens"] = frame["prompt_tokens"] + frame["completion_tokens"] + frame["scored_tokens"]
    seconds = frame["seconds"].where(frame["seconds"] > 0)
    frame["tokens_per_s"] = (frame["model_tokens"] / seconds).where(frame["model_tokens"] > 0)
    frame["completion_tokens_per_s"] = (frame["completion_tokens"] / seconds).where(frame["completion_tokens"] > 0)
    return frame.sort_values(["experiment", "rule", "job"], ignore_index=True)[list(JOB_COLUMNS)]


def model_costs(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per panel model (its jobs' summed wall and CPU time and tokens), then the jobs made once for all."""
    rows = []
    for model, g in jobs.groupby(jobs["model"].replace("", "(shared)"), sort=False):
        rows.append({"model": model, "jobs": len(g), "minutes": g["seconds"].sum() / 60,
                     "cpu minutes": g["cpu_seconds"].sum() / 60, "model tokens": int(g["model_tokens"].sum())})
    out = pd.DataFrame(rows, columns=["model", "jobs", "minutes", "cpu minutes", "model tokens"])
    return out.sort_values("model", key=lambda s: s.eq("(shared)")).reset_index(drop=True)


def experiment_costs(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per experiment, then a ``total`` row: jobs, summed wall and CPU time, the largest resident
    memory, summed counters, and tokens per second of wall time."""
    sums = ["seconds", "cpu_seconds", *FIELDS, "model_tokens"]

    def summarise(frame: pd.DataFrame, name: str) -> dict[str, object]:
        row: dict[str, object] = {"experiment": name, "jobs": len(frame)}
        row.update({col: frame[col].sum() for col in sums})
        row["max_rss_mb"] = frame["max_rss_mb"].max()
        seconds = row["seconds"]
        row["tokens_per_s"] = row["model_tokens"] / seconds if row["model_tokens"] and seconds else np.nan
        row["completion_tokens_per_s"] = (row["completion_tokens"] / seconds
                                          if row["completion_tokens"] and seconds else np.nan)
        return row

    rows = [summarise(frame, str(name)) for name, frame in jobs.groupby("experiment", sort=True)]
    rows.append(summarise(jobs, "total"))
    return pd.DataFrame(rows)


# --- the report's Cost section --------------------------------------------------------------------

#: The default run's target: rule time of ``make reproduce`` on 2 cores (issue 16).
TARGET_MINUTES = 15.0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def _count(x: float) -> str:
    return "-" if not x or pd.isna(x) else f"{x:,.0f}"


def display_experiments(experiments: pd.DataFrame) -> pd.DataFrame:
    """The per-experiment table as the report shows it."""
    return pd.DataFrame({
        "experiment": experiments["experiment"],
        "jobs": experiments["jobs"],
        "wall (min)": [_minutes(s) for s in experiments["seconds"]],
        "CPU (min)": [_minutes(s) for s in experiments["cpu_seconds"]],
        "largest RSS (MB)": [_count(x) for x in experiments["max_rss_mb"]],
        "prompts": [_count(x) for x in experiments["prompts"]],
        "tokens generated": [_count(x) for x in experiments["completion_tokens"]],
        "tokens processed": [_count(x) for x in experiments["model_tokens"]],
        "tokens / s": [_count(x) for x in experiments["tokens_per_s"]],
    })


def display_jobs(jobs: pd.DataFrame, n: int = 12) -> pd.DataFrame:
    """The ``n`` longest jobs."""
    top = jobs.sort_values("seconds", ascending=False).head(n)
    return pd.DataFrame({
        "rule": top["rule"],
        "job": top["job"].replace("", "-"),
        "wall (s)": [f"{s:,.0f}" for s in top["seconds"]],
        "largest RSS (MB)": [_count(x) for x in top["max_rss_mb"]],
        "prompts": [_count(x) for x in top["prompts"]],
        "tokens generated": [_count(x) for x in top["completion_tokens"]],
        "generated / s": [_count(x) for x in top["completion_tokens_per_s"]],
        "tokens / s": [_count(x) for x in top["tokens_per_s"]],
    })


def token_costs(debate_accuracy: pd.DataFrame | None, team_episodes: pd.DataFrame | None) -> pd.DataFrame:
    """What each method's result cost in tokens, where the papers compare methods: the debate against its
    single-agent baselines (tokens per question, and per correct answer: the efficiency question of
    multi-agent work such as Optima) and the team's agents (tokens per episode against the score)."""
    rows = []
    if debate_accuracy is not None:
        for r in debate_accuracy.itertuples():
            per_correct = r.tokens_per_question / r.accuracy if r.accuracy > 0 else float("nan")
            rows.append({"experiment": "debate (arithmetic)", "method": r.method, "result": f"accuracy {r.accuracy:.0%}",
                         "tokens per unit": f"{r.tokens_per_question:,.0f} / question",
                         "tokens per correct answer": "no correct answer" if pd.isna(per_correct)
                         else f"{per_correct:,.0f}"})
    if team_episodes is not None:
        for agent, g in team_episodes.groupby("agent_type", sort=False):
            tokens = float(g["total_tokens"].mean())
            rows.append({"experiment": "team game", "method": str(agent), "result": f"score {g['score'].mean():.1f}",
                         "tokens per unit": "no model" if tokens == 0 else f"{tokens:,.0f} / episode",
                         "tokens per correct answer": "-"})
    return pd.DataFrame(rows, columns=["experiment", "method", "result", "tokens per unit",
                                       "tokens per correct answer"])


def cost_summary(experiments: pd.DataFrame) -> str:
    """One paragraph: the run's rule time against the target, and where the time went."""
    total = experiments[experiments["experiment"] == "total"].iloc[0]
    parts = experiments[experiments["experiment"] != "total"].sort_values("seconds", ascending=False)
    cores = int(total["cores"]) if "cores" in total and not pd.isna(total["cores"]) else None
    minutes = total["seconds"] / 60
    where = ", ".join(f"{md_text(r.experiment)} {r.seconds / total['seconds']:.0%}" for r in parts.head(4).itertuples())
    on = f" on {cores} cores" if cores else ""
    verdict = "within" if minutes <= TARGET_MINUTES else "over"
    return (f"The rules of this run took {minutes:.1f} minutes in all{on} (the sum of the jobs' wall times, "
            f"{int(total['jobs'])} jobs; rules that ran at the same time count twice), {verdict} the "
            f"{TARGET_MINUTES:.0f}-minute target for the default run on 2 cores. The largest shares: {where}.")


# --- the plan beside the measurement --------------------------------------------------------------

#: The plan table's columns the cost rule reads (tomlab plan writes them).
PLAN_INPUT_COLUMNS = ("experiment", "rule", "job", "model", "device", "prompts", "tokens", "peak_memory_gb", "projected_s")
#: The bound a projection should keep on this machine's run, per experiment, and the measured time below
#: which an experiment is not judged (its fixed costs dominate).
PLAN_BOUND = 0.30
PLAN_MIN_SECONDS = 60.0


def plan_against_measured(plan: pd.DataFrame, jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per planned job: its projection and, where the job ran, what it took (wall seconds, prompts
    answered by the model, tokens processed); NaN where it did not run."""
    measured = jobs[["rule", "job", "seconds", "prompts", "cache_hits", "model_tokens"]].rename(columns={
        "seconds": "measured_s", "prompts": "measured_prompts", "model_tokens": "measured_tokens"})
    out = plan.rename(columns={"prompts": "planned_prompts", "tokens": "planned_tokens", "projected_s": "planned_s"})
    out = out[["experiment", "rule", "job", "model", "device", "planned_prompts", "planned_tokens", "peak_memory_gb",
               "planned_s"]].merge(measured, on=["rule", "job"], how="left")
    return out.reset_index(drop=True)


def plan_by_experiment(table: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and model, the projected and measured minutes of the jobs that ran on this machine,
    their ratio and whether it keeps :data:`PLAN_BOUND` (experiments under :data:`PLAN_MIN_SECONDS` are not judged)."""
    ran = table[(table["device"] != "served") & table["measured_s"].notna()]
    rows = []
    for (experiment, model), g in ran.groupby(["experiment", "model"], sort=True):
        planned, measured = float(g["planned_s"].sum()), float(g["measured_s"].sum())
        ratio = planned / measured if measured > 0 else np.nan
        if measured < PLAN_MIN_SECONDS:
            verdict = "not judged (under a minute)"
        elif abs(ratio - 1) <= PLAN_BOUND:
            verdict = f"within {PLAN_BOUND:.0%}"
        else:
            verdict = f"off by more than {PLAN_BOUND:.0%}"
        rows.append({"experiment": experiment, "model": model, "jobs": len(g), "planned (min)": planned / 60,
                     "measured (min)": measured / 60, "planned / measured": ratio, "verdict": verdict})
    return pd.DataFrame(rows, columns=["experiment", "model", "jobs", "planned (min)", "measured (min)",
                                       "planned / measured", "verdict"])


def plan_summary(by_experiment: pd.DataFrame) -> str:
    """One paragraph: how close the plan came, and which experiments it missed."""
    if by_experiment.empty:
        return "No planned job ran on this machine, so the plan has nothing to be compared with."
    judged = by_experiment[~by_experiment["verdict"].str.startswith("not judged")]
    missed = judged[judged["verdict"].str.startswith("off")]
    planned, measured = by_experiment["planned (min)"].sum(), by_experiment["measured (min)"].sum()
    text = (f"Before the run, `tomlab plan` projected {planned:.1f} minutes for the model jobs on this machine; they "
            f"took {measured:.1f} minutes (the sum of their wall times). Of {len(judged)} experiment(s) that took over a "
            f"minute, {len(judged) - len(missed)} kept within {PLAN_BOUND:.0%} of the projection")
    if missed.empty:
        return text + "."
    names = ", ".join(f"{md_text(e)} on {md_text(m)} ({x:.2f}x)"
                      for e, m, x in zip(missed["experiment"], missed["model"], missed["planned / measured"], strict=True))
    return text + f"; the plan missed {names}."
