"""Team-game figures: rounds per agent type, and MAPPO's learning curve."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tomlab.figures.common import save_figure
from tomlab.team import AGENT_TYPES


def plot_team_rounds(episodes: pd.DataFrame, stem: str | os.PathLike[str], max_rounds: int = 30) -> list[Path]:
    """Rounds to defuse every bomb per agent type, one dot per episode (the round limit for an
    episode that did not finish), with the score as the dot's colour."""
    order = [a for a in AGENT_TYPES if a in set(episodes["agent_type"])] + sorted(
        set(episodes["agent_type"]) - set(AGENT_TYPES))
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    sns.boxplot(data=episodes, x="agent_type", y="rounds", order=order, color="0.9", showfliers=False, ax=ax)
    sns.stripplot(data=episodes, x="agent_type", y="rounds", order=order, hue="score", palette="viridis",
                  size=6, jitter=0.15, ax=ax)
    ax.axhline(max_rounds, color="grey", ls=":", lw=1)
    ax.set(xlabel="", ylabel="rounds to completion", ylim=(0, max_rounds + 2))
    ax.legend(title="score", fontsize=7, title_fontsize=8, loc="lower right")
    return save_figure(fig, stem)


def plot_mappo_curve(curve: pd.DataFrame, stem: str | os.PathLike[str], window: int = 20) -> list[Path]:
    """MAPPO's learning curve: team score and rounds per training episode, smoothed."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
    if curve.empty:
        for ax in axes:
            ax.text(0.5, 0.5, "no MAPPO training episode", ha="center", va="center", transform=ax.transAxes)
    else:
        w = max(1, min(window, len(curve) // 5 or 1))
        for ax, col in zip(axes, ("score", "rounds")):
            ax.plot(curve["timestep"], curve[col], color="0.8", lw=0.6)
            ax.plot(curve["timestep"], curve[col].rolling(w, min_periods=1).mean(), color="C0", lw=1.5)
            ax.set(xlabel="training step (round)", ylabel=col)
    fig.tight_layout()
    return save_figure(fig, stem)
