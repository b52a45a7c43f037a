"""Cross-task correlation, the steering figures and the report section's tables and commentary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.layout import layout_manifest
from tomlab.cli.main import main
from tomlab.figures.steering import (
    plot_alpha_sweep,
    plot_cross_task,
    plot_letter_probs,
    plot_token_projections,
)
from tomlab.probing.probes import cross_task_correlation
from tomlab.report import steering as S
from tomlab.report.common import NOT_TRANSCRIBED, to_markdown


def _heads(values, target="oracle", layers=2, heads=3):
    rows = []
    for (l, h), v in zip(((l, h) for l in range(layers) for h in range(heads)), values):
        rows.append({"target": target, "layer": l, "head": h, "val_acc": v})
    return pd.DataFrame(rows)


def test_cross_task_correlation_by_hand():
    a = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    b = [0.55, 0.65, 0.75, 0.85, 0.95, 0.99]  # same order as a
    c = list(reversed(a))
    wide, corr = cross_task_correlation({"forward_belief": _heads(a), "forward_action": _heads(b),
                                         "backward_belief": _heads(c)}, top_k=2)
    assert len(wide) == 6 and {"forward_belief", "forward_action", "backward_belief"} <= set(wide.columns)
    fa = corr[(corr["task_a"] == "forward_belief") & (corr["task_b"] == "forward_action")].iloc[0]
    assert fa["spearman_rho"] == pytest.approx(1.0) and fa["pearson_r"] > 0.99
    assert fa["top_k_overlap"] == 2
    fb = corr[(corr["task_a"] == "forward_belief") & (corr["task_b"] == "backward_belief")].iloc[0]
    assert fb["pearson_r"] == pytest.approx(-1.0) and fb["top_k_overlap"] == 0
    with pytest.raises(ValueError, match="at least two tasks"):
        cross_task_correlation({"forward_belief": _heads(a)})
    with pytest.raises(ValueError, match="lacks column"):
        cross_task_correlation({"x": _heads(a).drop(columns="val_acc"), "y": _heads(b)})


def test_constant_accuracies_give_nan_not_an_error():
    _, corr = cross_task_correlation({"a": _heads([0.5] * 6), "b": _heads([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])})
    assert np.isnan(corr["pearson_r"].iloc[0])


def _fake_results(root, *, bias_b=True, effect=0.0):
    """A results directory with the files the Steering section reads."""
    (root / "eval" / "baseline").mkdir(parents=True)
    (root / "steering" / "sweep").mkdir(parents=True)
    (root / "steering" / "cross_task").mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 30
    rows, scored = [], []
    tasks = ("forward_belief", "forward_action", "backward_belief")
    for task in tasks:
        for condition in ("true_belief", "false_belief"):
            for mode in ("generation", "log-likelihood"):
                rows.append({"task": task, "condition": condition, "mode": mode, "n": n, "accuracy": 0.5,
                             "ci_low": 0.32, "ci_high": 0.68, "invalid_rate": 0.1 if mode == "generation" else np.nan})
            for i in range(n):
                scored.append({"item_id": f"{i}/{task}/{condition}", "task": task, "condition": condition,
                               "parsed": "b" if bias_b or i % 2 else "a"})
    pd.DataFrame(rows).to_parquet(root / "eval" / "baseline" / "accuracy.parquet")
    pd.DataFrame(scored).to_parquet(root / "eval" / "baseline" / "scored.parquet")
    acc = []
    for mode in ("generation", "log-likelihood"):
        for task in tasks:
            for condition in ("true_belief", "false_belief"):
                acc.append({"source_task": "", "task": task, "direction": "none", "site": "", "condition": condition,
                            "alpha": 0.0, "mode": mode, "n": n, "accuracy": 0.5, "ci_low": 0.32, "ci_high": 0.68,
                            "invalid_rate": 0.1, "baseline": 0.5, "delta": 0.0, "delta_ci_low": 0.0,
                            "delta_ci_high": 0.0})
                sources = [task] + (["forward_belief"] if task != "forward_belief" else [])
                for source in sources:
                    for direction in ("random", "+tpfo"):
                        d = effect if (direction == "+tpfo" and condition == "false_belief") else 0.0
                        acc.append({"source_task": source, "task": task, "direction": direction, "site": "head_z",
                                    "condition": condition, "alpha": 20.0, "mode": mode, "n": n,
                                    "accuracy": 0.5 + d, "ci_low": 0.3 + d, "ci_high": 0.7 + d, "invalid_rate": 0.1,
                                    "baseline": 0.5, "delta": d, "delta_ci_low": d - 0.1 if d else -0.1,
                                    "delta_ci_high": d + 0.1 if d else 0.1})
    pd.DataFrame(acc).to_parquet(root / "steering" / "accuracy.parquet")
    sweep = [{"direction": "+tpfo", "alpha": a, "task": "forward_belief", "condition": c, "mode": m, "n": n,
              "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "invalid_rate": 0.0}
             for a in (0.0, 10.0) for c in ("true_belief", "false_belief") for m in ("generation", "log-likelihood")]
    pd.DataFrame(sweep).to_parquet(root / "steering" / "sweep" / "accuracy.parquet")
    pd.DataFrame([{"target": "oracle", "task_a": "forward_belief", "task_b": "forward_action", "pearson_r": 0.4,
                   "spearman_rho": 0.3, "n_heads": 6, "top_k": 2, "top_k_overlap": 1}]).to_parquet(
        root / "steering" / "cross_task" / "correlations.parquet")
    pd.DataFrame([
        {"story_id": 0, "task": "forward_belief", "condition": "false_belief", "direction": d, "alpha": a,
         "site": "head_z", "prompt": "Story: x.\nQuestion: Does Ada think the jar is full?\nAnswer:",
         "completion": text, "correct": "Ada believes the jar is full.", "wrong": "Ada believes it is empty."}
        for d, a, text in (("none", 0.0, " She thinks it is full."), ("+tpfo", 20.0, "```odd``` text"))
    ]).to_parquet(root / "steering" / "free_text.parquet")
    return rng


def test_tables_and_commentary_read_the_numbers(tmp_path):
    _fake_results(tmp_path, bias_b=True, effect=0.3)
    assert S.available(layout_manifest(tmp_path))
    t1 = S.steering_table(layout_manifest(tmp_path))
    assert set(t1["task"]) == {"Forward belief", "Forward action", "Backward belief"}
    row = t1[(t1["task"] == "Forward belief") & (t1["direction"] == "+tpfo")].iloc[0]
    assert row["Δ FB"].endswith("*") and row["Δ FB"].startswith("+0.30")
    assert not row["Δ TB"].endswith("*")
    t2 = S.steering_table(layout_manifest(tmp_path), cross=True)
    assert set(t2["task"]) == {"Forward action", "Backward belief"}
    text = S.steering_commentary(layout_manifest(tmp_path))
    assert "position bias" in text and "picks b" in text
    # +tpfo on FB items: three tasks with their own directions and two with forward-belief ones
    assert "Of 20 steered cells" in text and "5 change accuracy by more than item noise" in text
    assert "move accuracy more than the random direction" in text
    assert "Scored by log-likelihood instead, 5 of 20 steered cells move beyond noise" in text
    comp = S.paper_comparison(layout_manifest(tmp_path))
    assert set(comp["paper TB"]) | set(comp["paper FB"]) == {NOT_TRANSCRIBED}
    assert len(comp) == 3 * 5 and comp["ours FB"].str.contains("head_z").any()
    assert "|" in to_markdown(S.baseline_table(layout_manifest(tmp_path))) and len(S.sweep_table(layout_manifest(tmp_path))) == 2
    md = S.free_text_markdown(layout_manifest(tmp_path))
    assert "She thinks it is full." in md and "````text" in md  # a longer fence around backticks
    assert r"Does Ada think the jar is full\?" in md  # data text, escaped for markdown


def test_commentary_without_effects_says_within_noise(tmp_path):
    _fake_results(tmp_path, bias_b=False, effect=0.0)
    text = S.steering_commentary(layout_manifest(tmp_path))
    assert "0 change accuracy by more than item noise" in text
    assert "position bias" not in text
    assert "about as much as the random direction" in text


def test_commentary_calls_a_sub_item_difference_a_tie(tmp_path):
    # 30 items a cell: a mean |change| gap below 1/30 is less than one item and must not read as an effect
    _fake_results(tmp_path, bias_b=False, effect=0.05)
    text = S.steering_commentary(layout_manifest(tmp_path))
    assert "about as much as the random direction" in text
    _fake_results(tmp_path / "big", bias_b=False, effect=0.4)
    assert "more than the random direction on average" in S.steering_commentary(layout_manifest(tmp_path / "big"))


def test_missing_results_are_reported_not_raised(tmp_path):
    assert not S.available(layout_manifest(tmp_path))


def test_steering_figures_are_written(tmp_path):
    sweep = pd.DataFrame([{"direction": d, "alpha": a, "condition": c, "mode": m, "accuracy": 0.5 + a / 100,
                           "ci_low": 0.4, "ci_high": 0.7}
                          for d in ("+tpfo", "random") for a in (0.0, 10.0, 20.0)
                          for c in ("true_belief", "false_belief") for m in ("generation", "log-likelihood")])
    wide = pd.DataFrame({"target": "oracle", "layer": [0, 0, 1], "head": [0, 1, 0], "forward_belief": [0.5, 0.7, 0.9],
                         "forward_action": [0.6, 0.6, 0.8]})
    corr = pd.DataFrame([{"target": "oracle", "task_a": "forward_belief", "task_b": "forward_action",
                          "pearson_r": 0.7}])
    letters = pd.DataFrame({"direction": ["+tpfo", "random"] * 4, "condition": ["true_belief"] * 4 + ["false_belief"] * 4,
                            "delta_correct": np.linspace(-0.1, 0.1, 8), "delta_wrong": np.linspace(0.1, -0.1, 8)})
    proj = pd.DataFrame({"story_id": 0, "condition": ["true_belief"] * 3 + ["false_belief"] * 3,
                         "position": [0, 1, 2] * 2, "token": ["a", "b", "c", "a", "x", "y"], "head": 0,
                         "z": [0.1, 0.2, 0.3, 0.1, -0.2, -0.4]})
    for fn, args, stem in ((plot_alpha_sweep, (sweep,), "sweep"), (plot_cross_task, (wide, corr), "cross"),
                           (plot_letter_probs, (letters,), "letters"), (plot_token_projections, (proj,), "proj")):
        paths = fn(*args, tmp_path / stem)
        assert [p.suffix for p in paths] == [".png", ".svg"]
        assert all(p.stat().st_size > 1000 for p in paths)


def test_cli_steer_rejects_a_pair_without_inputs(tmp_path, capsys):
    items = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": ["0/forward_belief/true_belief"], "task": ["forward_belief"]}).to_parquet(items)
    with pytest.raises(SystemExit, match="needs --directions for 'forward_action'"):
        main(["steer", "--model", "random:llama", "--items", str(items), "--site", "head_z", "--kinds", "plus_tpfo",
              "--pairs", "forward_action:forward_belief", "--directions", f"forward_belief={tmp_path}/d.npz",
              "--activations", f"forward_belief={tmp_path}/a.npy", "--out", str(tmp_path / "out.parquet")])
    with pytest.raises(SystemExit, match="TASK=PATH"):
        main(["cross-task", "--heads", "nonsense", "--out-wide", "w", "--out-correlations", "c"])
    assert not (tmp_path / "out.parquet").exists()


def test_commentary_explains_unreadable_answers_under_the_released_protocol(tmp_path):
    _fake_results(tmp_path, bias_b=False, effect=0.0)
    n = 10
    scored = pd.DataFrame({
        "item_id": [f"{i}/forward_belief/true_belief" for i in range(n)],
        "task": "forward_belief", "condition": "true_belief", "answer_letter": "a", "protocol": "original",
        "completion": [""] * 8 + ["\na) yes", " a) yes"],
        "parsed_original": ["invalid"] * 9 + ["a"], "parsed_lenient": ["invalid"] * 8 + ["a", "a"],
    })
    scored["parsed"] = scored["parsed_original"]
    scored.to_parquet(tmp_path / "eval" / "baseline" / "scored.parquet")
    text = S.steering_commentary(layout_manifest(tmp_path))
    assert "unparseable 90% of the time" in text
    assert "80% of the completions are empty" in text
    assert "The lenient parser reads 20% of the answers (accuracy 0.20)" in text
    assert "evaluation.chat_template: true" in text
    table = S.parser_comparison(layout_manifest(tmp_path))
    assert table[["acc. (released parser)", "acc. (lenient parser)"]].iloc[0].tolist() == pytest.approx([0.1, 0.2])
    # readable answers: no such note
    _fake_results(tmp_path / "ok", bias_b=False, effect=0.0)
    assert "completions are empty" not in S.steering_commentary(layout_manifest(tmp_path / "ok"))
