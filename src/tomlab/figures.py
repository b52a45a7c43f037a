"""Figures, one function per figure, each saved as PNG and SVG (atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tomlab.io import atomic_path  # noqa: E402

TARGET_TITLES = {"oracle": "Oracle belief", "protagonist": "Protagonist belief", "joint": "Joint (4-class)"}
CHANCE = {"oracle": 0.5, "protagonist": 0.5, "joint": 0.25}


def save_figure(fig: plt.Figure, stem: str | os.PathLike[str]) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.svg`` and close it."""
    paths = []
    for ext in ("png", "svg"):
        final = Path(f"{stem}.{ext}")
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        paths.append(final)
    plt.close(fig)
    return paths


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


TASK_TITLES = {"forward_belief": "Forward belief", "forward_action": "Forward action",
               "backward_belief": "Backward belief"}
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


TEAM_ORDER = ("random", "planner", "mappo", "llm", "llm_belief")


def plot_team_rounds(episodes: pd.DataFrame, stem: str | os.PathLike[str], max_rounds: int = 30) -> list[Path]:
    """Rounds to defuse every bomb per agent type, one dot per episode (the round limit for an
    episode that did not finish), with the score as the dot's colour."""
    order = [a for a in TEAM_ORDER if a in set(episodes["agent_type"])] + sorted(
        set(episodes["agent_type"]) - set(TEAM_ORDER))
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


DEBATE_ORDER = ("direct", "cot", "self_consistency", "self_reflection", "debate", "debate_forced",
                "debate_affirmative")


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
        ax.text(0.5, 0.5, "no round in which every debater gave an answer", ha="center", va="center",
                transform=ax.transAxes)
    else:
        sns.lineplot(data=table, x="round", y="disagreement", marker="o", ax=ax)
        ax.set_xticks(sorted(table["round"].unique()))
        for r in table.itertuples():
            if pd.notna(r.disagreement):
                ax.annotate(f"{r.answered}/{r.debates}", (r.round, r.disagreement), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=7)
    ax.set(ylabel="share in disagreement", xlabel="round", ylim=(-0.02, 1.1))
    return save_figure(fig, stem)
