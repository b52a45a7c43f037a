"""Probe samples from condition files, and the command line's behaviour on good and bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from tomlab.bigtom.raw import read_raw
from tomlab.cli.main import main
from tomlab.probing.samples import action_statement, build_probe_samples


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
    assert main(["split", "--samples", str(samples), "--val-fraction", "0.3", "--mode", "by_story",
                 "--out", str(split)]) == 0
    df = pd.read_parquet(split)
    assert df.groupby("story_id")["is_val"].nunique().max() == 1
    assert 0 < df["is_val"].mean() < 1
    # the default is the released code's split by sample, which does put a story on both sides
    leaky = tmp_path / "leaky.parquet"
    assert main(["split", "--samples", str(samples), "--val-fraction", "0.3", "--out", str(leaky)]) == 0
    assert pd.read_parquet(leaky).groupby("story_id")["is_val"].nunique().max() == 2


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


def test_cli_evaluation_scores_items_and_reuses_the_completion_cache(conditions, tmp_path, capsys):
    import json

    from tests.conftest import TINY

    _, cond = conditions
    items = tmp_path / "items.parquet"
    assert main(["eval-items", "--conditions", str(cond), "--max-stories", "2", "--out", str(items)]) == 0
    frame = pd.read_parquet(items)
    assert len(frame) == 2 * 3 * 4 and frame["story_id"].max() < 10  # evaluation split only
    model = json.dumps({"name": "random:llama", "dtype": "float32", "device": "cpu", "random_config": TINY})
    args = ["evaluate", "--model-json", model, "--items", str(items), "--max-new-tokens", "4",
            "--completion-cache", str(tmp_path / "cache"), "--out", str(tmp_path / "scored.parquet"),
            "--out-table", str(tmp_path / "table.parquet")]
    capsys.readouterr()
    assert main(args) == 0
    assert main(args) == 0  # second run: every completion comes from the cache
    outputs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert outputs[0]["cache_misses"] == len(frame) and outputs[0]["cache_hits"] == 0
    assert outputs[1]["cache_hits"] == len(frame) and outputs[1]["cache_misses"] == 0
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert {"completion", "parsed", "valid", "correct_pred", "logp_a", "logp_b", "ll_correct"} <= set(scored.columns)
    assert scored["parsed"].isin(["a", "b", "invalid"]).all()
    table = pd.read_parquet(tmp_path / "table.parquet")
    assert set(table["mode"]) == {"generation", "log-likelihood"}
    assert table["accuracy"].between(0, 1).all() and (table["n"] == 2).all()


@pytest.mark.parametrize("task", ["forward_action", "backward_belief"])
def test_probe_samples_of_the_other_tasks(conditions, task):
    raw_path, cond = conditions
    raw = read_raw(raw_path)
    samples = build_probe_samples(cond, task=task, eval_fraction=0.5)
    assert set(samples["task"]) == {task} and len(samples) == 40
    label = "Action" if task == "forward_action" else "Belief"
    for _, s in samples.iterrows():
        row = raw.iloc[s["story_id"]]
        prefix = "action" if task == "forward_action" else "belief"
        aware, unaware = row[f"{prefix}_answer_aware"], row[f"{prefix}_answer_not_aware"]
        text = aware if s["answer"] == "aware" else unaware
        believed = aware if s["condition"] == "true_belief" else unaware
        assert s["oracle"] == int(text == aware) and s["protagonist"] == int(text == believed)
        assert f"\n{label}: " in s["prompt"]
        if task == "forward_action":
            assert s["statement"] == action_statement(text)  # the original's imperative
            assert s["prompt"].endswith(f"\nAction: {action_statement(text)}")
        else:
            # backward belief: the story ends with the protagonist's action, not the percept
            action = row["action_aware"] if s["condition"] == "true_belief" else row["action_not_aware"]
            assert s["story"].endswith(action)
    assert (samples.groupby("story_id")["joint"].apply(sorted).map(tuple) == (0, 1, 2, 3)).all()


def test_verbatim_statements_keep_the_answers_words(conditions):
    _, cond = conditions
    action = build_probe_samples(cond, task="forward_action", statements="verbatim")
    default = build_probe_samples(cond, task="forward_action")
    assert action["statement"].str.contains(" will ").all()  # "<Name> will ..." kept whole
    assert not default["statement"].str.contains(" will ").any()
    pd.testing.assert_frame_equal(action.drop(columns=["statement", "prompt"]),
                                  default.drop(columns=["statement", "prompt"]))
    with pytest.raises(ValueError, match="original, verbatim"):
        build_probe_samples(cond, statements="paraphrased")


def test_cli_probe_samples_statements_flag(conditions, tmp_path):
    _, cond = conditions
    out = {}
    for style in ("original", "verbatim"):
        path = tmp_path / f"{style}.parquet"
        args = ["probe-samples", "--conditions", str(cond), "--task", "forward_action", "--out", str(path)]
        assert main([*args, "--statements", style]) == 0
        out[style] = pd.read_parquet(path)
    default = tmp_path / "default.parquet"
    assert main(["probe-samples", "--conditions", str(cond), "--task", "forward_action", "--out", str(default)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(default), out["original"])
    assert (out["original"]["prompt"] != out["verbatim"]["prompt"]).all()


def test_probe_samples_unknown_task(conditions):
    _, cond = conditions
    with pytest.raises(ValueError, match="unknown task"):
        build_probe_samples(cond, task="percept_to_belief")
