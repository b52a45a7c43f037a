"""Test helper: a report manifest for result files that a test lays out by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tomlab.manifest import Manifest


def layout_manifest(results: str | os.PathLike[str]) -> Manifest:
    """A one-model manifest (no ``"models"`` entry, every name at the top) for results a test writes by hand
    under one folder (the pipeline itself builds its manifest from its rules' outputs, each model's
    results under ``results/models/<name>/``).  Capture
    sites are those recorded in ``setup.json`` (else the folders found under ``probing/<main task>``).
    """
    from tomlab.bigtom.conditions import MAIN_TASK, TASKS
    from tomlab.team import AGENT_TYPES, LLM_TYPES

    r = Path(results)
    sites: list[str] = []
    try:
        setup = json.loads((r / "setup.json").read_text(encoding="utf-8"))
        sites = [str(s) for s in setup.get("sites") or []] if isinstance(setup, dict) else []
    except (OSError, ValueError):
        pass
    if not sites:
        sites = sorted(p.parent.name for p in (r / "probing" / MAIN_TASK).glob("*/heads.parquet"))

    def fig(name: str) -> str:
        return str(r / "figures" / f"{name}.png")

    probing = r / "probing" / MAIN_TASK
    debate = r / "debate" / "arithmetic"
    entries: dict[str, Any] = {
        "setup": str(r / "setup.json"),
        "bench_probing": str(r / "bench" / "probing.json"),
        "bench_extract": str(r / "bench" / "extract.json"),
        "heads": {s: str(probing / s / "heads.parquet") for s in sites},
        "layers": {s: str(probing / s / "layers.parquet") for s in sites},
        "top": {s: str(probing / s / "top_heads.csv") for s in sites},
        "lexical": {t: str(r / "probing" / t / "lexical.parquet") for t in TASKS},
        "probing_accuracy_figures": {s: fig(f"probing_{MAIN_TASK}_{s}_accuracy") for s in sites},
        "probing_selectivity_figures": {s: fig(f"probing_{MAIN_TASK}_{s}_selectivity") for s in sites},
        "baseline": str(r / "eval" / "baseline" / "accuracy.parquet"),
        "baseline_scored": str(r / "eval" / "baseline" / "scored.parquet"),
        "steering": str(r / "steering" / "accuracy.parquet"),
        "sweep": str(r / "steering" / "sweep" / "accuracy.parquet"),
        "cross": str(r / "steering" / "cross_task" / "correlations.parquet"),
        "letters": str(r / "steering" / "mechanism" / "letter_probs.parquet"),
        "free_text": str(r / "steering" / "free_text.parquet"),
        "steering_figures": {"sweep": fig("steering_sweep"), "cross": fig("steering_cross_task"),
                             "letters": fig("steering_letter_probs"), "projections": fig("steering_token_projections")},
        "team_episodes": str(r / "team" / "episodes.parquet"),
        "team_summary": str(r / "team" / "summary.parquet"),
        "team_tom": str(r / "team" / "tom_accuracy.parquet"),
        "team_curve": str(r / "team" / "mappo" / "learning_curve.parquet"),
        "team_transcripts": {a: str(r / "team" / a / "transcripts") for a in AGENT_TYPES if a in LLM_TYPES},
        "team_figures": {"rounds": fig("team_rounds"), "curve": fig("team_mappo_curve")},
        "debate_accuracy": {t: str(r / "debate" / t / "accuracy.parquet") for t in ("arithmetic", "translation")},
        "debate_scored": str(debate / "scored.parquet"),
        "debate_disagreement": str(debate / "disagreement.parquet"),
        "debate_judge_preference": str(debate / "judge_preference.parquet"),
        "debate_answers": {m: str(debate / m / "answers.parquet") for m in ("debate", "debate_forced")},
        "debate_turns": str(debate / "debate" / "turns.parquet"),
        "debate_judge": str(debate / "debate" / "judge.parquet"),
        "debate_transcripts": str(debate / "debate" / "transcripts.jsonl"),
        "debate_figures": {"accuracy": fig("debate_accuracy"), "disagreement": fig("debate_disagreement")},
    }
    return Manifest(entries, source=f"default layout of {r}")


def save_layout_manifest(results: str | os.PathLike[str]) -> Path:
    """Save :func:`layout_manifest` where the pipeline saves the report's manifest."""
    path = Path(results) / "report" / "manifest.json"
    return layout_manifest(results).write(path)
