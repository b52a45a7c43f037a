"""The panel figure: each headline metric against parameter count, one point per model with its interval."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tomlab.figures.common import save_figure


def scaling_figure(overview: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """One panel per numeric headline metric of the Models overview (``tomlab.report.models.overview``):
    the metric against the model's parameter count (log axis), a point per model with its 95% interval.
    Models without a parameter count (served ones) are left out; with none left, the figure says so."""
    data = overview[(overview["text"] == "") & overview["value"].notna() & overview["n_params"].notna()].copy()
    metrics = list(dict.fromkeys(data["metric"]))
    if not metrics:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no local model with a numeric headline metric", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return save_figure(fig, stem)
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), squeeze=False)
    palette = dict(zip(dict.fromkeys(data["model"]), sns.color_palette("colorblind", data["model"].nunique())))
    for ax, metric in zip(axes.flat, metrics):
        sub = data[data["metric"] == metric]
        for r in sub.itertuples(index=False):
            err = [[r.value - r.ci_low], [r.ci_high - r.value]] if math.isfinite(r.ci_low) else None
            ax.errorbar([float(r.n_params)], [r.value], yerr=err, fmt="o", color=palette[r.model], capsize=3,
                        label=r.model)
        ax.set_xscale("log")
        ax.set_xlim(float(data["n_params"].min()) / 2, float(data["n_params"].max()) * 2)  # a factor of 2 each side
        ax.set_title(metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("parameters", fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_axis_off()
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=m) for m, c in palette.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_figure(fig, stem)
