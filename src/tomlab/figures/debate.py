"""Debate figures: accuracy per method, and disagreement per round."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tomlab.debate.protocol import METHODS
from tomlab.figures.common import save_figure

DEBATE_ORDER = (*METHODS, "debate_affirmative")


def plot_debate_accuracy(table: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """Accuracy per method with its 95% interval (counter-intuitive arithmetic)."""
    order = [m for m in DEBATE_ORDER if m in set(table["method"])]
    t = table.set_index("method").loc[order].reset_index()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.errorbar(t["method"], t["accuracy"], yerr=[t["accuracy"] - t["ci_low"], t["ci_high"] - t["accuracy"]],
                fmt="o", color="C0", capsize=3)
    ax.set(ylabel="accuracy", ylim=(-0.02, 1.02), xlabel="")
    ax.tick_params(axis="x", rotation=20)
    return save_figure(fig, stem)


def plot_debate_disagreement(table: pd.DataFrame, stem: str | os.PathLike[str]) -> list[Path]:
    """Per round, the share of debates whose debaters end on different numbers, over the debates in
    which every debater gave one (annotated as answered / reached)."""
    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    if table.empty or table["disagreement"].isna().all():
        note = "no adaptive debate was run" if table.empty else "no round in which every debater gave an answer"
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)
    else:
        sns.lineplot(data=table, x="round", y="disagreement", marker="o", ax=ax)
        ax.set_xticks(sorted(table["round"].unique()))
        for r in table.itertuples():
            if pd.notna(r.disagreement):
                ax.annotate(f"{r.answered}/{r.debates}", (r.round, r.disagreement), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=7)
    ax.set(ylabel="share in disagreement", xlabel="round", ylim=(-0.02, 1.1))
    return save_figure(fig, stem)
