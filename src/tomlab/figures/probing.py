"""Probing figures: per-head accuracy and selectivity heatmaps."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tomlab.figures.common import save_figure
from tomlab.probing.probes import CHANCE, TARGET_TITLES


def _grid(heads: pd.DataFrame, target: str, value: str) -> pd.DataFrame:
    sub = heads[heads["target"] == target]
    if sub.empty:
        raise ValueError(f"no rows for target {target!r} in the head table")
    return sub.pivot(index="layer", columns="head", values=value).sort_index()


def _heatmaps(heads: pd.DataFrame, value: str, title: str, centre_on_chance: bool) -> plt.Figure:
    targets = [t for t in TARGET_TITLES if t in set(heads["target"])]
    n_layers = heads["layer"].nunique()
    n_heads = heads["head"].nunique()
    width = max(3.0, 0.28 * n_heads + 1.5)
    height = max(3.0, 0.16 * n_layers + 1.2)
    fig, axes = plt.subplots(1, len(targets), figsize=(width * len(targets), height), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        grid = _grid(heads, target, value)
        if centre_on_chance:
            vmin, vmax, cmap = CHANCE[target], 1.0, "viridis"
        else:
            vmin, vmax, cmap = -0.5, 0.5, "vlag"
        sns.heatmap(grid, ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, cbar=True, square=False,
                    xticklabels=max(1, n_heads // 8), yticklabels=max(1, n_layers // 10))
        ax.invert_yaxis()  # layer 0 at the bottom, as in the paper
        ax.set_title(TARGET_TITLES[target])
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_probe_accuracy(heads: pd.DataFrame, stem: str | os.PathLike[str], site: str = "") -> list[Path]:
    """Validation accuracy of the per-head probes, layers x heads, one panel per target (Figure 2)."""
    title = f"Probe validation accuracy per head{f' ({site})' if site else ''}"
    return save_figure(_heatmaps(heads, "val_acc", title, centre_on_chance=True), stem)


def plot_probe_selectivity(heads: pd.DataFrame, stem: str | os.PathLike[str], site: str = "") -> list[Path]:
    """Selectivity (accuracy minus the shuffled-label control's), layers x heads, one panel per target."""
    title = f"Selectivity: accuracy minus shuffled-label control{f' ({site})' if site else ''}"
    return save_figure(_heatmaps(heads, "selectivity", title, centre_on_chance=False), stem)
