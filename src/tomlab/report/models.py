"""The panel of models side by side: the Models overview (one row per model: geometry, where it ran, its
headline numbers with intervals) and the helpers every section uses to show a table, text or figure for
each model of the run.

:func:`overview` reads each model's results through its view of the manifest and returns a long table,
one row per model and metric (``value``, ``ci_low``, ``ci_high``, or ``text`` for a verdict);
:func:`models_table` formats it for the report, :func:`tomlab.figures.models.scaling_figure` plots it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Any

import numpy as np
import pandas as pd

from tomlab import io
from tomlab.bigtom.conditions import MAIN_TASK
from tomlab.manifest import Manifest, ManifestError
from tomlab.report.common import md_text
from tomlab.stats import binomial_se, bootstrap_ci

#: The overview's columns: the model's description, then one metric per row.
COLUMNS = ("model", "family", "n_params", "n_layers", "n_heads", "head_dim", "dtype", "device", "where",
           "chat_template", "metric", "value", "ci_low", "ci_high", "text")
#: Headline metrics in display order (a model shows those of the experiments it played).
METRICS = ("BigToM acc. (released parser)", "BigToM acc. (lenient parser)", "BigToM acc. (log-likelihood)",
           "best protagonist head acc.", "+TpFo Δ false-belief acc.", "team score (LLM)",
           "team valid actions (LLM)", "debate acc. (arithmetic)", "debate contrastive acc. (translation)")


# ----------------------------------------------------------------------------- per-model views


def views(m: Manifest) -> dict[str, Manifest]:
    """Each model's view of the manifest, in panel order; a one-model manifest is its own view."""
    return {name: m.model(name) for name in m.panel} if m.panel else {"": m}


