"""The rendered report: data helpers for the .qmd cells and a Quarto-compatible renderer.

Two halves live here.

* Data helpers (``results_dir``, ``load_setup``, ``setup_table``, ``probing_summary``, ...) turn
  the pipeline's results directory into small tables and honest prose.  The code cells in
  ``report/*.qmd`` only call these, so the logic is typed and unit-tested here.
* ``render_report`` renders the Quarto project in ``report/`` to one self-contained HTML file and
  one PDF.  With ``quarto`` on PATH it simply runs Quarto; without it a built-in engine runs the
  same pipeline Quarto would: include shortcodes, YAML front matter and ``_quarto.yml``,
  ```{python} chunks with ``#|`` options executed in one Jupyter kernel (nbclient + ipykernel),
  pandoc to HTML (resources embedded) and pandoc to typst, then typst to PDF.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tomlab.io import atomic_path

__all__ = [
    "CHANCE",
    "NOT_TRANSCRIBED",
    "TARGETS",
    "Chunk",
    "ReportRenderError",
    "bench_table",
    "commentary_probing",
    "binomial_se",
    "expand_includes",
    "external_references",
    "figure_path",
    "load_setup",
    "paper_comparison",
    "parse_chunk_options",
    "parse_qmd",
    "QmdDocument",
    "probing_summary",
    "render_report",
    "results_dir",
    "setup_table",
    "to_markdown",
    "top_heads_table",
]

TARGETS: tuple[str, ...] = ("oracle", "protagonist", "joint")
"""Probe targets, in display order."""

CHANCE: dict[str, float] = {"oracle": 0.5, "protagonist": 0.5, "joint": 0.25}
"""Chance accuracy per target: oracle and protagonist are binary, joint is four-way."""

NOT_TRANSCRIBED = "not transcribed"

# The paper (Zhu, Zhang & Wang, ICML 2024) shows per-head probe accuracies only as heatmaps
# (Figure 2).  No number is transcribed from a figure: a value would be entered here only if the
# paper's text states it, together with the section it comes from.
PAPER_BEST_HEAD: dict[str, float | str] = {t: NOT_TRANSCRIBED for t in TARGETS}
PAPER_SOURCE = "Figure 2 (heatmaps only)"

SITE_DESCRIPTIONS: dict[str, str] = {
    "attn_out": (
        "the attention block's output after the output projection, cut into n_heads slices of head_dim "
        "(what the original code stores; a slice mixes all heads, so it is not one head's own output)"
    ),
    "head_z": "each head's own output, i.e. the input of the output projection split per head (as in ITI)",
}


MAIN_TASK = "forward_belief"
"""The task whose probes the probing section shows (the paper's); the others feed the steering section."""


class ReportRenderError(RuntimeError):
    """Rendering the report failed; the message names the file (and chunk) responsible."""


# --------------------------------------------------------------------------------------------
# Data helpers
# --------------------------------------------------------------------------------------------


def results_dir() -> Path:
    """The results directory: ``$TOMLAB_RESULTS`` if set, else ``../results`` from the cwd."""
    env = os.environ.get("TOMLAB_RESULTS")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.cwd() / ".." / "results").resolve()


