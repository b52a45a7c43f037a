"""The debate's command line and analyses: items, runs, tables, disagreement, judge preference."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tomlab.cli import main
from tomlab.debate_report import disagreement_by_round, judge_preferences, score_rows
from tomlab.debate_tasks import example_translations, generate_arithmetic, translation_scores

TINY = {"default": {"name": "random:llama", "dtype": "float32", "device": "cpu",
                    "random_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                      "num_attention_heads": 2, "num_key_value_heads": 1}}}


def test_scoring_joins_answers_and_flags_the_trap():
    tasks = generate_arithmetic(3, seed=0, families=["race"])
    answers = pd.DataFrame({"question_id": tasks["id"], "method": "cot", "prompt_tokens": 1, "completion_tokens": 1,
                            "final_answer": [f"Answer: {tasks['answer'][0]}", f"Answer: {tasks['intuitive'][1]}",
                                             "no idea"]})
    scored = score_rows(answers, tasks)
    assert list(scored["correct"]) == [True, False, False]
    assert list(scored["gave_intuitive"]) == [False, True, False]
    with pytest.raises(ValueError, match="not in the task file"):
        score_rows(answers.assign(question_id="nope"), tasks)


def test_disagreement_and_judge_preference():
    turns = pd.DataFrame([
        {"question_id": "a", "round": 1, "debater": 0, "text": "Answer: 5"},
        {"question_id": "a", "round": 1, "debater": 1, "text": "Answer: 6"},
        {"question_id": "a", "round": 2, "debater": 0, "text": "Answer: 6"},
        {"question_id": "a", "round": 2, "debater": 1, "text": "I agree, 6"},
        {"question_id": "b", "round": 1, "debater": 0, "text": "hmm"},
        {"question_id": "b", "round": 1, "debater": 1, "text": "hmm"},
    ])
    dis = disagreement_by_round(turns)
    assert list(dis["disagreement"]) == [1.0, 0.0] and list(dis["debates"]) == [2, 1]  # two non-answers differ
    prefs = judge_preferences(pd.DataFrame({"preference": ["negative", "negative", None]}),
                              {"affirmative": "m1", "negative": "m2"}, judge_model="m2")
    neg = prefs.set_index("judge sided with").loc["negative"]
    assert neg["debates"] == 2 and neg["same model as the judge"] and abs(neg["share"] - 2 / 3) < 1e-9


def test_translation_scores_prefer_the_right_sense():
    rows = example_translations()
    right = translation_scores(list(rows["reference"]), rows)
    wrong = translation_scores(list(rows["wrong_reference"]), rows)
    assert right["bleu"] > wrong["bleu"] and right["contrastive"] == 1.0 and wrong["contrastive"] == 0.0
    assert right["comet"] is None  # no local COMET model: reported as not computed


def test_cli_runs_a_method_and_builds_the_tables(tmp_path):
    items = tmp_path / "items.parquet"
    assert main(["debate-tasks", "--task", "arithmetic", "--n", "3", "--out", str(items)]) == 0
    models = json.dumps(TINY)
    outs = {}
    for method in ("cot", "debate"):
        d = tmp_path / method
        rc = main(["debate-run", "--task", "arithmetic", "--tasks", str(items), "--method", method,
                   "--models-json", models, "--debate-json", json.dumps({"max_new_tokens": 4, "judge_max_new_tokens": 4,
                                                                          "rounds": 2}),
                   "--out", str(d / "a.parquet"), "--out-turns", str(d / "t.parquet"), "--out-judge", str(d / "j.parquet"),
                   "--transcripts", str(d / "tr.jsonl")])
        assert rc == 0
        outs[method] = d
    turns = pd.read_parquet(outs["debate"] / "t.parquet")
    assert set(turns["round"]) <= {1, 2} and len(turns) >= 2 * 3
    assert len((outs["debate"] / "tr.jsonl").read_text().splitlines()) == 3
    rc = main(["debate-tables", "--task", "arithmetic", "--tasks", str(items),
               "--answers", str(outs["cot"] / "a.parquet"), str(outs["debate"] / "a.parquet"),
               "--turns", str(outs["cot"] / "t.parquet"), str(outs["debate"] / "t.parquet"), "--models-json", models,
               "--n-boot", "100", "--out-scored", str(tmp_path / "s.parquet"), "--out-accuracy", str(tmp_path / "acc.parquet"),
               "--out-disagreement", str(tmp_path / "d.parquet"), "--out-judge", str(tmp_path / "jp.parquet")])
    assert rc == 0
    acc = pd.read_parquet(tmp_path / "acc.parquet")
    assert set(acc["method"]) == {"cot", "debate"} and (acc["n"] == 3).all()
    assert acc.loc[acc["method"] == "debate", "tokens_per_question"].item() > acc.loc[acc["method"] == "cot", "tokens_per_question"].item()


def test_cli_errors_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("source,reference\nhello,bonjour\n")
    assert main(["debate-tasks", "--task", "translation", "--file", str(bad), "--out", str(tmp_path / "x.parquet")]) == 1
    assert "missing column(s) ['wrong_reference']" in capsys.readouterr().err
    items = tmp_path / "i.parquet"
    main(["debate-tasks", "--task", "arithmetic", "--n", "1", "--out", str(items)])
    rc = main(["debate-run", "--task", "arithmetic", "--tasks", str(items), "--method", "cot",
               "--models-json", json.dumps({"judge": TINY["default"]}), "--out", str(tmp_path / "a.parquet"),
               "--out-turns", str(tmp_path / "t.parquet"), "--out-judge", str(tmp_path / "j.parquet"),
               "--transcripts", str(tmp_path / "tr.jsonl")])
    assert rc == 1 and "'default' model is required" in capsys.readouterr().err
    assert not (tmp_path / "a.parquet").exists()
