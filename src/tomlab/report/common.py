"""What every report section shares: the results being shown, markdown tables and small phrasing helpers."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tomlab.manifest import Manifest

NOT_TRANSCRIBED = "not transcribed"


def results_dir() -> Path:
    """The results directory: ``$TOMLAB_RESULTS`` if set, else ``../results`` from the cwd."""
    env = os.environ.get("TOMLAB_RESULTS")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.cwd() / ".." / "results").resolve()


def manifest() -> Manifest:
    """The report's manifest: the file named by ``$TOMLAB_MANIFEST``, else the default layout of
    :func:`results_dir` (for rendering by hand)."""
    return Manifest.from_env() or default_manifest(results_dir())


def default_manifest(results: str | os.PathLike[str]) -> Manifest:
    """The pipeline's default layout of a results directory, for rendering the report by hand.

    The pipeline itself always passes the manifest its ``report`` rule builds from the rules'
    outputs; this is only the fallback when no manifest is given.  Capture sites are those
    recorded in ``setup.json`` (else the folders found under ``probing/<main task>``).
    """
    from tomlab.bigtom.conditions import MAIN_TASK, TASKS
    from tomlab.team.agents import AGENT_TYPES, LLM_TYPES

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


def load_setup(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the run's setup summary (``setup.json``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"setup summary {path} not found")
    with open(path, encoding="utf-8") as fh:
        setup = json.load(fh)
    if not isinstance(setup, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return setup


def _get(mapping: Mapping[str, Any] | None, key: str, default: Any = "n/a") -> Any:
    if not mapping:
        return default
    value = mapping.get(key, default)
    return default if value is None else value


def _human_count(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return str(n)
    n_int = int(n)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n_int) >= scale:
            return f"{n_int / scale:.2f} {suffix} ({n_int:,})"
    return f"{n_int:,}"


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"missing results file {path}")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A pandoc pipe table; floats formatted with ``floatfmt``, NaN shown as an en dash.

    Formatting is done cell by cell, so columns mixing numbers and strings (``"not transcribed"``)
    still get formatted numbers.  Numeric columns are right-aligned.
    """
    if df.empty:
        return "*(no rows)*"

    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value, "dtype").kind == "f"):
            return "–" if not math.isfinite(float(value)) else format(float(value), floatfmt)
        if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value, "dtype").kind in "iu"):
            return str(int(value))
        return str(value).replace("|", r"\|").replace("\n", " ")

    headers = [str(c).replace("|", r"\|") for c in df.columns]
    body = [[cell(v) for v in row] for row in df.itertuples(index=False, name=None)]
    numeric = []
    for col in df.columns:
        values = [v for v in df[col].tolist() if v is not None]
        numeric.append(bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))
    widths = [max(len(h), *(len(r[i]) for r in body), 3) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join(
        ("-" * (w + 1) + ":") if num else (":" + "-" * (w + 1)) for w, num in zip(widths, numeric, strict=True)
    ) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in body)])


def _f(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3f}"


def _join(items: Sequence[str], word: str = "or") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]
