"""The report's steering section: display tables, the paper comparison and commentary."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.bigtom.conditions import MAIN_TASK, TASK_TITLES
from tomlab.manifest import Manifest
from tomlab.report.common import NOT_TRANSCRIBED, md_text

CONDITION_NAMES = {"true_belief": "TB", "false_belief": "FB", "true_control": "TB control",
                   "false_control": "FB control"}


DIRECTION_ORDER = ("none", "random", "+protagonist", "-oracle", "+tpfo", "mass_mean_protagonist")


# Table 1 of Zhu, Zhang & Wang (2024) for Mistral-7B. The stored copies of the paper available to
# this project hold only its abstract and introduction, so no cell is transcribed: every paper
# value says so rather than guessing.
PAPER_TABLE1: dict[tuple[str, str, str], float | str] = {
    (task, direction, cond): NOT_TRANSCRIBED
    for task in TASK_TITLES
    for direction in ("none", "random", "+protagonist", "-oracle", "+tpfo")
    for cond in ("true_belief", "false_belief")
}


PAPER_SOURCE = "Table 1 (Mistral-7B); values not available to this project"


def available(m: Manifest) -> bool:
    """Whether the steering results (the manifest's ``steering`` table) exist; the report says so
    plainly when they do not."""
    return m.exists("steering")


def _accuracy(m: Manifest) -> pd.DataFrame:
    return io.read_parquet(m.path("steering"))


def _interval(acc: float, low: float, high: float) -> str:
    if not math.isfinite(acc):
        return "–"
    return f"{acc:.2f} [{low:.2f}, {high:.2f}]"


def _delta(delta: float, low: float, high: float) -> str:
    if not math.isfinite(delta):
        return "–"
    mark = "" if low <= 0 <= high else " *"
    return f"{delta:+.2f} [{low:+.2f}, {high:+.2f}]{mark}"


def _direction_rank(direction: str) -> int:
    return DIRECTION_ORDER.index(direction) if direction in DIRECTION_ORDER else len(DIRECTION_ORDER)


def baseline_table(m: Manifest, name: str = "baseline") -> pd.DataFrame:
    """The plain model on every task and condition: accuracy [95% CI] per scoring mode, invalid rate.
    ``name="served"``: the same for the served model of ``evaluation.served`` (generation only)."""
    table = io.read_parquet(m.path(name))
    rows = []
    for (task, condition), frame in table.groupby(["task", "condition"], sort=False):
        row: dict[str, Any] = {"task": TASK_TITLES.get(task, task), "condition": CONDITION_NAMES.get(condition, condition),
                               "n": int(frame["n"].iloc[0])}
        for mode in ("generation", "log-likelihood"):
            sub = frame[frame["mode"] == mode]
            if not sub.empty:
                r = sub.iloc[0]
                row[f"{mode} accuracy"] = _interval(r["accuracy"], r["ci_low"], r["ci_high"])
                if mode == "generation":
                    row["invalid"] = float(r["invalid_rate"])
        rows.append(row)
    return pd.DataFrame(rows)


def steering_table(m: Manifest, *, cross: bool = False, mode: str = "generation") -> pd.DataFrame:
    """Table 1 (``cross=False``: each task steered with its own directions) or Table 2 (``cross=True``:
    forward-belief directions on the other tasks), one scoring mode.

    Rows: task, direction, site; for TB and FB the accuracy [95% CI] and the change from the plain
    model on the same items with its paired 95% interval (``*`` marks an interval that excludes 0).
    """
    acc = _accuracy(m)
    acc = acc[acc["mode"] == mode]
    if cross:
        steered = acc[(acc["source_task"] == MAIN_TASK) & (acc["task"] != MAIN_TASK) & (acc["direction"] != "none")]
    else:
        steered = acc[(acc["source_task"] == acc["task"]) & (acc["direction"] != "none")]
    base = acc[acc["direction"] == "none"]
    tasks = list(dict.fromkeys(steered["task"]))
    rows = []
    for task in tasks:
        groups = [("none", "")] + sorted(
            {(d, s) for d, s in zip(steered.loc[steered["task"] == task, "direction"],
                                    steered.loc[steered["task"] == task, "site"])},
            key=lambda ds: (_direction_rank(ds[0]), ds[1]),
        )
        for direction, site in groups:
            frame = base[base["task"] == task] if direction == "none" else steered[
                (steered["task"] == task) & (steered["direction"] == direction) & (steered["site"] == site)]
            row: dict[str, Any] = {"task": TASK_TITLES.get(task, task),
                                   "direction": "no intervention" if direction == "none" else direction,
                                   "site": site or "–"}
            for condition in ("true_belief", "false_belief"):
                sub = frame[frame["condition"] == condition]
                label = CONDITION_NAMES[condition]
                if sub.empty:
                    row[label], row[f"Δ {label}"] = "–", "–"
                    continue
                r = sub.iloc[0]
                row[label] = _interval(r["accuracy"], r["ci_low"], r["ci_high"])
                row[f"Δ {label}"] = "" if direction == "none" else _delta(r["delta"], r["delta_ci_low"], r["delta_ci_high"])
            rows.append(row)
    return pd.DataFrame(rows)


def sweep_table(m: Manifest, mode: str = "generation") -> pd.DataFrame:
    """Accuracy [95% CI] against alpha for each swept direction, TB and FB (the data of Figure 5)."""
    table = io.read_parquet(m.path("sweep"))
    table = table[table["mode"] == mode]
    rows = []
    for (direction, alpha), frame in table.groupby(["direction", "alpha"], sort=False):
        row: dict[str, Any] = {"direction": direction, "alpha": float(alpha)}
        for condition in ("true_belief", "false_belief"):
            sub = frame[frame["condition"] == condition]
            if not sub.empty:
                r = sub.iloc[0]
                row[CONDITION_NAMES[condition]] = _interval(r["accuracy"], r["ci_low"], r["ci_high"])
                row[f"invalid {CONDITION_NAMES[condition]}"] = float(r["invalid_rate"])
        rows.append(row)
    return pd.DataFrame(rows)


def cross_task_table(m: Manifest) -> pd.DataFrame:
    """Correlation of per-head probe accuracies between tasks, per target (the data of Figure 6)."""
    corr = io.read_parquet(m.path("cross"))
    return pd.DataFrame({
        "target": corr["target"],
        "tasks": [f"{TASK_TITLES.get(a, a)} vs {TASK_TITLES.get(b, b)}" for a, b in zip(corr["task_a"], corr["task_b"])],
        "Pearson r": corr["pearson_r"].astype(float),
        "Spearman ρ": corr["spearman_rho"].astype(float),
        "shared top-k heads": [f"{o} of {k}" for o, k in zip(corr["top_k_overlap"], corr["top_k"])],
    })


def letter_bias(scored: pd.DataFrame) -> dict[str, float]:
    """Share of the plain model's parsed generations that chose a, chose b, or were invalid."""
    if "parsed" not in scored.columns or scored.empty:
        return {}
    counts = scored["parsed"].value_counts(normalize=True)
    return {k: float(counts.get(k, 0.0)) for k in ("a", "b", "invalid")}


def _invalid_note(scored: pd.DataFrame) -> str:
    """Why most generated answers could not be read: empty completions, the protocol, the parsers."""
    from tomlab.bigtom.evaluation import items_protocol, parser_table

    empty = float((scored["completion"].str.strip() == "").mean()) if "completion" in scored else float("nan")
    note = f"{empty:.0%} of the completions are empty (the model ended its turn at once)." if empty > 0 else ""
    if "parsed_lenient" in scored.columns:
        both = parser_table(scored, by=())
        note += (f" The lenient parser reads {1 - both.loc[0, 'invalid_lenient']:.0%} of the answers "
                 f"(accuracy {both.loc[0, 'accuracy_lenient']:.2f}).")
    if items_protocol(scored) == "original":
        note += (" These items follow the released protocol, plain text without the chat template; a chat model "
                 "may need its template to answer (`evaluation.chat_template: true`, or `evaluation.protocol: "
                 "tomlab`), and the log-likelihood scores do not depend on reading an answer.")
    return note.strip()


def parser_comparison(m: Manifest) -> pd.DataFrame:
    """The plain model's generation accuracy and invalid rate per task and condition under the released
    parser and tomlab's lenient one, side by side; empty if the run scored no generations."""
    from tomlab.bigtom.evaluation import parser_table

    scored = io.read_parquet(m.path("baseline_scored"))
    if scored.empty or "parsed_original" not in scored.columns:
        return pd.DataFrame()
    table = parser_table(scored)
    return pd.DataFrame({
        "task": [TASK_TITLES.get(t, t) for t in table["task"]],
        "condition": [CONDITION_NAMES.get(c, c) for c in table["condition"]],
        "n": table["n"],
        "acc. (released parser)": table["accuracy_original"],
        "invalid (released)": table["invalid_original"],
        "acc. (lenient parser)": table["accuracy_lenient"],
        "invalid (lenient)": table["invalid_lenient"],
    })


def paper_comparison(m: Manifest, mode: str = "generation") -> pd.DataFrame:
    """Paper (Table 1, Mistral-7B) vs this run: one row per task and direction, TB and FB columns,
    this run's value per capture site."""
    acc = _accuracy(m)
    acc = acc[(acc["mode"] == mode) & ((acc["source_task"] == acc["task"]) | (acc["direction"] == "none"))]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (task, direction, condition), paper in PAPER_TABLE1.items():
        sub = acc[(acc["task"] == task) & (acc["direction"] == direction) & (acc["condition"] == condition)]
        ours = ", ".join(f"{r.accuracy:.2f} ({r.site})" if r.site else f"{r.accuracy:.2f}"
                         for r in sub.itertuples()) or "not run"
        row = rows.setdefault((task, direction), {
            "task": TASK_TITLES.get(task, task),
            "direction": "no intervention" if direction == "none" else direction})
        label = CONDITION_NAMES[condition]
        row[f"paper {label}"] = paper
        row[f"ours {label}"] = ours
    return pd.DataFrame(list(rows.values()))


def _n_items(acc: pd.DataFrame) -> int:
    steered = acc[acc["direction"] != "none"]
    return int(steered["n"].min()) if not steered.empty else int(acc["n"].min())


def steering_commentary(m: Manifest, mode: str = "generation") -> str:
    """What the steering numbers say, generated from them: baseline against chance and position
    bias, which interventions move accuracy beyond item noise (paired interval excluding 0), and
    how the probe directions compare with the random control."""
    acc = _accuracy(m)
    out: list[str] = []
    base = acc[(acc["direction"] == "none") & (acc["mode"] == mode)]
    belief = base[base["condition"].isin(["true_belief", "false_belief"])]
    if not belief.empty:
        overall = float((belief["accuracy"] * belief["n"]).sum() / belief["n"].sum())
        ll = acc[(acc["direction"] == "none") & (acc["mode"] == "log-likelihood")
                 & acc["condition"].isin(["true_belief", "false_belief"])]
        ll_text = ""
        if not ll.empty:
            ll_acc = float((ll["accuracy"] * ll["n"]).sum() / ll["n"].sum())
            ll_text = f" Scoring by log-likelihood instead gives {ll_acc:.2f}."
        n_cell = int(belief["n"].min())
        half = 1.96 * math.sqrt(0.25 / n_cell) if n_cell else float("nan")
        out.append(
            f"**Baseline.** Without intervention the model answers {overall:.2f} of the true- and false-belief "
            f"items correctly ({mode}; chance is 0.50).{ll_text} Each cell holds {n_cell} items or more, so a "
            f"cell's 95% interval spans roughly ±{half:.2f} around an accuracy near 0.5: differences smaller "
            "than that between cells are not evidence of anything."
        )
    scored = io.read_parquet(m.path("baseline_scored"))
    bias = letter_bias(scored)
    if bias:
        top = max(("a", "b"), key=lambda k: bias[k])
        text = (f"The plain model's generated answers chose a {bias['a']:.0%} of the time, b {bias['b']:.0%}, "
                f"and were unparseable {bias['invalid']:.0%} of the time.")
        if bias[top] >= 0.8:
            text += (f" That is a position bias: the model picks {top} whatever the story says, so its accuracy "
                     "mostly measures how often the correct option happens to sit in that slot, and an "
                     "intervention can only matter by breaking the bias.")
        if bias["invalid"] >= 0.5:
            text += " " + _invalid_note(scored)
        out.append(text)
    steered = acc[(acc["direction"] != "none") & (acc["mode"] == mode)]
    if not steered.empty:
        beyond = steered[(steered["delta_ci_low"] > 0) | (steered["delta_ci_high"] < 0)]
        out.append(
            f"**Interventions.** Of {len(steered)} steered cells (task, direction source, direction, site, "
            f"condition), {len(beyond)} change accuracy by more than item noise (paired 95% interval of the "
            "change excluding 0, marked * in the tables); the rest are within noise."
        )
        if not beyond.empty:
            ordered = beyond.reindex(beyond["delta"].abs().sort_values(ascending=False).index).head(4)
            parts = [
                f"{md_text(r.direction)} at {md_text(r.site)} on {md_text(TASK_TITLES.get(r.task, r.task))} "
                f"{md_text(CONDITION_NAMES.get(r.condition, r.condition))} ({r.delta:+.2f})"
                + ("" if r.source_task == r.task
                   else f", directions from {md_text(TASK_TITLES.get(r.source_task, r.source_task))}")
                for r in ordered.itertuples()
            ]
            out.append("The largest of them: " + "; ".join(parts) + ".")
        other = "log-likelihood" if mode == "generation" else "generation"
        alt = acc[(acc["direction"] != "none") & (acc["mode"] == other)]
        if not alt.empty:
            alt_beyond = alt[(alt["delta_ci_low"] > 0) | (alt["delta_ci_high"] < 0)]
            out.append(
                f"Scored by {other} instead, {len(alt_beyond)} of {len(alt)} steered cells move beyond noise."
            )
        rand = steered[steered["direction"] == "random"]["delta"].abs()
        probe = steered[steered["direction"] != "random"]["delta"].abs()
        if not rand.empty and not probe.empty:
            one_item = 1.0 / max(int(steered["n"].min()), 1)
            if abs(probe.mean() - rand.mean()) < one_item:
                out.append(
                    f"The probe directions move accuracy about as much as the random direction does (mean absolute "
                    f"change {probe.mean():.2f} against {rand.mean():.2f}, a difference smaller than one item in a "
                    "cell): on this evidence the heads' belief directions have no specific causal effect on the "
                    "answers beyond that of any push of the same size."
                )
            elif probe.mean() < rand.mean():
                out.append(
                    f"The probe directions move accuracy less than the random direction does (mean absolute "
                    f"change {probe.mean():.2f} against {rand.mean():.2f}): on this evidence the heads' belief "
                    "directions have no specific causal effect on the answers."
                )
            else:
                out.append(
                    f"The probe directions move accuracy more than the random direction on average (mean absolute "
                    f"change {probe.mean():.2f} against {rand.mean():.2f}); read that against the intervals "
                    "above before calling it an effect."
                )
        fb = steered[(steered["direction"] == "+tpfo") & (steered["condition"] == "false_belief")
                     & (steered["source_task"] == steered["task"])]
        if not fb.empty:
            out.append(
                "The paper's headline is that +TpFo raises false-belief accuracy. Here the change on FB items "
                "with each task's own +TpFo directions is "
                + "; ".join(f"{md_text(TASK_TITLES.get(r.task, r.task))} at {md_text(r.site)}: "
                            f"{_delta(r.delta, r.delta_ci_low, r.delta_ci_high)}"
                            for r in fb.itertuples()) + "."
            )
    return "\n\n".join(out)


def free_text_markdown(m: Manifest, max_stories: int | None = None) -> str:
    """The free-text generations, verbatim: for each story and condition the question, then the
    model's answer without intervention and under each configured intervention."""
    texts = io.read_parquet(m.path("free_text"))
    blocks: list[str] = []
    stories = list(dict.fromkeys(texts["story_id"]))
    if max_stories is not None:
        stories = stories[:max_stories]
    for story_id in stories:
        sub = texts[texts["story_id"] == story_id]
        for condition, frame in sub.groupby("condition", sort=False):
            first = frame.iloc[0]
            question = str(first["prompt"]).split("\nQuestion: ", 1)[-1].removesuffix("\nAnswer:")
            blocks.append(
                f"**Story {md_text(story_id)}, {md_text(CONDITION_NAMES.get(condition, condition))}.** "
                f"{md_text(question)}  \n"
                f"Correct: *{md_text(first['correct'])}*"
            )
            for r in frame.itertuples():
                label = ("no intervention" if r.direction == "none"
                         else f"{md_text(r.direction)}, alpha {r.alpha:g} at {md_text(r.site)}")
                body = str(r.completion).strip() or "(empty)"
                fence = "`" * max(3, _longest_backtick_run(body) + 1)
                blocks.append(f"{label}:\n\n{fence}text\n{body}\n{fence}")
    return "\n\n".join(blocks) if blocks else "*(no free-text generations)*"


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return longest