def load_setup(results: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``setup.json`` from the results directory."""
    path = Path(results) / "setup.json"
    if not path.is_file():
        raise FileNotFoundError(f"setup.json not found in results directory {Path(results)}")
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


def setup_table(setup: Mapping[str, Any]) -> pd.DataFrame:
    """Two columns (item, value) describing model, data, split, seeds, sites and versions."""
    model = setup.get("model") or {}
    data = setup.get("data") or {}
    seeds = setup.get("seeds") or {}
    split = _get(data, "split_mode")
    split_note = {
        "by_story": "by_story (no story in both train and val)",
        "by_sample": "by_sample (original; samples of one story can straddle the split)",
    }.get(split, str(split))
    rows: list[tuple[str, str]] = [
        ("model", str(_get(model, "name"))),
        ("family", str(_get(model, "family"))),
        (
            "layers x heads x head_dim",
            f"{_get(model, 'n_layers')} x {_get(model, 'n_heads')} x {_get(model, 'head_dim')}",
        ),
        ("parameters", _human_count(_get(model, "n_params"))),
        ("dtype / device", f"{_get(model, 'dtype')} / {_get(model, 'device')}"),
        ("data source", f"{_get(data, 'source')} ({_get(data, 'raw_file')})"),
        (
            "stories (probe / eval)",
            f"{_get(data, 'n_stories')} ({_get(data, 'n_probe_stories')} / {_get(data, 'n_eval_stories')})",
        ),
        (
            "samples (train / val)",
            f"{_get(data, 'n_samples')} ({_get(data, 'n_train')} / {_get(data, 'n_val')})",
        ),
        ("split mode", split_note),
        (
            "seeds",
            ", ".join(f"{k} {v}" for k, v in seeds.items()) if seeds else "n/a",
        ),
        ("sites", ", ".join(str(s) for s in setup.get("sites") or []) or "n/a"),
        ("config hash", str(_get(setup, "config_hash"))),
        (
            "versions",
            f"tomlab {_get(setup, 'tomlab_version')}, torch {_get(setup, 'torch_version')}, "
            f"transformers {_get(setup, 'transformers_version')}",
        ),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"missing results file {path}")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def _heads(results: str | os.PathLike[str], site: str) -> pd.DataFrame:
    return _read_table(Path(results) / "probing" / MAIN_TASK / site / "heads.parquet")


def _lexical(results: str | os.PathLike[str]) -> pd.DataFrame | None:
    path = Path(results) / "probing" / MAIN_TASK / "lexical.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def _try_setup(results: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        return load_setup(results)
    except (FileNotFoundError, ValueError):
        return None


def _targets_in(df: pd.DataFrame) -> list[str]:
    present = [str(t) for t in df["target"].unique()]
    ordered = [t for t in TARGETS if t in present]
    return ordered + sorted(t for t in present if t not in TARGETS)


def _best_row(df: pd.DataFrame) -> pd.Series:
    """Highest val_acc; ties broken by selectivity, then by lower layer and head."""
    ordered = df.sort_values(
        ["val_acc", "selectivity", "layer", "head"], ascending=[False, False, True, True], kind="mergesort"
    )
    return ordered.iloc[0]


def _head_label(row: pd.Series) -> str:
    return f"{int(row['layer'])}.{int(row['head'])}"


@dataclass(frozen=True)
class _TargetStats:
    target: str
    best_head: str
    best_acc: float
    best_selectivity: float
    best_control: float  # control accuracy of the best head
    n_val: int
    mean_acc: float
    max_control: float  # best shuffled-label control accuracy over all heads
    n_heads: int
    n_above_control: int
    lexical_acc: float
    majority_acc: float
    chance: float
    best_layer: int | None
    best_layer_acc: float

    @property
    def se(self) -> float:
        return binomial_se(self.best_acc, self.n_val)


def binomial_se(p: float, n: int) -> float:
    """Binomial standard error sqrt(p(1-p)/n); NaN when n is not positive."""
    if n <= 0 or not math.isfinite(p):
        return float("nan")
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def _target_stats(
    heads: pd.DataFrame,
    layers: pd.DataFrame | None,
    lexical: pd.DataFrame | None,
    target: str,
    margin: float = 0.05,
) -> _TargetStats:
    sub = heads[heads["target"] == target]
    best = _best_row(sub)
    max_control = float(sub["control_acc"].max())
    lex_acc = maj_acc = float("nan")
    if lexical is not None and "target" in lexical:
        lrow = lexical[lexical["target"] == target]
        if len(lrow):
            lex_acc = float(lrow["val_acc"].iloc[0])
            maj_acc = float(lrow["majority_acc"].iloc[0]) if "majority_acc" in lrow else float("nan")
    best_layer: int | None = None
    best_layer_acc = float("nan")
    if layers is not None and len(layers):
        lsub = layers[layers["target"] == target]
        if len(lsub):
            lbest = lsub.sort_values(["val_acc", "layer"], ascending=[False, True], kind="mergesort").iloc[0]
            best_layer, best_layer_acc = int(lbest["layer"]), float(lbest["val_acc"])
    n_val = int(best["n_val"]) if "n_val" in best and pd.notna(best["n_val"]) else 0
    return _TargetStats(
        target=target,
        best_head=_head_label(best),
        best_acc=float(best["val_acc"]),
        best_selectivity=float(best["selectivity"]),
        best_control=float(best["control_acc"]),
        n_val=n_val,
        mean_acc=float(sub["val_acc"].mean()),
        max_control=max_control,
        n_heads=int(len(sub)),
        n_above_control=int((sub["val_acc"] > max_control + margin).sum()),
        lexical_acc=lex_acc,
        majority_acc=maj_acc,
        chance=CHANCE.get(target, float("nan")),
        best_layer=best_layer,
        best_layer_acc=best_layer_acc,
    )


def _all_stats(results: str | os.PathLike[str], site: str, margin: float = 0.05) -> dict[str, _TargetStats]:
    heads = _heads(results, site)
    layers_path = Path(results) / "probing" / MAIN_TASK / site / "layers.parquet"
    layers = pd.read_parquet(layers_path) if layers_path.is_file() else None
    lexical = _lexical(results)
    return {t: _target_stats(heads, layers, lexical, t, margin) for t in _targets_in(heads)}


def probing_summary(results: str | os.PathLike[str], site: str) -> pd.DataFrame:
    """One row per target: best head and its accuracy/selectivity, means, baselines, chance."""
    rows = []
    for t, s in _all_stats(results, site).items():
        rows.append(
            {
                "target": t,
                "best head (L.H)": s.best_head,
                "val acc": s.best_acc,
                "selectivity": s.best_selectivity,
                "mean head acc": s.mean_acc,
                "best layer": s.best_layer,
                "layer acc": s.best_layer_acc,
                "lexical acc": s.lexical_acc,
                "majority": s.majority_acc,
                "chance": s.chance,
            }
        )
    return pd.DataFrame(rows)


def top_heads_table(results: str | os.PathLike[str], site: str, k: int = 10) -> pd.DataFrame:
    """Top-``k`` heads per target side by side: rank, then head / val acc / selectivity per target."""
    top = _read_table(Path(results) / "probing" / MAIN_TASK / site / "top_heads.csv")
    top = top[top["rank"] <= k]
    out = pd.DataFrame({"rank": sorted(int(r) for r in top["rank"].unique())})
    for t in _targets_in(top):
        sub = top[top["target"] == t].copy()
        sub["rank"] = sub["rank"].astype(int)
        sub[f"{t} head"] = [f"{int(a)}.{int(b)}" for a, b in zip(sub["layer"], sub["head"], strict=True)]
        sub = sub.rename(columns={"val_acc": f"{t} acc", "selectivity": f"{t} sel."})
        out = out.merge(sub[["rank", f"{t} head", f"{t} acc", f"{t} sel."]], on="rank", how="left")
    return out


def paper_comparison(results: str | os.PathLike[str], site: str) -> pd.DataFrame:
    """Paper (Mistral-7B) vs this run for the best-head accuracy of each target."""
    stats = _all_stats(results, site)
    setup = _try_setup(results)
    model = str(_get((setup or {}).get("model"), "name", "this model"))
    rows = []
    for t in TARGETS:
        paper = PAPER_BEST_HEAD.get(t, NOT_TRANSCRIBED)
        if t in stats:
            s = stats[t]
            ours: float | str = s.best_acc
            note = f"ours: {model}, site {site}, head {s.best_head}, n_val {s.n_val}"
        else:
            ours, note = "n/a", f"no {t} probes in this run"
        if paper == NOT_TRANSCRIBED:
            note = f"paper: {PAPER_SOURCE}; {note}"
        rows.append({"quantity": f"{t} best-head accuracy", "paper (Mistral-7B)": paper, "ours": ours, "note": note})
    return pd.DataFrame(rows)


def _bench_rows(name: str, data: Mapping[str, Any], known: Sequence[tuple[str, str, str]]) -> list[dict[str, str]]:
    """The known quantities of one benchmark, then its target (if it records one) and hardware."""
    rows = []
    for key, label, fmt in known:
        if key in data:
            rows.append({"benchmark": name, "quantity": label, "value": _fmt_value(data[key], fmt)})
    if "target_speedup" in data:
        met = data.get("target_met")
        verdict = "" if met is None else (" (met)" if met else " (not met)")
        rows.append(
            {"benchmark": name, "quantity": "speedup target (x)", "value": _fmt_value(data["target_speedup"], ".1f") + verdict}
        )
    if "target_max_acc_gap" in data:
        rows.append(
            {"benchmark": name, "quantity": "accuracy gap allowed", "value": _fmt_value(data["target_max_acc_gap"], ".4f")}
        )
    hardware = [str(data[k]) for k in ("device", "dtype") if data.get(k) is not None]
    if "torch_threads" in data:
        hardware.append(f"{data['torch_threads']} torch threads")
    if hardware:
        rows.append({"benchmark": name, "quantity": "run on", "value": ", ".join(hardware)})
    return rows


def _fmt_value(value: Any, fmt: str) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if fmt:
            return format(value, fmt)
        return f"{value:.4g}"
    return str(value)


def bench_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    """Benchmark numbers from ``bench/probing.json`` and ``bench/extract.json`` (empty if absent)."""
    bench = Path(results) / "bench"
    rows: list[dict[str, str]] = []
    specs = {
        "probing": [
            ("speedup", "speedup, batched vs scikit-learn (x)", ".1f"),
            ("max_acc_gap", "max accuracy gap vs scikit-learn", ".4f"),
            ("batched_seconds", "batched probes (s)", ".2f"),
            ("sklearn_seconds", "scikit-learn probes (s)", ".2f"),
            ("n_probes", "probes fitted", ""),
            ("target", "probe target", ""),
        ],
        "extract": [
            ("batched_tokens_per_s", "batched extraction (tokens/s)", ",.0f"),
            ("single_tokens_per_s", "one-at-a-time extraction (tokens/s)", ",.0f"),
            ("speedup", "speedup (x)", ".1f"),
            ("batch_size", "batch size", ""),
            ("n_prompts", "prompts", ""),
        ],
    }
    for name, known in specs.items():
        path = bench / f"{name}.json"
        if path.is_file():
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, dict):
                rows.extend(_bench_rows(name, data, known))
    return pd.DataFrame(rows, columns=["benchmark", "quantity", "value"])


def figure_path(results: str | os.PathLike[str], site: str, kind: str) -> Path:
    """Path of ``figures/probing_<site>_<kind>.png`` (kind: accuracy or selectivity)."""
    return Path(results) / "figures" / f"probing_{MAIN_TASK}_{site}_{kind}.png"


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


# --------------------------------------------------------------------------------------------
# Commentary
# --------------------------------------------------------------------------------------------


def _f(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3f}"


def _join(items: Sequence[str], word: str = "or") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _heads_phrase(n: int) -> str:
    return "1 head beats" if n == 1 else f"{n} heads beat"


def commentary_probing(results: str | os.PathLike[str], site: str, margin: float = 0.05) -> str:
    """Data-driven markdown commentary on one site's probing results.

    A target counts as clearly decodable only if its best head beats the lexical baseline, the
    best shuffled-label control head and chance each by more than ``margin``; otherwise the text
    says the evidence is weak and why.
    """
    stats = _all_stats(results, site, margin)
    setup = _try_setup(results)
    paras: list[str] = []

    for t, s in stats.items():
        head = (
            f"**{t.capitalize()}.** The best head, {s.best_head}, reaches {_f(s.best_acc)} validation "
            f"accuracy (binomial standard error {_f(s.se)} with n_val = {s.n_val})."
        )
        comparisons: list[tuple[str, str, float]] = []
        if math.isfinite(s.lexical_acc):
            comparisons.append(("the lexical baseline", _f(s.lexical_acc), s.lexical_acc))
        comparisons.append(("the best shuffled-label control head", _f(s.max_control), s.max_control))
        if math.isfinite(s.chance):
            comparisons.append(("chance", f"{s.chance:.2f}", s.chance))
        gaps = [(f"{name} ({shown})", s.best_acc - ref) for name, shown, ref in comparisons]
        failing = [
            f"{name} ({shown}; gap {s.best_acc - ref:+.3f})"
            for name, shown, ref in comparisons
            if not s.best_acc - ref > margin
        ]
        if failing:
            verdict = (
                f"The evidence is weak: it does not beat {_join(failing)} by more than the "
                f"{margin:.2f} margin."
            )
        else:
            verdict = (
                f"It beats {_join([name for name, _ in gaps], 'and')} by more than the {margin:.2f} margin "
                f"(smallest gap {min(g for _, g in gaps):+.3f}), so in this run the {t} label is "
                "linearly decodable beyond what word statistics or a probe fitting noise would give."
            )
            smallest = min(g for _, g in gaps)
            if math.isfinite(s.se) and smallest < 2 * s.se:
                verdict += (
                    f" But that smallest gap is under two standard errors ({2 * s.se:.3f}), so the evidence "
                    "is still weak."
                )
        if not math.isfinite(s.lexical_acc):
            verdict += " No lexical baseline was found for this target, so surface cues are not ruled out."
        spread = (
            f" Averaged over all {s.n_heads} heads the accuracy is {_f(s.mean_acc)}; "
            f"{_heads_phrase(s.n_above_control)} the best control head by more than the margin."
        )
        paras.append(" ".join([head, verdict]) + spread)

    def clear(st: _TargetStats) -> bool:
        """Beats chance, lexical baseline and best control head by the margin and by 2 SE."""
        refs = [st.chance, st.max_control] + ([st.lexical_acc] if math.isfinite(st.lexical_acc) else [])
        gap = min(st.best_acc - r for r in refs if math.isfinite(r))
        return gap > margin and (not math.isfinite(st.se) or gap >= 2 * st.se)

    if "oracle" in stats and "protagonist" in stats:
        o, p = stats["oracle"], stats["protagonist"]
        counts = (
            f"best head {_f(o.best_acc)} vs {_f(p.best_acc)}; heads clearly above the best control head: "
            f"{o.n_above_control} (oracle) vs {p.n_above_control} (protagonist)"
        )
        if not clear(o) and not clear(p):
            paras.append(
                f"Neither belief is clearly decodable here ({counts}), so the comparison of oracle and "
                "protagonist says nothing about the paper's finding that more heads carry the oracle's belief."
            )
        elif o.best_acc > p.best_acc and o.n_above_control >= p.n_above_control:
            paras.append(
                f"Oracle beliefs are easier to decode than the protagonist's ({counts}). That is the direction "
                "the paper describes (more heads carry the oracle's belief)."
            )
        else:
            paras.append(
                f"Oracle beliefs are not easier to decode than the protagonist's here ({counts}). The paper "
                "finds more heads carrying the oracle's belief, so this part is not reproduced."
            )

    if "joint" in stats:
        j = stats["joint"]
        above = j.best_acc - j.chance
        detail = f"best head {_f(j.best_acc)}, mean over heads {_f(j.mean_acc)}, best control head {_f(j.max_control)}"
        if clear(j):
            paras.append(f"The four-way joint probe is clearly above its chance level of 0.25 ({detail}).")
        elif above > margin:
            paras.append(
                f"The four-way joint probe is nominally above its chance level of 0.25 ({detail}), but not by "
                "enough over the controls and the sampling noise; the evidence is weak."
            )
        else:
            paras.append(
                f"The four-way joint probe is not above its chance level of 0.25 by more than the margin "
                f"({detail}); the evidence is weak."
            )

    if "joint" in stats and "protagonist" in stats and clear(stats["joint"]) and not clear(stats["protagonist"]):
        paras.append(
            "The joint probe succeeds where the binary protagonist probe does not. That is no contradiction: "
            "the protagonist label is the exclusive-or of the oracle label and the story version (the "
            "protagonist believes the true statement in the true-belief story and the false one in the "
            "false-belief story). If a head encodes the statement's truth and the story version along separate "
            "directions, no single hyperplane separates the protagonist label, while each of the four joint "
            "classes can still be cut off linearly. A high joint accuracy therefore shows that both ingredients "
            "are present, not that the head carries a direction for the protagonist's belief."
        )

    split = str(_get((setup or {}).get("data"), "split_mode", "unknown"))
    if split == "by_story":
        paras.append(
            "The split is by story: all four samples of a story land on the same side, so a probe cannot "
            "score by recognising a story it saw during training."
        )
    elif split == "by_sample":
        paras.append(
            "The split is by sample, as in the original code: the four samples of a story share almost all "
            "their text and are spread over train and validation, so a probe can partly succeed by "
            "recognising the story. Treat these accuracies as optimistic."
        )
    else:
        paras.append(
            "The split mode is not recorded in setup.json, so leakage between training and validation "
            "stories cannot be ruled out."
        )

    if stats:
        n_val = max(s.n_val for s in stats.values())
        n_heads = max(s.n_heads for s in stats.values())
        se_half = binomial_se(0.5, n_val)
        se_high = binomial_se(0.9, n_val)
        paras.append(
            f"Each probe is scored on n_val = {n_val} validation samples, so per-head accuracies are noisy: "
            f"the binomial standard error sqrt(p(1-p)/n_val) is {_f(se_half)} at p = 0.5 and {_f(se_high)} "
            f"at p = 0.9. Differences between heads smaller than about twice that are not meaningful."
        )
        ctrl = "; ".join(
            f"{t} {_f(s.max_control)} (real best {_f(s.best_acc)}, gap {s.best_acc - s.max_control:+.3f})"
            for t, s in stats.items()
        )
        paras.append(
            f"Each best-head number is the maximum over {n_heads} heads picked on the same validation "
            "data, so it is biased upward and is not an independent held-out estimate. The shuffled-label "
            "control shows how large that bias can be: with labels that carry no information its best "
            f"head still reaches {ctrl}. The fair comparison is best real head against best control head, "
            "not against chance."
        )
    return "\n\n".join(paras)


# --------------------------------------------------------------------------------------------
# .qmd parsing: includes, front matter, chunks
# --------------------------------------------------------------------------------------------

_INCLUDE_RE = re.compile(r"^\s*\{\{<\s*include\s+(?P<path>\"[^\"]+\"|'[^']+'|\S+)\s*>\}\}\s*$")
_FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>.*?)\s*$")
_CHUNK_INFO_RE = re.compile(r"^\{\s*(?P<engine>[A-Za-z0-9_-]+)(?P<rest>[^}]*)\}$")
_OPTION_RE = re.compile(r"^\s*#\|\s?(?P<body>.*)$")


@dataclass(frozen=True)
class _Line:
    text: str
    file: str
    line: int


def _expand_lines(text: str, base_dir: Path, filename: str, stack: tuple[Path, ...]) -> list[_Line]:
    out: list[_Line] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        match = _INCLUDE_RE.match(line)
        if match is None:
            out.append(_Line(line, filename, lineno))
            continue
        rel = match.group("path").strip("\"'")
        target = base_dir / rel
        shown = os.path.normpath(os.path.join(os.path.dirname(filename), rel)) if filename else rel
        if not target.is_file():
            raise ReportRenderError(f"{filename}:{lineno}: included file {shown!r} not found (looked for {target})")
        key = target.resolve()
        if key in stack:
            raise ReportRenderError(f"{filename}:{lineno}: include cycle through {shown!r}")
        child = target.read_text(encoding="utf-8")
        out.extend(_expand_lines(child, target.parent, shown, (*stack, key)))
    return out


def expand_includes(text: str, base_dir: str | os.PathLike[str], filename: str = "<string>") -> str:
    """Expand ``{{< include FILE >}}`` lines recursively; paths are relative to the including file.

    Raises ReportRenderError naming the missing file (and the file/line that included it).
    """
    lines = _expand_lines(text, Path(base_dir), filename, ())
    return "\n".join(line.text for line in lines) + ("\n" if lines else "")


def parse_chunk_options(code: str) -> tuple[dict[str, Any], str]:
    """Split leading ``#| key: value`` lines (YAML) off a chunk; return (options, remaining code)."""
    lines = code.splitlines()
    option_lines: list[str] = []
    i = 0
    while i < len(lines):
        match = _OPTION_RE.match(lines[i])
        if match is None:
            break
        option_lines.append(match.group("body"))
        i += 1
    options: dict[str, Any] = {}
    if option_lines:
        try:
            parsed = yaml.safe_load("\n".join(option_lines))
        except yaml.YAMLError as exc:
            raise ValueError(f"invalid chunk options: {exc}") from exc
        if parsed is None:
            parsed = {}
        if not isinstance(parsed, dict):
            raise ValueError(f"chunk options must be 'key: value' lines, got {option_lines!r}")
        options = {str(k): v for k, v in parsed.items()}
    rest = "\n".join(lines[i:])
    return options, rest


@dataclass
class Chunk:
    """An executable ```{python} chunk."""

    code: str
    options: dict[str, Any]
    file: str
    line: int

    @property
    def label(self) -> str:
        return str(self.options.get("label") or f"unnamed-chunk-{self.line}")

    def where(self) -> str:
        return f"{self.file}:{self.line} (chunk '{self.label}')"


@dataclass
class QmdDocument:
    """A parsed document: front matter plus a sequence of markdown strings and chunks."""

    metadata: dict[str, Any] = field(default_factory=dict)
    blocks: list[str | Chunk] = field(default_factory=list)


def _split_front_matter(lines: list[_Line]) -> tuple[dict[str, Any], list[_Line]]:
    if not lines or lines[0].text.strip() != "---":
        return {}, lines
    for end in range(1, len(lines)):
        if lines[end].text.strip() in ("---", "..."):
            raw = "\n".join(line.text for line in lines[1:end])
            try:
                meta = yaml.safe_load(raw) or {}
            except yaml.YAMLError as exc:
                raise ReportRenderError(f"{lines[0].file}: invalid YAML front matter: {exc}") from exc
            if not isinstance(meta, dict):
                raise ReportRenderError(f"{lines[0].file}: front matter is not a mapping")
            return meta, lines[end + 1 :]
    raise ReportRenderError(f"{lines[0].file}: front matter opened with '---' is never closed")


def _parse_lines(lines: list[_Line]) -> list[str | Chunk]:
    blocks: list[str | Chunk] = []
    buf: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _FENCE_RE.match(line.text)
        if match is None:
            buf.append(line.text)
            i += 1
            continue
        fence = match.group("fence")
        info = match.group("info")
        # find the closing fence: same character, at least as long, no info string
        j = i + 1
        while j < len(lines):
            close = _FENCE_RE.match(lines[j].text)
            if close and close.group("fence")[0] == fence[0] and len(close.group("fence")) >= len(fence) and not close.group("info"):
                break
            j += 1
        if j == len(lines):
            raise ReportRenderError(f"{line.file}:{line.line}: code fence {fence} is never closed")
        chunk_info = _CHUNK_INFO_RE.match(info)
        if chunk_info is None or info.startswith("{="):
            buf.extend(item.text for item in lines[i : j + 1])
            i = j + 1
            continue
        engine = chunk_info.group("engine").lower()
        if engine != "python":
            raise ReportRenderError(f"{line.file}:{line.line}: unsupported chunk engine {{{engine}}}; only python")
        if chunk_info.group("rest").strip():
            raise ReportRenderError(
                f"{line.file}:{line.line}: options in the chunk header are not supported; use '#| key: value' lines"
            )
        body = "\n".join(item.text for item in lines[i + 1 : j])
        try:
            options, code = parse_chunk_options(body)
        except ValueError as exc:
            raise ReportRenderError(f"{line.file}:{line.line}: {exc}") from exc
        if buf:
            blocks.append("\n".join(buf))
            buf = []
        blocks.append(Chunk(code=code, options=options, file=line.file, line=line.line))
        i = j + 1
    if buf:
        blocks.append("\n".join(buf))
    return blocks


def parse_qmd(path: str | os.PathLike[str]) -> QmdDocument:
    """Read a .qmd file, expand includes, split off front matter and split into markdown and chunks."""
    path = Path(path)
    if not path.is_file():
        raise ReportRenderError(f"{path}: file not found")
    lines = _expand_lines(path.read_text(encoding="utf-8"), path.parent, path.name, (path.resolve(),))
    meta, body = _split_front_matter(lines)
    return QmdDocument(metadata=meta, blocks=_parse_lines(body))


# --------------------------------------------------------------------------------------------
# Execution (nbclient + ipykernel) and conversion of outputs to markdown
# --------------------------------------------------------------------------------------------

_DEFAULT_EXECUTE: dict[str, Any] = {
    "echo": True,
    "eval": True,
    "output": True,
    "warning": True,
    "include": True,
    "error": False,
}
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _kernel_manager_class() -> type:
    """An AsyncKernelManager whose ``python3`` kernel is always this interpreter (the venv's).

    A ``python3`` kernelspec found on the Jupyter path could point at another Python (a user-level
    kernel.json with an absolute path); the report must run with the interpreter that has tomlab.
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class _ThisPythonKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            if kernel_name in ("python3", "python"):
                return KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name=f"Python 3 ({sys.executable})",
                    language="python",
                    name="python3",
                    interrupt_mode="signal",
                    metadata={"debugger": False, "supported_encryption": ["curve"]},
                )
            return super().get_kernel_spec(kernel_name)

    class _ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_ksm(self) -> KernelSpecManager:
            return _ThisPythonKernelSpecManager(data_dir=self.data_dir)

        @default("transport_encryption")
        def _default_encryption(self) -> str:
            # Encrypt the kernel's local TCP channels when pyzmq supports it (ipykernel warns otherwise).
            import zmq

            return "auto" if zmq.has("curve") else "disabled"

    return _ThisPythonKernelManager


def _effective_options(chunk: Chunk, doc_defaults: Mapping[str, Any]) -> dict[str, Any]:
    opts = dict(_DEFAULT_EXECUTE)
    opts.update(doc_defaults)
    opts.update(chunk.options)
    return opts


def _execute(
    chunks: list[Chunk], options: list[dict[str, Any]], workdir: Path, env: Mapping[str, str], timeout: int
) -> list[list[dict[str, Any]]]:
    """Run the chunks (those with eval) in one kernel; return each chunk's outputs."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell_chunk: list[int] = []
    for idx, (chunk, opts) in enumerate(zip(chunks, options, strict=True)):
        if not opts.get("eval", True):
            continue
        cell = nbformat.v4.new_code_cell(chunk.code)
        if opts.get("error"):
            cell.metadata["tags"] = ["raises-exception"]
        nb.cells.append(cell)
        cell_chunk.append(idx)

    current: dict[str, int] = {"cell": -1}

    def on_cell_execute(cell: Any, cell_index: int) -> None:
        current["cell"] = cell_index

    client = NotebookClient(
        nb,
        timeout=timeout,
        startup_timeout=120,
        kernel_name="python3",
        kernel_manager_class=_kernel_manager_class(),
        resources={"metadata": {"path": str(workdir)}},
        allow_errors=False,
        record_timing=False,
        on_cell_execute=on_cell_execute,
    )
    try:
        client.execute(env=dict(env), cwd=str(workdir))
    except (CellControlSignal, DeadKernelError, TimeoutError, RuntimeError) as exc:
        where = "kernel start-up"
        if current["cell"] >= 0:
            where = chunks[cell_chunk[current["cell"]]].where()
        detail = _ANSI_RE.sub("", str(exc)).strip()
        ename = getattr(exc, "ename", type(exc).__name__)
        evalue = getattr(exc, "evalue", "")
        summary = f"{ename}: {evalue}" if evalue else ename
        raise ReportRenderError(f"{where} failed: {summary}\n\n{detail[-4000:]}") from exc

    outputs: list[list[dict[str, Any]]] = [[] for _ in chunks]
    for cell, idx in zip(nb.cells, cell_chunk, strict=True):
        outputs[idx] = [dict(o) for o in cell.get("outputs", [])]
    return outputs


def fenced(text: str, info: str = "text") -> str:
    """``text`` verbatim in a Markdown code fence longer than any backtick run inside it."""
    return _fence(text, info)


def _fence(text: str, info: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{info}\n{text.rstrip(chr(10))}\n{ticks}"


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(value)
    return str(value)


def _typst_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _coalesce_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for out in outputs:
        if (
            out.get("output_type") == "stream"
            and merged
            and merged[-1].get("output_type") == "stream"
            and merged[-1].get("name") == out.get("name")
        ):
            merged[-1] = {**merged[-1], "text": _as_text(merged[-1]["text"]) + _as_text(out["text"])}
        else:
            merged.append(out)
    return merged


def _caption_for(opts: Mapping[str, Any], n: int) -> str:
    cap = opts.get("fig-cap")
    if isinstance(cap, list):
        return str(cap[n]) if n < len(cap) else ""
    if cap is None:
        return ""
    return str(cap) if n == 0 else ""


def _chunk_markdown(
    chunk: Chunk, opts: Mapping[str, Any], outputs: list[dict[str, Any]], workdir: Path, fig_dir: str
) -> str:
    """Quarto-like rendering of one chunk's code and outputs as pandoc markdown."""
    if opts.get("include") is False:
        return ""
    parts: list[str] = []
    if opts.get("echo") is True or opts.get("echo") == "fenced":
        if chunk.code.strip():
            parts.append(_fence(chunk.code, "python"))
    output_opt = opts.get("output", True)
    if output_opt is False:
        return "\n\n".join(parts)
    asis = output_opt == "asis"
    show_warnings = opts.get("warning") is not False
    n_fig = 0
    for out in _coalesce_streams(outputs):
        kind = out.get("output_type")
        if kind == "stream":
            text = _as_text(out.get("text", ""))
            if out.get("name") == "stderr":
                if show_warnings and text.strip():
                    parts.append(_fence(text))
            elif text.strip():
                parts.append(text.rstrip("\n") if asis else _fence(text))
        elif kind == "error":
            trace = _ANSI_RE.sub("", "\n".join(out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"]))
            parts.append(_fence(trace))
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            if "text/markdown" in data:
                md = _as_text(data["text/markdown"]).strip("\n")
                if opts.get("tbl-cap") and re.search(r"^\s*\|.*\|\s*$", md, re.MULTILINE):
                    md += f"\n\n: {opts['tbl-cap']}"
                parts.append(md)
            elif any(m in data for m in ("image/png", "image/jpeg", "image/svg+xml")):
                mime = next(m for m in ("image/png", "image/jpeg", "image/svg+xml") if m in data)
                ext = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}[mime]
                safe_label = re.sub(r"[^A-Za-z0-9_-]+", "-", chunk.label)
                rel = f"{fig_dir}/{safe_label}-{n_fig + 1}.{ext}"
                target = workdir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                payload = data[mime]
                if mime == "image/svg+xml":
                    target.write_text(_as_text(payload), encoding="utf-8")
                else:
                    target.write_bytes(base64.b64decode(_as_text(payload)))
                caption = _caption_for(opts, n_fig).replace("]", r"\]")
                parts.append(f"![{caption}]({rel})")
                n_fig += 1
            elif "text/html" in data:
                html = _as_text(data["text/html"])
                plain = _as_text(data.get("text/plain", ""))
                parts.append(_fence(html, "{=html}"))
                if plain.strip():
                    parts.append(_fence(f"#raw(block: true, {_typst_string(plain)})", "{=typst}"))
            elif "text/plain" in data:
                text = _as_text(data["text/plain"])
                if text.strip():
                    parts.append(text if asis else _fence(text))
    return "\n\n".join(p for p in parts if p)


# --------------------------------------------------------------------------------------------
# Project configuration and pandoc / typst
# --------------------------------------------------------------------------------------------

_NON_PANDOC_META = {"format", "execute", "jupyter", "project", "engine", "knitr", "filters", "bibliography-style"}


def _load_quarto_yml(source: Path) -> dict[str, Any]:
    for name in ("_quarto.yml", "_quarto.yaml"):
        path = source / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise ReportRenderError(f"{name}: invalid YAML: {exc}") from exc
            if not isinstance(data, dict):
                raise ReportRenderError(f"{name}: top level is not a mapping")
            return data
    return {}


def _format_options(project: Mapping[str, Any], front: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for source in (project, front):
        formats = source.get("format") or {}
        if isinstance(formats, str):
            formats = {formats: {}}
        value = formats.get(fmt) if isinstance(formats, dict) else None
        if isinstance(value, dict):
            merged.update(value)
    return merged


def _document_metadata(project: Mapping[str, Any], front: Mapping[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for source in (project, front):
        for key, value in source.items():
            if key not in _NON_PANDOC_META:
                meta[key] = value
    date = meta.get("date")
    if isinstance(date, str) and date.strip().lower() in ("today", "now", "last-modified"):
        meta["date"] = _dt.date.today().isoformat()
    elif isinstance(date, (_dt.date, _dt.datetime)):
        meta["date"] = date.isoformat()
    return meta


def _pandoc_path() -> str:
    try:
        import pypandoc

        path = pypandoc.get_pandoc_path()
    except (ImportError, OSError) as exc:  # pragma: no cover - depends on the environment
        found = shutil.which("pandoc")
        if found is None:
            raise ReportRenderError("pandoc not found (install pypandoc-binary)") from exc
        path = found
    return str(path)


def _run(cmd: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, what: str = "") -> None:
    proc = subprocess.run(list(cmd), cwd=cwd, env=dict(env) if env is not None else None, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-4000:]
        raise ReportRenderError(f"{what or cmd[0]} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def _toc_args(opts: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    if opts.get("toc"):
        args += ["--toc", f"--toc-depth={int(opts.get('toc-depth', 3))}"]
    if opts.get("number-sections"):
        args.append("--number-sections")
    return args


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


_EXTERNAL_RE = [
    re.compile(r"""<(?:img|script|iframe|embed|source|audio|video|input)\b[^>]*?\ssrc\s*=\s*["']?(?!data:)([^"'\s>]+)""", re.I),
    re.compile(r"""<link\b[^>]*?\shref\s*=\s*["']?(?!data:)([^"'\s>]+)""", re.I),
    re.compile(r"""url\(\s*["']?(?!data:|#)([^"')]+)""", re.I),
]


def external_references(html: str) -> list[str]:
    """Resources an HTML file would load from outside itself (images, scripts, styles)."""
    found: list[str] = []
    for pattern in _EXTERNAL_RE:
        found.extend(pattern.findall(html))
    return found


def _typst_compile(typ: Path, pdf: Path, root: Path) -> None:
    import typst

    try:
        typst.compile(str(typ), output=str(pdf), root=str(root), font_paths=[], ignore_system_fonts=True)
    except Exception as exc:  # typst.TypstError and friends
        raise ReportRenderError(f"typst failed to compile {typ.name}: {exc}") from exc


def _render_builtin(work: Path, env: Mapping[str, str], timeout: int) -> tuple[Path, Path]:
    project = _load_quarto_yml(work)
    index = work / "index.qmd"
    doc = parse_qmd(index)
    front = doc.metadata

    execute_defaults: dict[str, Any] = {}
    for source in (project, front):
        ex = source.get("execute")
        if isinstance(ex, dict):
            execute_defaults.update(ex)

    chunks = [b for b in doc.blocks if isinstance(b, Chunk)]
    options = [_effective_options(c, execute_defaults) for c in chunks]
    outputs = _execute(chunks, options, work, env, timeout) if chunks else []

    fig_dir = "index_files/figure-builtin"
    pieces: list[str] = []
    chunk_iter = iter(zip(chunks, options, outputs, strict=True))
    for block in doc.blocks:
        if isinstance(block, Chunk):
            chunk, opts, outs = next(chunk_iter)
            md = _chunk_markdown(chunk, opts, outs, work, fig_dir)
            if md:
                pieces.append(md)
        else:
            pieces.append(block)
    body = "\n\n".join(pieces).strip() + "\n"
    (work / "index.builtin.md").write_text(body, encoding="utf-8")

    meta = _document_metadata(project, front)
    html_opts = _format_options(project, front, "html")
    typst_opts = _format_options(project, front, "typst")
    pandoc = _pandoc_path()

    html_meta = dict(meta)
    (work / "index.meta-html.yaml").write_text(yaml.safe_dump(html_meta, sort_keys=False), encoding="utf-8")
    html_out = work / "index.html"
    cmd = [
        pandoc, "index.builtin.md", "--from", "markdown", "--to", "html5", "--standalone", "--embed-resources",
        "--metadata-file", "index.meta-html.yaml", f"--resource-path={work}", "--columns=1000",
        "-o", str(html_out),
    ]
    cmd += _toc_args(html_opts)
    for css in _as_list(html_opts.get("css")):
        cmd.append(f"--css={css}")
    for inc in _as_list(html_opts.get("include-in-header")):
        cmd.append(f"--include-in-header={inc}")
    _run(cmd, work, what="pandoc (html)")
    leaks = external_references(html_out.read_text(encoding="utf-8"))
    if leaks:
        raise ReportRenderError(f"index.html is not self-contained; it references {leaks[:5]}")

    typ_meta = dict(meta)
    for key in ("papersize", "margin", "fontsize", "mainfont", "codefont", "mathfont", "linestretch", "columns"):
        if key in typst_opts:
            typ_meta[key] = typst_opts[key]
    if typst_opts.get("section-numbering"):
        typ_meta["section-numbering"] = typst_opts["section-numbering"]
    (work / "index.meta-typst.yaml").write_text(yaml.safe_dump(typ_meta, sort_keys=False), encoding="utf-8")
    typ = work / "index.typ"
    cmd = [
        pandoc, "index.builtin.md", "--from", "markdown", "--to", "typst", "--standalone",
        "--metadata-file", "index.meta-typst.yaml", f"--resource-path={work}", "--columns=1000",
        "-o", str(typ),
    ]
    cmd += _toc_args(typst_opts)
    for inc in _as_list(typst_opts.get("include-in-header")):
        cmd.append(f"--include-in-header={inc}")
    _run(cmd, work, what="pandoc (typst)")
    pdf_out = work / "index.pdf"
    _typst_compile(typ, pdf_out, work)
    return html_out, pdf_out


def _render_quarto(work: Path, env: Mapping[str, str]) -> tuple[Path, Path]:
    quarto = shutil.which("quarto")
    if quarto is None:
        raise ReportRenderError("engine 'quarto' requested but quarto is not on PATH")
    _run([quarto, "render", "index.qmd", "--to", "html", "-M", "embed-resources:true"], work, env, "quarto render (html)")
    _run([quarto, "render", "index.qmd", "--to", "typst"], work, env, "quarto render (typst)")
    html_out, pdf_out = work / "index.html", work / "index.pdf"
    for path in (html_out, pdf_out):
        if not path.is_file():
            raise ReportRenderError(f"quarto did not produce {path.name}")
    leaks = external_references(html_out.read_text(encoding="utf-8"))
    if leaks:
        raise ReportRenderError(f"index.html is not self-contained; it references {leaks[:5]}")
    return html_out, pdf_out


_COPY_IGNORE = shutil.ignore_patterns(
    "_freeze", ".quarto", "*_files", "index.html", "index.pdf", "__pycache__", ".ipynb_checkpoints"
)


def render_report(
    source_dir: str | os.PathLike[str],
    results_dir: str | os.PathLike[str],
    out_html: str | os.PathLike[str],
    out_pdf: str | os.PathLike[str],
    engine: str = "auto",
) -> None:
    """Render the Quarto project ``source_dir`` against ``results_dir`` to ``out_html`` and ``out_pdf``.

    ``engine``: ``"quarto"`` runs ``quarto render``; ``"builtin"`` runs the built-in pipeline
    (nbclient + pandoc + typst); ``"auto"`` picks quarto when it is on PATH.  The source is copied
    to a temporary directory first, so nothing is written into it, and the two outputs are moved
    into place (atomically) only after both were produced.
    """
    if engine not in ("auto", "quarto", "builtin"):
        raise ValueError(f"engine must be 'auto', 'quarto' or 'builtin', not {engine!r}")
    if engine == "auto":
        engine = "quarto" if shutil.which("quarto") else "builtin"
    source = Path(source_dir)
    if not (source / "index.qmd").is_file():
        raise ReportRenderError(f"{source}: no index.qmd in the report source directory")
    results = Path(results_dir).expanduser().resolve()

    env = dict(os.environ)
    env["TOMLAB_RESULTS"] = str(results)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env["QUARTO_PYTHON"] = sys.executable
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])

    with tempfile.TemporaryDirectory(prefix="tomlab-report-") as tmp:
        work = Path(tmp) / "report"
        shutil.copytree(source, work, ignore=_COPY_IGNORE)
        if engine == "quarto":
            html, pdf = _render_quarto(work, env)
        else:
            html, pdf = _render_builtin(work, env, timeout=600)
        mode = _default_file_mode()
        with atomic_path(out_html) as tmp_html, atomic_path(out_pdf) as tmp_pdf:
            shutil.copyfile(html, tmp_html)
            shutil.copyfile(pdf, tmp_pdf)
            os.chmod(tmp_html, mode)
            os.chmod(tmp_pdf, mode)


def _default_file_mode() -> int:
    """The mode a plain new file gets under the current umask (atomic temp files start at 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
