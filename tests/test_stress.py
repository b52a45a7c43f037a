"""Stress tests: the decodability curve on a synthetic case where the answer is known, and its verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tomlab.stress.decodability import curve_summary, decodability_curve
from tomlab.stress.verdicts import decodability_verdict, verdict_table


def _planted(n=240, layers=4, heads=4, d=8, signal=3.0, planted=(2, 1), seed=0, spread=False):
    """Noise activations; the label is written along one direction of one head (or, with ``spread``, a
    little into every head, so any pool of heads decodes it)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    acts = rng.standard_normal((n, layers, heads, d))
    sign = (2 * y - 1)[:, None]
    if spread:
        acts[..., 0] += 0.9 * sign[:, :, None]  # feature 0 of every head
    else:
        direction = rng.standard_normal(d)
        direction /= np.linalg.norm(direction)
        acts[:, planted[0], planted[1]] += signal * sign * direction
    meta = pd.DataFrame({"protagonist": y})
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.permutation(n)[: n // 4]] = True
    return acts, meta, is_val


def test_a_planted_head_is_found_and_random_pools_without_it_fail():
    acts, meta, is_val = _planted()
    correct = decodability_curve(acts, meta, is_val, ks=(1, 2, 4, 16), draws=6, seed=1)
    picked = correct[correct["condition"] == "best_head"]["unit"].iloc[0]
    assert picked == "L2H1"  # chosen on training data alone
    summary = curve_summary(correct)
    acc = {(r.condition, r.k): r.accuracy for r in summary.itertuples()}
    assert acc["best_head", 1] > 0.9 and acc["best_head_on_val", 1] > 0.9
    assert acc["random_heads", 1] < 0.75  # one random head of 16 is rarely the planted one
    assert acc["random_heads", 16] > 0.9  # all heads: the planted one is in
    layers = correct[correct["condition"] == "layer"].groupby("unit")["correct"].mean()
    assert layers["L2"] > 0.9 and layers.drop("L2").max() < 0.7
    row = decodability_verdict(correct, few=2, n_boot=300)
    assert row["verdict"] == "supports the claim" and row["ci_low"] > 0


def test_a_signal_in_every_head_undermines_the_belief_head_claim():
    acts, meta, is_val = _planted(spread=True, n=400)
    correct = decodability_curve(acts, meta, is_val, ks=(1, 4), draws=6, seed=2)
    row = decodability_verdict(correct, few=4, n_boot=300)
    assert row["verdict"] == "undermines it", row  # random pools of four heads do as well as the best head
    noise, meta2, val2 = _planted(signal=0.0)
    row = decodability_verdict(decodability_curve(noise, meta2, val2, ks=(1, 4), draws=3), n_boot=200)
    assert row["verdict"] == "inconclusive at this scale"  # nothing decodes


def test_bad_inputs_and_verdicts_are_refused():
    acts, meta, is_val = _planted(n=40)
    with pytest.raises(ValueError, match="target 'joint'"):
        decodability_curve(acts, meta, is_val, target="joint")
    with pytest.raises(ValueError, match="disagree"):
        decodability_curve(acts, meta.iloc[:10], is_val)
    with pytest.raises(ValueError, match="unknown verdict"):
        verdict_table([{"doubt": "d", "experiment": "e", "statistic": "s", "estimate": 0, "ci_low": 0, "ci_high": 0,
                        "verdict": "probably", "evidence": ""}])


def test_the_commands_write_the_curves_the_verdicts_and_the_figures(tmp_path):
    from tomlab.cli.main import main

    acts, meta, is_val = _planted(n=120)
    np.save(tmp_path / "acts.npy", acts)
    meta = meta.assign(sample_id=np.arange(len(meta)), story_id=np.arange(len(meta)) // 4,
                       prompt=[f"story {i // 4} words" for i in range(len(meta))])
    meta.to_parquet(tmp_path / "samples.parquet")
    pd.DataFrame({"sample_id": np.arange(len(meta)), "is_val": is_val}).to_parquet(tmp_path / "split.parquet")
    assert main(["decodability", "--activations", str(tmp_path / "acts.npy"), "--samples", str(tmp_path / "samples.parquet"),
                 "--split", str(tmp_path / "split.parquet"), "--ks", "1", "4", "64", "--draws", "2",
                 "--out", str(tmp_path / "dec.parquet")]) == 0
    correct = pd.read_parquet(tmp_path / "dec.parquet")
    assert set(correct["k"][correct["condition"] == "random_heads"]) == {1, 4}  # 64 > 16 heads: dropped
    # a shift: the validation samples again, unpaired, with fresh noise in every other head
    other = acts[is_val].copy()
    noise = np.random.default_rng(9).standard_normal(other.shape)
    keep = np.zeros(other.shape[1:3], dtype=bool)
    keep[2, 1] = True
    other[:, ~keep] = noise[:, ~keep]
    np.save(tmp_path / "other.npy", other)
    n_other = len(other)
    meta[is_val].assign(sample_id=np.arange(n_other), story_id=np.arange(n_other) // 4, pair=-1, origin_story=-1,
                        prompt="other story").to_parquet(tmp_path / "other.parquet")
    assert main(["stress-transfer", "--activations", str(tmp_path / "acts.npy"), "--samples",
                 str(tmp_path / "samples.parquet"), "--split", str(tmp_path / "split.parquet"), "--shift-activations",
                 f"generated={tmp_path / 'other.npy'}", "--shift-samples", f"generated={tmp_path / 'other.parquet'}",
                 "--top-k", "1", "--n-boot", "200", "--out", str(tmp_path / "transfer.parquet"),
                 "--out-stats", str(tmp_path / "transfer_stats.parquet")]) == 0
    stats = pd.read_parquet(tmp_path / "transfer_stats.parquet").set_index("shift")
    assert stats.loc["generated", "top_acc"] > 0.9  # the planted head, on stories it never saw
    assert main(["stress-minds", "--n", "8", "--eval-stories", "2", "--out-stories", str(tmp_path / "ms.parquet"),
                 "--out-samples", str(tmp_path / "msamples.parquet"), "--out-items", str(tmp_path / "mitems.parquet")]) == 0
    msamples = pd.read_parquet(tmp_path / "msamples.parquet")
    assert len(pd.read_parquet(tmp_path / "mitems.parquet")) == 2 * 9 and len(msamples) == 8 * 18
    np.save(tmp_path / "macts.npy", np.random.default_rng(0).standard_normal((len(msamples), 4, 4, 8)))
    assert main(["stress-minds-probe", "--activations", str(tmp_path / "macts.npy"), "--samples",
                 str(tmp_path / "msamples.parquet"), "--transfer", str(tmp_path / "transfer.parquet"), "--n-boot", "200",
                 "--out", str(tmp_path / "minds.parquet"), "--out-stats", str(tmp_path / "minds_stats.parquet")]) == 0
    assert main(["stress-verdicts", "--decodability", str(tmp_path / "dec.parquet"), "--transfer-stats",
                 str(tmp_path / "transfer_stats.parquet"), "--minds-stats", str(tmp_path / "minds_stats.parquet"),
                 "--n-boot", "200", "--out", str(tmp_path / "verdicts.parquet")]) == 0
    verdicts = pd.read_parquet(tmp_path / "verdicts.parquet")
    assert list(verdicts.columns) == ["doubt", "experiment", "statistic", "estimate", "ci_low", "ci_high", "verdict",
                                      "evidence"] and verdicts["verdict"].iloc[0] == "supports the claim"
    # decodability, problem-specific (no decoys were run, so no token verdict), several minds
    assert len(verdicts) == 3 and verdicts["verdict"].iloc[2] == "inconclusive at this scale"  # noise minds
    assert main(["plot-stress", "--decodability", str(tmp_path / "dec.parquet"), "--transfer",
                 str(tmp_path / "transfer.parquet"), "--transfer-stats", str(tmp_path / "transfer_stats.parquet"),
                 "--minds", str(tmp_path / "minds.parquet"), "--out-decodability", str(tmp_path / "fig"),
                 "--out-transfer", str(tmp_path / "tr"), "--out-overlap", str(tmp_path / "ov"),
                 "--out-minds", str(tmp_path / "mi"), "--out-maps", str(tmp_path / "maps")]) == 0
    for stem in ("fig", "tr", "ov", "mi", "maps"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 0 and (tmp_path / f"{stem}.svg").exists()
