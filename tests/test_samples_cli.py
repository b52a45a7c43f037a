"""Probe samples from condition files, and the command line's behaviour on good and bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from tomlab.activations import build_probe_samples
from tomlab.cli import main
from tomlab.data import read_raw


@pytest.fixture()
def conditions(tmp_path):
    raw = tmp_path / "raw.csv"
    assert main(["generate-stories", "--n", "20", "--seed", "5", "--out", str(raw)]) == 0
    out = tmp_path / "conditions"
    assert main(["bigtom-conditions", "--csv", str(raw), "--out", str(out)]) == 0
    return raw, out


def test_probe_samples_labels_follow_the_original_method(conditions):
    raw_path, cond = conditions
    raw = read_raw(raw_path)
    samples = build_probe_samples(cond, eval_fraction=0.5)
    assert sorted(samples["story_id"].unique()) == list(range(10, 20))  # the second half is probed
    assert len(samples) == 4 * 10
    for _, s in samples.iterrows():
        row = raw.iloc[s["story_id"]]
        aware, unaware = row["belief_answer_aware"], row["belief_answer_not_aware"]
        believed = aware if s["condition"] == "true_belief" else unaware
        text = aware if s["answer"] == "aware" else unaware
        assert s["oracle"] == int(text == aware)
        assert s["protagonist"] == int(text == believed)
        assert s["joint"] == 2 * s["oracle"] + s["protagonist"]
        assert s["prompt"].startswith("Story: ") and "\nBelief: " in s["prompt"]
        assert "believes" not in s["prompt"].split("\nBelief: ")[1]
        last = row["aware_of_event"] if s["condition"] == "true_belief" else row["not_aware_of_event"]
        assert s["story"].endswith(last)
    # every story contributes one sample of each joint class
    assert (samples.groupby("story_id")["joint"].apply(sorted).map(tuple) == (0, 1, 2, 3)).all()


def test_max_stories_and_eval_fraction(conditions):
    _, cond = conditions
    assert build_probe_samples(cond, eval_fraction=0.0, max_stories=3)["story_id"].unique().tolist() == [0, 1, 2]


def test_cli_split_by_story_never_shares_a_story(conditions, tmp_path):
    _, cond = conditions
    samples = tmp_path / "samples.parquet"
    split = tmp_path / "split.parquet"
    assert main(["probe-samples", "--conditions", str(cond), "--out", str(samples)]) == 0
    assert main(["split", "--samples", str(samples), "--val-fraction", "0.3", "--out", str(split)]) == 0
    df = pd.read_parquet(split)
    assert df.groupby("story_id")["is_val"].nunique().max() == 1
    assert 0 < df["is_val"].mean() < 1


def test_cli_malformed_raw_file_names_file_and_line_and_writes_nothing(tmp_path, capsys):
    good = tmp_path / "raw.csv"
    assert main(["generate-stories", "--n", "5", "--seed", "0", "--out", str(good)]) == 0
    lines = good.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2].replace(";", ",", 1)  # line 3 loses a field
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "conditions"
    assert main(["bigtom-conditions", "--csv", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad.csv" in err and "3" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "raw.csv"]  # no temporary left over


def test_cli_import_bigtom_validates_before_copying(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("only;three;fields\n", encoding="utf-8")
    out = tmp_path / "copy.csv"
    assert main(["import-bigtom", "--csv", str(bad), "--out", str(out)]) == 1
    assert "bad.csv" in capsys.readouterr().err
    assert not out.exists()


def test_real_bigtom_through_the_cli(bigtom_csv, tmp_path):
    out = tmp_path / "conditions"
    assert main(["bigtom-conditions", "--csv", str(bigtom_csv), "--out", str(out)]) == 0
    assert len(list(out.glob("*/stories.csv"))) == 25
    samples = build_probe_samples(out)
    assert samples["story_id"].min() == 100 and samples["story_id"].max() == 199
    assert len(samples) == 400
