"""Doubts 3 and 5 in behaviour: the model's answers on perturbed and several-minds stories, plain and
steered along a direction learned on the original stories.

The item *sets* are: ``original`` (the evaluation stories), one per perturbation of those same
stories (see :mod:`tomlab.stress.perturb`), ``names@<seed>`` (GSM-Symbolic style: the same templates
under several draws of new names, whose accuracies form a distribution), and ``minds`` (the
several-minds items of :mod:`tomlab.stress.minds`). A perturbed item that is identical to its
original (the perturbation changed a sentence only the other condition reads) is dropped, so every
perturbed set scores only what changed. ``origin_story`` names the original story of every item, so
a perturbed set's accuracy can be compared with the original's on the same stories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab.bigtom.conditions import MAIN_TASK
from tomlab.bigtom.evaluation import build_items
from tomlab.stats import bootstrap_ci

ORIGINAL = "original"
MINDS = "minds"
SYMBOLIC_PREFIX = "names@"
CONDITIONS: tuple[str, ...] = ("true_belief", "false_belief")
MODE_COLUMNS: dict[str, str] = {"generation": "correct_pred", "log-likelihood": "ll_correct"}
"""Each scoring mode and the scored items' column that says whether it answered right."""
TABLE_COLUMNS: tuple[str, ...] = (
    "set", "task", "condition", "mode", "n", "plain", "plain_low", "plain_high", "steered", "delta", "delta_low",
    "delta_high", "versus_original", "versus_original_low", "versus_original_high",
)


def stress_items(original_conditions: str, eval_ids: Sequence[int], shifted: Mapping[str, tuple[str, pd.DataFrame]],
                 *, minds: pd.DataFrame | None = None, task: str = MAIN_TASK,
                 conditions: Sequence[str] = CONDITIONS, protocol: str = "original", seed: int = 0,
                 parser: str | None = None) -> pd.DataFrame:
    """Every item set in one frame (columns of :data:`tomlab.bigtom.evaluation.ITEM_COLUMNS` plus ``set``
    and ``origin_story``; ``item_id`` prefixed with the set).

    ``eval_ids`` are the original evaluation stories kept; ``shifted`` maps a set name to (its
    condition folder, its origin table: see :func:`tomlab.stress.transfer.origin_table`); a
    perturbed copy of a story outside ``eval_ids`` is not used."""
    kwargs = {"tasks": [task], "conditions": list(conditions), "protocol": protocol, "seed": seed, "parser": parser}
    eval_ids = [int(i) for i in eval_ids]
    base = build_items(original_conditions, story_ids=eval_ids, **kwargs).assign(set=ORIGINAL)
    base["origin_story"] = base["story_id"]
    frames = [base]
    key = base.set_index(["origin_story", "condition"])[["story", "question"]]
    for name, (folder, origin) in shifted.items():
        kept = origin[(origin["row"] >= 0) & origin["origin_story"].isin(eval_ids)].sort_values("origin_story")
        if kept.empty:
            continue
        items = build_items(folder, story_ids=kept["row"].tolist(), **kwargs)
        items["origin_story"] = items["story_id"].map(dict(zip(kept["row"], kept["origin_story"]))).astype(np.int64)
        before = key.loc[list(zip(items["origin_story"], items["condition"]))].to_numpy()
        changed = (items["story"].to_numpy() != before[:, 0]) | (items["question"].to_numpy() != before[:, 1])
        frames.append(items[changed].assign(set=name))
    if minds is not None and not minds.empty:
        frames.append(minds.assign(set=MINDS, origin_story=minds["story_id"]))
    out = pd.concat(frames, ignore_index=True)
    out["item_id"] = out["set"] + ":" + out["item_id"].astype(str)
    return out


def _paired_delta(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    low, high = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
    return float(diff.mean()), low, high


def behaviour_table(scored: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (set, task, condition, mode): plain accuracy with its interval; under the steering direction,
    accuracy and the paired change (``delta``); and, for perturbed sets, the paired change from the
    original items of the same stories (``versus_original``). Columns :data:`TABLE_COLUMNS`."""
    plain = scored[scored["direction"] == "none"]
    steered = scored[scored["direction"] != "none"].set_index("item_id")
    original = plain[plain["set"] == ORIGINAL].set_index(["origin_story", "condition"])
    rows: list[dict[str, Any]] = []
    for mode, col in MODE_COLUMNS.items():
        if col not in scored.columns:
            continue
        for (name, task, condition), frame in plain.groupby(["set", "task", "condition"], sort=False):
            values = frame[col].astype(float).to_numpy()
            low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed)
            row: dict[str, Any] = {"set": name, "task": task, "condition": condition, "mode": mode, "n": len(values),
                                   "plain": float(values.mean()), "plain_low": low, "plain_high": high}
            if len(steered):
                s = steered.loc[frame["item_id"], col].astype(float).to_numpy()
                row["steered"] = float(s.mean())
                row["delta"], row["delta_low"], row["delta_high"] = _paired_delta(s, values, n_boot, seed)
            if name not in (ORIGINAL, MINDS):
                o = original.loc[list(zip(frame["origin_story"], frame["condition"])), col].astype(float).to_numpy()
                (row["versus_original"], row["versus_original_low"],
                 row["versus_original_high"]) = _paired_delta(values, o, n_boot, seed)
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=list(TABLE_COLUMNS))


def symbolic_summary(table: pd.DataFrame) -> pd.DataFrame:
    """GSM-Symbolic's view: per mode and condition, the plain accuracy over the ``names@`` instantiations
    (mean, sd, lowest, highest, how many) beside the original's."""
    sym = table[table["set"].str.startswith(SYMBOLIC_PREFIX)]
    if sym.empty:
        return pd.DataFrame(columns=["mode", "condition", "instantiations", "mean", "sd", "lowest", "highest",
                                     "original"])
    out = sym.groupby(["mode", "condition"], sort=False)["plain"].agg(
        instantiations="count", mean="mean", sd="std", lowest="min", highest="max").reset_index()
    orig = table[table["set"] == ORIGINAL].set_index(["mode", "condition"])["plain"]
    out["original"] = [float(orig.get((m, c), np.nan)) for m, c in zip(out["mode"], out["condition"])]
    return out
