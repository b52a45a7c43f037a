"""Stress-test figures: the decodability curve."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tomlab.figures.common import save_figure

_LABELS = {"random_heads": "K random heads", "random_projection": "random projection of a layer",
           "best_head": "best head (chosen on training data)", "best_head_on_val": "best head (chosen on validation)",
           "layer": "whole layers (mean, range)"}


def plot_decodability(summary: pd.DataFrame, stem: str | os.PathLike[str], chance: float = 0.5) -> list[Path]:
    """Validation accuracy against features pooled (in heads' worth, log scale): random pools of K heads
    and random projections with their range over draws, the best single head and the whole layers."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    palette = sns.color_palette("colorblind")
    for i, cond in enumerate(("random_heads", "random_projection")):
        part = summary[summary["condition"] == cond].sort_values("k")
        if part.empty:
            continue
        ax.plot(part["k"], part["accuracy"], marker="o", color=palette[i], label=_LABELS[cond])
        ax.fill_between(part["k"], part["lowest"], part["highest"], color=palette[i], alpha=0.15, lw=0)
    for i, cond in enumerate(("best_head", "best_head_on_val", "layer"), start=2):
        part = summary[summary["condition"] == cond]
        if part.empty:
            continue
        r = part.iloc[0]
        ax.errorbar([r["k"]], [r["accuracy"]], yerr=[[r["accuracy"] - r["lowest"]], [r["highest"] - r["accuracy"]]],
                    fmt="s" if cond == "layer" else "D", color=palette[i], capsize=3, label=_LABELS[cond])
    ax.axhline(chance, color="grey", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="features pooled (heads' worth)", ylabel="validation accuracy", ylim=(min(0.4, chance - 0.1), 1.02))
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, stem)