def _each(m: Manifest, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """``fn(view, ...)`` for each model whose view has what ``fn`` reads (a model outside an experiment's
    panel has no entries of it and is skipped)."""
    for name, view in views(m).items():
        try:
            yield name, fn(view, *args, **kwargs)
        except ManifestError:
            continue


def table(m: Manifest, fn: Callable[..., pd.DataFrame], *args: Any, **kwargs: Any) -> pd.DataFrame:
    """``fn``'s table for every model of the run, stacked with a ``model`` column first (one model: the
    table as it is).  A table that names its model already keeps its own column, and rows that are the
    same for every model (a team without a language model) are shown once."""
    parts = list(_each(m, fn, *args, **kwargs))
    if len(parts) <= 1:
        return parts[0][1] if parts else pd.DataFrame()
    if all("model" in df.columns for _, df in parts):
        out = pd.concat([df for _, df in parts], ignore_index=True).drop_duplicates(ignore_index=True)
        first = out.columns[0]  # keep like with like (each kind of row: every model's, then the paper's)
        order = {v: i for i, v in enumerate(dict.fromkeys(out[first]))}
        return out.sort_values(first, key=lambda s: s.map(order), kind="stable", ignore_index=True)
    return pd.concat([df.assign(model=name)[["model", *df.columns]] for name, df in parts], ignore_index=True)


def side_by_side(m: Manifest, fn: Callable[..., pd.DataFrame], keys: list[str], *args: Any, **kwargs: Any) -> pd.DataFrame:
    """``fn``'s table with one column group per model (``<model>: <column>``), joined on ``keys``, as the
    paper prints Mistral beside DeepSeek (one model: the table as it is)."""
    parts = list(_each(m, fn, *args, **kwargs))
    if len(parts) <= 1:
        return parts[0][1] if parts else pd.DataFrame()
    # rows in order of first appearance (an outer merge would sort them)
    frames = [df.set_index(keys).rename(columns=lambda c, n=name: f"{n}: {c}") for name, df in parts]
    return pd.concat(frames, axis=1, join="outer", sort=False).reset_index()


def text(m: Manifest, fn: Callable[..., str], *args: Any, **kwargs: Any) -> str:
    """``fn``'s prose for every model, each paragraph led by the model's name (one model: as it is)."""
    parts = list(_each(m, fn, *args, **kwargs))
    if len(parts) == 1:
        return parts[0][1]
    return "\n\n".join(f"**{md_text(name)}.** {body}" for name, body in parts)


def images(m: Manifest, name: str, key: str | None = None) -> list[tuple[str, str]]:
    """``(model, PNG path)`` of one figure for every model that has it."""
    return [(model, str(view.path(name, key))) for model, view in views(m).items()
            if view.get(name, key) is not None]


def figure(m: Manifest, name: str, key: str | None = None, *, first: bool = False) -> bytes:
    """One figure as PNG bytes: the model's own with one model (or ``first``: a figure that is the same for
    every model), else one panel per model, stacked, each under its model's name."""
    from PIL import Image, ImageDraw, ImageFont

    found = images(m, name, key)
    if not found:
        raise ManifestError(f"manifest {m.source}: no model has the figure {name!r}" + (f" [{key!r}]" if key else ""))
    if first or len(found) == 1:
        with open(found[0][1], "rb") as fh:
            return fh.read()
    panels = [Image.open(path).convert("RGB") for _, path in found]
    try:
        font = ImageFont.load_default(size=28)
    except TypeError:  # Pillow before 10.1
        font = ImageFont.load_default()
    title = 44
    width = max(p.width for p in panels)
    canvas = Image.new("RGB", (width, sum(p.height + title for p in panels)), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for (model, _), panel in zip(found, panels):
        draw.text((10, y + 6), model, fill="black", font=font)
        canvas.paste(panel, (0, y + title))
        y += panel.height + title
    buf = BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def setup(view: Manifest) -> dict[str, Any]:
    """A model's setup summary (its ``setup`` entry)."""
    return dict(io.read_json(view.path("setup")))


def setups(m: Manifest) -> dict[str, dict[str, Any]]:
    """Every model's setup summary by name (one model: under its own name)."""
    out = {}
    for name, view in views(m).items():
        found = setup(view)
        out[name or str((found.get("model") or {}).get("name", "model"))] = found
    return out


def first(m: Manifest, fn: Callable[[Manifest], Any]) -> Any:
    """``fn``'s first non-empty result over the models (an excerpt shown once)."""
    for _, value in _each(m, fn):
        if value is not None and (not isinstance(value, str) or value):
            return value
    return None


def union(m: Manifest, fn: Callable[[Manifest], list[Any]]) -> list[Any]:
    """Every item of ``fn``'s lists over the models, in order of first appearance."""
    out: list[Any] = []
    for _, values in _each(m, fn):
        out += [v for v in values if v not in out]
    return out


def available(m: Manifest, fn: Callable[[Manifest], bool]) -> bool:
    """Whether any model's view has an experiment's results (``fn``: that section's ``available``)."""
    return any(ok for _, ok in _each(m, fn))


# ----------------------------------------------------------------------------- the overview


def _ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    if not len(values):
        return math.nan, math.nan, math.nan
    low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
    return float(values.mean()), low, high


def _bigtom(view: Manifest, n_boot: int, seed: int) -> list[tuple[str, float, float, float]]:
    scored = io.read_parquet(view.path("baseline_scored"))
    out = []
    for parser, label in (("original", "released parser"), ("lenient", "lenient parser")):
        column = f"parsed_{parser}"
        if column in scored and scored[column].notna().any():
            correct = (scored[column] == scored["answer_letter"]).astype(float).to_numpy()
            out.append((f"BigToM acc. ({label})", *_ci(correct, n_boot, seed)))
    if "ll_correct" in scored and scored["ll_correct"].notna().any():
        ll = scored["ll_correct"].dropna().astype(float).to_numpy()
        out.append(("BigToM acc. (log-likelihood)", *_ci(ll, n_boot, seed)))
    return out


def _probing(view: Manifest, setup: dict[str, Any]) -> tuple[list[tuple[str, float, float, float]], str]:
    site = view.keys("heads")[0]
    heads = io.read_parquet(view.path("heads", site))
    prot = heads[heads["target"] == "protagonist"]
    if prot.empty:
        return [], ""
    best = prot.sort_values("val_acc", ascending=False, kind="stable").iloc[0]
    n_val = int(best["n_val"]) if "n_val" in best else int((setup.get("data") or {}).get("n_val") or 0)
    se = binomial_se(float(best["val_acc"]), n_val) if n_val else math.nan
    acc = float(best["val_acc"])
    head = f"layer {int(best['layer'])}, head {int(best['head'])} ({site})"
    return [("best protagonist head acc.", acc, acc - 1.96 * se, acc + 1.96 * se)], head


def _steering(view: Manifest, site: str) -> list[tuple[str, float, float, float]]:
    acc = io.read_parquet(view.path("steering"))
    row = acc[(acc["mode"] == "generation") & (acc["task"] == MAIN_TASK) & (acc["source_task"] == MAIN_TASK)
              & (acc["direction"] == "+tpfo") & (acc["condition"] == "false_belief")]
    if row.empty:
        return []
    at = row[row["site"] == site]
    r = (at if not at.empty else row).iloc[0]
    return [("+TpFo Δ false-belief acc.", float(r["delta"]), float(r["delta_ci_low"]), float(r["delta_ci_high"]))]


def _team(view: Manifest, n_boot: int, seed: int) -> list[tuple[str, float, float, float]]:
    episodes = io.read_parquet(view.path("team_episodes"))
    llm = episodes[episodes["agent_type"] == "llm"]
    if llm.empty:
        return []
    actions = float(llm["actions"].sum())
    valid = float(llm["valid_actions"].sum()) / actions if actions else math.nan
    se = binomial_se(valid, int(actions)) if actions else math.nan
    return [("team score (LLM)", *_ci(llm["score"].astype(float).to_numpy(), n_boot, seed)),
            ("team valid actions (LLM)", valid, valid - 1.96 * se, valid + 1.96 * se)]


def _debate(view: Manifest) -> list[tuple[str, float, float, float]]:
    out = []
    for task in view.keys("debate_accuracy"):
        acc = io.read_parquet(view.path("debate_accuracy", task))
        row = acc[acc["method"] == "debate"]
        if row.empty:
            continue
        r = row.iloc[0]
        if "accuracy" in acc:
            out.append((f"debate acc. ({task})", float(r["accuracy"]), float(r["ci_low"]), float(r["ci_high"])))
        elif "contrastive" in acc:  # translation: the share of outputs closer to the right reference
            out.append((f"debate contrastive acc. ({task})", float(r["contrastive"]), math.nan, math.nan))
    return out


def _describe(view: Manifest, setup: dict[str, Any]) -> dict[str, Any]:
    model = setup.get("model") or {}
    config = setup.get("config") or {}
    chat = (config.get("evaluation") or {}).get("chat_template")
    protocol = (config.get("evaluation") or {}).get("protocol", "original")
    asked = bool(chat) if chat is not None else protocol != "original"
    template = "none (base model)" if model.get("chat_template") is False else ("yes" if asked else "no")
    return {"family": model.get("family") or ("served" if model.get("source") == "served" else "n/a"),
            "n_params": model.get("n_params"), "n_layers": model.get("n_layers"), "n_heads": model.get("n_heads"),
            "head_dim": model.get("head_dim"), "dtype": model.get("dtype") or "n/a", "device": model.get("device") or "n/a",
            "where": "served" if model.get("source") == "served" else "local",
            "chat_template": template}


def overview(m: Manifest, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per model and headline metric (see the module docstring), the stress verdicts as text."""
    rows: list[dict[str, Any]] = []
    for name, view in views(m).items():
        setup = io.read_json(view.path("setup"))
        base = {"model": name or str((setup.get("model") or {}).get("name", "model")), **_describe(view, setup)}
        metrics: list[tuple[str, float, float, float]] = []
        texts: list[tuple[str, str]] = []
        if "baseline_scored" in view:
            metrics += _bigtom(view, n_boot, seed)
        if "heads" in view:
            found, head = _probing(view, setup)
            metrics += found
            if head:
                texts.append(("best protagonist head", head))
        if "steering" in view:
            site = ((setup.get("config") or {}).get("steering") or {}).get("site", "attn_out")
            metrics += _steering(view, site)
        if "team_episodes" in view:
            metrics += _team(view, n_boot, seed)
        if "debate_accuracy" in view:
            metrics += _debate(view)
        if "stress_verdicts" in view:
            verdicts = io.read_parquet(view.path("stress_verdicts"))
            texts += [(f"stress: {str(r.doubt).split(':')[0]}", str(r.verdict)) for r in verdicts.itertuples()]
        rows += [{**base, "metric": k, "value": v, "ci_low": lo, "ci_high": hi, "text": ""} for k, v, lo, hi in metrics]
        rows += [{**base, "metric": k, "value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "text": t}
                 for k, t in texts]
        if not metrics and not texts:
            rows.append({**base, "metric": "", "value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "text": ""})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _cell(r: pd.Series) -> str:
    if r["text"]:
        return str(r["text"])
    if not math.isfinite(float(r["value"])):
        return "–"
    if math.isfinite(float(r["ci_low"])):
        return f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
    return f"{r['value']:.2f}"


def _params(n: Any) -> str:
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "n/a"
    n = float(n)
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def _int(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else str(int(x))


def models_table(over: pd.DataFrame) -> pd.DataFrame:
    """The Models table: one row per model, its shape (family, parameters, layers x heads, head width),
    dtype and device, where it ran and whether its prompts went through a chat template."""
    rows = []
    for name, g in over.groupby("model", sort=False):
        first = g.iloc[0]
        rows.append({
            "model": name, "family": first["family"], "parameters": _params(first["n_params"]),
            "layers x heads": f"{_int(first['n_layers'])} x {_int(first['n_heads'])}",
            "head width": _int(first["head_dim"]), "dtype / device": f"{first['dtype']} / {first['device']}",
            "where": first["where"], "chat template": first["chat_template"]})
    return pd.DataFrame(rows)


def _by_metric(rows: pd.DataFrame, order: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per metric, one column per model (as the papers print models side by side)."""
    if rows.empty:
        return pd.DataFrame()
    models = list(dict.fromkeys(rows["model"]))
    cells = {(r["model"], r["metric"]): _cell(r) for _, r in rows.iterrows()}
    metrics = list(dict.fromkeys([m for m in order if m in set(rows["metric"])] + list(rows["metric"])))
    return pd.DataFrame([{"": metric, **{m: cells.get((m, metric), "–") for m in models}} for metric in metrics])


def headline_table(over: pd.DataFrame) -> pd.DataFrame:
    """Each model's headline numbers, ``value [95% CI]``, a column per model (a dash: not played)."""
    rows = over[(over["metric"] != "") & ~over["metric"].str.startswith("stress: ")]
    return _by_metric(rows, METRICS)


def verdict_table(over: pd.DataFrame) -> pd.DataFrame:
    """Each model's stress verdicts, a row per doubt and a column per model."""
    rows = over[over["metric"].str.startswith("stress: ")].assign(metric=lambda d: d["metric"].str.removeprefix("stress: "))
    return _by_metric(rows)


def card_rows(over: pd.DataFrame) -> pd.DataFrame:
    """Protocol-card rows per model where the models differ in dtype, chat template or device (empty for
    one model, or when they agree)."""
    per = over.drop_duplicates("model")[["model", "dtype", "device", "chat_template"]]
    if len(per) < 2:
        return pd.DataFrame()
    differ = [c for c in ("dtype", "chat_template", "device") if per[c].nunique() > 1]
    if not differ:
        return pd.DataFrame()
    return per[["model", *differ]].rename(columns={"chat_template": "chat template"}).reset_index(drop=True)
