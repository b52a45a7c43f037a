"""Steering figures: the alpha sweep, cross-task correlation, letter probabilities, token projections."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tomlab.bigtom.conditions import TASK_TITLES
from tomlab.figures.common import save_figure
from tomlab.probing.probes import TARGET_TITLES

CONDITION_TITLES = {"true_belief": "True belief", "false_belief": "False belief",
                    "true_control": "True control", "false_control": "False control"}


def plot_alpha_sweep(table: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """Accuracy against intervention strength alpha, per condition and scoring mode (Figure 5).

    ``table``: rows of (direction, alpha, condition, mode, accuracy, ci_low, ci_high); one panel
    per direction, the 95% interval as a band.
    """
    directions = list(dict.fromkeys(table["direction"]))
    fig, axes = plt.subplots(1, len(directions), figsize=(4.6 * len(directions), 3.6), squeeze=False, sharey=True)
    palette = dict(zip(CONDITION_TITLES, sns.color_palette("colorblind", len(CONDITION_TITLES))))
    for ax, direction in zip(axes[0], directions, strict=True):
        sub = table[table["direction"] == direction].sort_values("alpha")
        for (condition, mode), frame in sub.groupby(["condition", "mode"], sort=False):
            style = "-" if mode == "generation" else "--"
            colour = palette.get(condition, "grey")
            ax.plot(frame["alpha"], frame["accuracy"], style, marker="o", color=colour,
                    label=f"{CONDITION_TITLES.get(condition, condition)}, {mode}")
            ax.fill_between(frame["alpha"], frame["ci_low"], frame["ci_high"], color=colour, alpha=0.12)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("alpha (shift in units of sigma)")
        ax.set_title(f"direction {direction}")
    axes[0][0].set_ylabel("accuracy (forward belief)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_cross_task(wide: pd.DataFrame, correlations: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """Per-head probe accuracy of one task against another's, one panel per (target, pair) (Figure 6)."""
    targets = [t for t in TARGET_TITLES if t in set(correlations["target"])]
    pairs = list(dict.fromkeys(zip(correlations["task_a"], correlations["task_b"])))
    fig, axes = plt.subplots(len(targets), len(pairs), figsize=(3.4 * len(pairs), 3.2 * len(targets)),
                             squeeze=False)
    for r, target in enumerate(targets):
        sub = wide[wide["target"] == target]
        for c, (a, b) in enumerate(pairs):
            ax = axes[r][c]
            sns.scatterplot(data=sub, x=a, y=b, ax=ax, s=10, alpha=0.6, edgecolor=None)
            lo = min(sub[a].min(), sub[b].min())
            ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8, ls=":")
            row = correlations[(correlations["target"] == target) & (correlations["task_a"] == a)
                               & (correlations["task_b"] == b)].iloc[0]
            ax.set_title(f"{TARGET_TITLES[target]}: r = {row['pearson_r']:.2f}", fontsize=9)
            ax.set_xlabel(TASK_TITLES.get(a, a))
            ax.set_ylabel(TASK_TITLES.get(b, b))
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_letter_probs(mech: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """Change in the probability of the correct and the wrong letter under each intervention (Figure 7).

    ``mech``: one row per (direction, item) with condition, ``delta_correct`` and ``delta_wrong``
    (steered minus plain next-token probability).
    """
    long = mech.melt(id_vars=["direction", "condition"], value_vars=["delta_correct", "delta_wrong"],
                     var_name="option", value_name="delta")
    long["option"] = long["option"].map({"delta_correct": "correct letter", "delta_wrong": "wrong letter"})
    long["condition"] = long["condition"].map(lambda c: CONDITION_TITLES.get(c, c))
    conditions = list(dict.fromkeys(long["condition"]))
    fig, axes = plt.subplots(1, len(conditions), figsize=(4.8 * len(conditions), 3.6), squeeze=False, sharey=True)
    for ax, condition in zip(axes[0], conditions, strict=True):
        sns.barplot(data=long[long["condition"] == condition], x="direction", y="delta", hue="option",
                    ax=ax, errorbar=("ci", 95), palette="colorblind", seed=0)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(condition)
        ax.set_xlabel("direction")
        ax.tick_params(axis="x", labelrotation=20)
    axes[0][0].set_ylabel("change in next-token probability")
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_token_projections(proj: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """Per-token projection on the steering direction, mean z over the chosen heads (Figure 8).

    ``proj``: rows of (story_id, condition, position, token, head, z); one panel per story, one line
    per condition; the x axis is the token position, the first position where the two versions of
    a story differ is marked.
    """
    mean = proj.groupby(["story_id", "condition", "position"], sort=False)["z"].mean().reset_index()
    stories = list(dict.fromkeys(mean["story_id"]))
    fig, axes = plt.subplots(len(stories), 1, figsize=(9.0, 2.4 * len(stories)), squeeze=False)
    for ax, story in zip(axes[:, 0], stories, strict=True):
        sub = mean[mean["story_id"] == story]
        sub = sub.assign(condition=sub["condition"].map(lambda c: CONDITION_TITLES.get(c, c)))
        sns.lineplot(data=sub, x="position", y="z", hue="condition", ax=ax, palette="colorblind", lw=1.0)
        tokens = proj[proj["story_id"] == story].drop_duplicates(["condition", "position"])
        by_cond = {c: f.sort_values("position")["token"].tolist() for c, f in tokens.groupby("condition")}
        if len(by_cond) == 2:
            a, b = by_cond.values()
            diverge = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            ax.axvline(diverge, color="grey", ls=":", lw=1)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(f"story {story}", fontsize=9)
        ax.set_ylabel("projection / sigma")
    fig.tight_layout()
    return save_figure(fig, stem)
