"""Stress-test figures: the decodability curve, accuracy under shift, the top heads' overlap."""

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


def plot_transfer(stats: pd.DataFrame, stem: str | os.PathLike[str], chance: float = 0.5) -> list[Path]:
    """Accuracy of the top heads (trained on the originals) on each story set, with the lexical baseline
    beside it and the same stories unperturbed behind it; 95% bootstrap intervals."""
    fig, ax = plt.subplots(figsize=(7.0, 3.4))
    palette = sns.color_palette("colorblind")
    x = range(len(stats))
    for offset, (col, low, high, label, colour) in zip(
            (-0.2, 0.2), (("top_acc", "top_acc_low", "top_acc_high", "top heads", palette[0]),
                          ("lexical_acc", "lexical_low", "lexical_high", "bag of words", palette[1]))):
        pos = [i + offset for i in x]
        yerr = [(stats[col] - stats[low]).clip(lower=0), (stats[high] - stats[col]).clip(lower=0)]
        ax.errorbar(pos, stats[col], yerr=yerr, fmt="o", capsize=3,
                    color=colour, label=label)
    ax.scatter([i - 0.2 for i in x], stats["original_top_acc"], marker="_", s=200, color="black",
               label="top heads, same stories unperturbed")
    ax.axhline(chance, color="grey", ls=":", lw=1)
    ax.set_xticks(list(x), [s.replace("_", " ") for s in stats["shift"]], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, stem)


def plot_overlap(overlap: pd.DataFrame, stem: str | os.PathLike[str], top_k: int = 16) -> list[Path]:
    """Jaccard overlap of the top heads between every two story sets."""
    labels = [s.replace("_", " ") for s in overlap.index]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    sns.heatmap(overlap.to_numpy(), vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", annot_kws={"size": 7},
                xticklabels=labels, yticklabels=labels, ax=ax, cbar_kws={"label": f"Jaccard of top-{top_k} heads"})
    ax.tick_params(labelsize=7)
    return save_figure(fig, stem)


def plot_minds(maps: dict[str, pd.DataFrame], stem: str | os.PathLike[str]) -> list[Path]:
    """Per-head validation accuracy (layer x head) of the several-minds probes, one panel per group
    (first-order and second-order belief)."""
    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 4.2), squeeze=False)
    for ax, (group, table) in zip(axes[0], maps.items()):
        sns.heatmap(table, vmin=0.3, vmax=1.0, cmap="viridis", ax=ax, cbar=ax is axes[0][-1],
                    cbar_kws={"label": "validation accuracy"})
        ax.set(title=group.replace("_", " ") + " belief", xlabel="head", ylabel="layer")
        ax.invert_yaxis()
        ax.tick_params(labelsize=6)
    return save_figure(fig, stem)


def plot_head_maps(correct: pd.DataFrame, stem: str | os.PathLike[str], chance: float = 0.5) -> list[Path]:
    """Every head's accuracy on each story set against its accuracy on the original validation stories
    (one panel per set; probes trained on the originals), with the diagonal: the per-head maps whose
    correlation and top-head overlap the stress table reports."""
    heads = correct[(correct["method"] == "head") & ~correct["shift"].str.startswith("inner")]
    acc = heads.groupby(["shift", "layer", "head"], sort=False)["correct"].mean().rename("accuracy").reset_index()
    original = acc[acc["shift"] == "original"].set_index(["layer", "head"])["accuracy"]
    shifts = [s for s in dict.fromkeys(acc["shift"]) if s != "original"]
    cols = min(4, max(1, len(shifts)))
    rows = -(-len(shifts) // cols) if shifts else 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.3 * rows), squeeze=False, sharex=True, sharey=True)
    for ax in axes.ravel()[len(shifts):]:
        ax.set_visible(False)
    for ax, shift in zip(axes.ravel(), shifts):
        part = acc[acc["shift"] == shift].set_index(["layer", "head"])["accuracy"]
        x = original.reindex(part.index)
        ax.scatter(x, part, s=6, alpha=0.6, color=sns.color_palette("colorblind")[0], lw=0)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.axhline(chance, color="grey", ls=":", lw=0.8)
        ax.axvline(chance, color="grey", ls=":", lw=0.8)
        ax.set_title(shift.replace("_", " "), fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("originals", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("this set", fontsize=7)
    return save_figure(fig, stem)
