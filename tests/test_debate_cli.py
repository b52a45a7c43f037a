"""The debate's command line and analyses: items, runs, tables, disagreement, judge preference."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tomlab.cli.main import main
from tomlab.debate.tables import (
    affirmative_answers,
    answer_line_rate,
    disagreement_by_round,
    judge_preferences,
    score_rows,
)
from tomlab.debate.tasks import (
    example_translations,
    generate_arithmetic,
    translation_scores,
)

TINY = {"default": {"name": "random:llama", "dtype": "float32", "device": "cpu",
                    "random_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                      "num_attention_heads": 2, "num_key_value_heads": 1}}}


def test_scoring_joins_answers_and_flags_the_trap():
    tasks = generate_arithmetic(3, seed=0, families=["race"])
    answers = pd.DataFrame({"question_id": tasks["id"], "method": "cot", "prompt_tokens": 1, "completion_tokens": 1,
                            "final_answer": [f"Answer: {tasks['answer'][0]}", f"Answer: {tasks['intuitive'][1][0]}",
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
        {"question_id": "a", "round": 2, "debater": 1, "text": "I agree. The answer is six"},
        {"question_id": "b", "round": 1, "debater": 0, "text": "hmm"},
        {"question_id": "b", "round": 1, "debater": 1, "text": "hmm"},
    ])
    dis = disagreement_by_round(turns)
    assert list(dis["debates"]) == [2, 1] and list(dis["answered"]) == [1, 1]
    assert list(dis["disagreement"]) == [1.0, 0.0]  # two non-answers are left out, not counted as disagreeing
    only_silence = disagreement_by_round(turns[turns["question_id"] == "b"])
    assert only_silence["disagreement"].isna().all() and list(only_silence["answered"]) == [0]
    assert answer_line_rate(turns) == pytest.approx(4 / 6)
    prefs = judge_preferences(pd.DataFrame({"preference": ["negative", "negative", None]}),
                              {"affirmative": "m1", "negative": "m2"}, judge_model="m2")
    neg = prefs.set_index("judge sided with").loc["negative"]
    assert neg["debates"] == 2 and neg["same model as the judge"] and abs(neg["share"] - 2 / 3) < 1e-9


def test_affirmative_answers_score_the_debate_without_its_judge():
    tasks = generate_arithmetic(2, seed=1, families=["cuts"])
    right, wrong = tasks["answer"][0], tasks["intuitive"][1][0]
    answers = pd.DataFrame({"question_id": tasks["id"], "method": "debate", "final_answer": "", "prompt_tokens": 10,
                            "completion_tokens": 5, "preference": None})
    turns = pd.DataFrame([
        {"question_id": tasks["id"][0], "method": "debate", "round": 1, "debater": 0, "text": "Answer: 1"},
        {"question_id": tasks["id"][0], "method": "debate", "round": 2, "debater": 0, "text": f"Answer: {right}"},
        {"question_id": tasks["id"][0], "method": "debate", "round": 2, "debater": 1, "text": "Answer: 0"},
        {"question_id": tasks["id"][1], "method": "debate", "round": 1, "debater": 0, "text": f"Answer: {wrong}"},
    ])
    own = affirmative_answers(answers, turns)
    assert set(own["method"]) == {"debate_affirmative"} and list(own["prompt_tokens"]) == [10, 10]
    scored = score_rows(own, tasks)
    assert list(scored["correct"]) == [True, False] and list(scored["gave_intuitive"]) == [False, True]
    assert list(score_rows(answers, tasks)["correct"]) == [False, False]  # the judge-less rows do not leak back


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
    assert set(acc["method"]) == {"cot", "debate", "debate_affirmative"} and (acc["n"] == 3).all()
    assert acc.loc[acc["method"] == "debate", "tokens_per_question"].item() > acc.loc[acc["method"] == "cot", "tokens_per_question"].item()


def test_cli_errors_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("source,reference\nhello,bonjour\n")
    assert main(["debate-tasks", "--task", "translation", "--file", str(bad), "--out", str(tmp_path / "x.parquet")]) == 1
    err = capsys.readouterr().err
    assert "bad.csv: missing field 'wrong_reference'" in err and "'incorrect reference'" in err
    rc = main(["debate-tasks", "--task", "translation", "--target-language", "French", "--out", str(tmp_path / "x.parquet")])
    assert rc == 1 and "built-in examples are Chinese -> English, not Chinese -> French" in capsys.readouterr().err
    items = tmp_path / "i.parquet"
    main(["debate-tasks", "--task", "arithmetic", "--n", "1", "--out", str(items)])
    rc = main(["debate-run", "--task", "arithmetic", "--tasks", str(items), "--method", "cot",
               "--models-json", json.dumps({"judge": TINY["default"]}), "--out", str(tmp_path / "a.parquet"),
               "--out-turns", str(tmp_path / "t.parquet"), "--out-judge", str(tmp_path / "j.parquet"),
               "--transcripts", str(tmp_path / "tr.jsonl")])
    assert rc == 1 and "'default' model is required" in capsys.readouterr().err
    assert not (tmp_path / "a.parquet").exists()


def test_cli_runs_a_chinese_to_english_json_file_end_to_end(tmp_path, monkeypatch):
    source = tmp_path / "mt.json"  # the original's field names; sentences of our own
    source.write_text(json.dumps([
        {"source": "他昨晚开夜车复习。", "correct reference": "He stayed up late last night to revise.",
         "incorrect reference": "He drove a night car last night to revise."},
        {"source": "这道菜很地道。", "correct reference": "This dish is very authentic.",
         "incorrect reference": "This dish is very underground tunnel."},
    ], ensure_ascii=False), encoding="utf-8")
    items = tmp_path / "items.parquet"
    assert main(["debate-tasks", "--task", "translation", "--file", str(source), "--source-language", "Chinese",
                 "--target-language", "English", "--out", str(items)]) == 0
    rows = pd.read_parquet(items)
    assert set(rows["source_language"]) == {"Chinese"} and set(rows["target_language"]) == {"English"}
    assert rows["reference"].iloc[0] == "He stayed up late last night to revise."
    d = tmp_path / "debate"
    settings = json.dumps({"max_new_tokens": 4, "judge_max_new_tokens": 4, "rounds": 1})

    def run(method):
        return main(["debate-run", "--task", "translation", "--tasks", str(items), "--method", method,
                     "--models-json", json.dumps(TINY), "--debate-json", settings, "--out", str(d / f"{method}.parquet"),
                     "--out-turns", str(d / f"{method}-t.parquet"), "--out-judge", str(d / f"{method}-j.parquet"),
                     "--transcripts", str(d / f"{method}.jsonl")])

    assert run("debate") == 0  # a tiny random model: the pipeline runs, the translations are noise
    assert len((d / "debate.jsonl").read_text().splitlines()) == 2
    assert main(["debate-tables", "--task", "translation", "--tasks", str(items), "--answers", str(d / "debate.parquet"),
                 "--turns", str(d / "debate-t.parquet"), "--models-json", json.dumps(TINY), "--n-boot", "100",
                 "--out-scored", str(tmp_path / "s.parquet"), "--out-accuracy", str(tmp_path / "acc.parquet"),
                 "--out-disagreement", str(tmp_path / "dis.parquet"), "--out-judge", str(tmp_path / "jp.parquet")]) == 0
    assert set(pd.read_parquet(tmp_path / "acc.parquet")["method"]) == {"debate", "debate_affirmative"}
    # the same run with a scripted model that records its prompts: every one names the item's pair
    from tomlab.backends.lm import ScriptedLM

    lm = ScriptedLM(lambda p: "Translation: He revised late.")  # four words: within max_new_tokens
    monkeypatch.setattr("tomlab.backends.build.build_backends", lambda *a, **k: dict.fromkeys(
        ("default", "affirmative", "negative", "judge"), lm))
    assert run("cot") == 0
    assert len(lm.prompts_seen) == 2 and all(
        "Translate this Chinese sentence into English" in p and "French" not in p for p in lm.prompts_seen)
    assert list(pd.read_parquet(d / "cot.parquet")["translation"]) == ["He revised late."] * 2


def _results(tmp_path, parsed: list[bool], turn_texts: list[str]):
    base = tmp_path / "debate" / "arithmetic"
    for d in ("debate", "debate_forced"):
        (base / d).mkdir(parents=True)
    acc = pd.DataFrame([
        {"method": "cot", "n": 10, "accuracy": 0.2, "ci_low": 0.0, "ci_high": 0.4, "intuitive_rate": 0.1,
         "tokens_per_question": 100.0},
        {"method": "debate", "n": 10, "accuracy": 0.9, "ci_low": 0.7, "ci_high": 1.0, "intuitive_rate": 0.0,
         "tokens_per_question": 900.0},
        {"method": "debate_forced", "n": 10, "accuracy": 0.8, "ci_low": 0.5, "ci_high": 1.0, "intuitive_rate": 0.0,
         "tokens_per_question": 1200.0},
    ])
    acc.to_parquet(base / "accuracy.parquet")
    pd.DataFrame({"round": [1, 2], "disagreement": [0.5, 0.25], "debates": [10, 4], "answered": [8, 4]}).to_parquet(
        base / "disagreement.parquet")
    pd.DataFrame({"parsed": parsed}).to_parquet(base / "debate" / "judge.parquet")
    pd.DataFrame({"text": turn_texts}).to_parquet(base / "debate" / "turns.parquet")
    pd.DataFrame({"rounds_run": [1] * 7 + [3] * 3}).to_parquet(base / "debate" / "answers.parquet")
    pd.DataFrame({"rounds_run": [3] * 10}).to_parquet(base / "debate_forced" / "answers.parquet")
    return tmp_path


def test_commentary_reads_the_numbers_and_flags_a_model_that_cannot_play(tmp_path):
    from tests.layout import layout_manifest
    from tomlab.report.debate import debate_commentary

    good = debate_commentary(layout_manifest(_results(tmp_path / "good", [True] * 9 + [False], ["Answer: 4"] * 3 + ["hm"])))
    assert "answers 90% of 10 questions" in good and "overlaps those of 0 of 1" in good
    assert "stopped 7 of 10 debates before round 3" in good
    assert "in 50% of 8 debates, and round 2 in 25% of 4" in good
    assert "1 of 10 judge replies could not be read" in good and "75% of debater turns" in good
    assert "How much this says" not in good
    bad = debate_commentary(layout_manifest(_results(tmp_path / "bad", [False] * 9 + [True], ["Answer: 4"] * 3 + ["hm"])))
    assert "How much this says" in bad and "9 of 10 judge replies" in bad


def test_debate_excerpt_is_cut_and_says_so(tmp_path):
    from tests.layout import layout_manifest
    from tomlab.report.debate import first_debate

    d = tmp_path / "debate" / "arithmetic" / "debate"
    d.mkdir(parents=True)
    turns = [{"round": r, "speaker": s, "text": "x" * 500} for r in (1, 2, 3) for s in ("affirmative", "negative")]
    (d / "transcripts.jsonl").write_text(json.dumps({"question_id": "q-0", "turns": turns, "judge": []}) + "\n")
    text = first_debate(layout_manifest(tmp_path), max_chars=100, max_total=450)
    assert text.startswith("Question: q-0") and "[...]" in text and "x" * 101 not in text
    assert "[... 3 more turn(s) left out" in text and text.count("[round") == 3  # each part ~125 chars


def test_instantiation_spread_groups_the_kth_instance_of_every_family():
    from tomlab.debate.tables import instantiation_spread

    # three instances each of two families; set k holds the k-th of each
    scored = pd.DataFrame({"method": "cot", "family": ["a", "b"] * 3 + ["a"],
                           "correct": [True, True, True, False, False, False, True]})
    spread = instantiation_spread(scored).set_index("method").loc["cot"]
    assert spread["sets"] == 3 and spread["items_per_set"] == 2  # the lone 4th "a" is not a complete set
    assert spread["mean"] == pytest.approx(0.5) and spread["min"] == 0.0 and spread["max"] == 1.0
    assert spread["sd"] == pytest.approx(0.5)
    one_family = scored.assign(family="original")
    assert instantiation_spread(one_family).empty


# --- every subset of methods gives tables and a report section (issue 26, item 7) -------------------------------
def _run_methods(task: str, methods: tuple[str, ...], tmp_path):
    """Each method's answers and turns over two items, written as the pipeline writes them, from a scripted model."""
    from tomlab.backends.lm import ScriptedLM
    from tomlab.debate.run import ROLES, run_method

    tasks = generate_arithmetic(2, seed=0) if task == "arithmetic" else example_translations().head(2)
    lm = ScriptedLM(lambda p: "Translation: Hello." if task == "translation" else "Answer: 4")
    models = dict.fromkeys(("default", *ROLES), lm)
    settings = {"rounds": 2, "max_new_tokens": 8, "judge_max_new_tokens": 8, "sc_samples": 2}
    answers, turns = [], []
    for method in methods:
        run = run_method(task, method, tasks, models, settings, progress=False)
        for name, frame, out in (("a", run.answers, answers), ("t", run.turns, turns)):
            path = tmp_path / f"{method}-{name}.parquet"
            frame.to_parquet(path)  # the round trip the pipeline makes: empty turns keep their columns
            out.append(pd.read_parquet(path))
    return tasks, pd.concat(answers, ignore_index=True), pd.concat(turns, ignore_index=True)


SUBSETS = [("direct", "cot"), ("self_consistency",), ("debate",), ("debate_forced",), ("cot", "debate_forced"),
           ("direct", "debate", "debate_forced")]


@pytest.mark.parametrize("methods", SUBSETS, ids=["+".join(m) for m in SUBSETS])
def test_every_subset_of_methods_gives_the_tables(tmp_path, methods):
    from tomlab.debate.tables import debate_tables

    tasks, answers, turns = _run_methods("arithmetic", methods, tmp_path)
    tables = debate_tables("arithmetic", tasks, answers, turns, {"default": {"name": "m"}}, n_boot=50)
    expected = set(methods) | ({"debate_affirmative"} if "debate" in methods else set())
    assert set(tables["accuracy"]["method"]) == expected and (tables["accuracy"]["n"] == 2).all()
    assert list(tables["disagreement"].columns) == ["round", "disagreement", "debates", "answered"]
    assert tables["disagreement"].empty == ("debate" not in methods)
    assert int(tables["judge"]["debates"].sum()) == (2 if "debate" in methods else 0)


def test_translation_without_a_debate_gives_the_tables(tmp_path):
    from tomlab.debate.tables import debate_tables

    tasks, answers, turns = _run_methods("translation", ("direct",), tmp_path)
    tables = debate_tables("translation", tasks, answers, turns, {"default": {"name": "m"}}, n_boot=50)
    assert list(tables["accuracy"]["method"]) == ["direct"] and tables["disagreement"].empty


def _layout(tmp_path, methods):
    """A results folder laid out as the report reads it, from the debate tables of ``methods``."""
    from tomlab.debate.tables import debate_tables
    from tomlab.figures.debate import plot_debate_disagreement

    tasks, answers, turns = _run_methods("arithmetic", methods, tmp_path)
    tables = debate_tables("arithmetic", tasks, answers, turns, {"default": {"name": "m"}}, n_boot=50)
    base = tmp_path / "results" / "debate" / "arithmetic"
    base.mkdir(parents=True)
    names = {"scored": "scored", "accuracy": "accuracy", "disagreement": "disagreement", "judge": "judge_preference"}
    for key, name in names.items():
        tables[key].to_parquet(base / f"{name}.parquet")
    assert plot_debate_disagreement(tables["disagreement"], tmp_path / "dis")  # an empty table still plots
    return tmp_path / "results"


@pytest.mark.parametrize("methods", [("direct", "cot"), ("cot", "debate_forced")])
def test_the_report_shows_a_run_without_the_adaptive_debate(tmp_path, methods):
    from tests.layout import layout_manifest
    from tomlab.report import debate as D

    m = layout_manifest(_layout(tmp_path, methods))
    assert D.available(m) and not D.judged(m)
    assert set(D.display_accuracy(m)["method"]) == {D.METHOD_NAMES[x] for x in methods}
    D.display_spread(m)
    assert D.first_debate(m) == ""
    text = D.debate_commentary(m)
    assert "cheapest method" in text and "in no round did every debater" not in text
    assert ("No debate was run" in text) == ("debate_forced" not in methods)
    assert "No adaptive debate" in D.NO_DEBATE


def test_the_report_still_shows_the_judge_of_an_adaptive_debate(tmp_path):
    from tests.layout import layout_manifest
    from tomlab.report import debate as D

    m = layout_manifest(_layout(tmp_path, ("cot", "debate")))
    assert D.judged(m) and len(D.judge_table(m)) == 3
    assert "No debate was run" not in D.debate_commentary(m)


def test_debate_tables_refuse_items_with_a_repeated_id(tmp_path, capsys):
    items = generate_arithmetic(2, seed=0)
    items.loc[1, "id"] = items.loc[0, "id"]
    path = tmp_path / "items.parquet"
    items.to_parquet(path)
    answers = pd.DataFrame({"question_id": items["id"], "method": "cot", "final_answer": "Answer: 1",
                            "prompt_tokens": 1, "completion_tokens": 1, "preference": None})
    answers.to_parquet(tmp_path / "a.parquet")
    pd.DataFrame(columns=["question_id", "method", "round", "debater", "text"]).to_parquet(tmp_path / "t.parquet")
    rc = main(["debate-tables", "--task", "arithmetic", "--tasks", str(path), "--answers", str(tmp_path / "a.parquet"),
               "--turns", str(tmp_path / "t.parquet"), "--models-json", json.dumps(TINY),
               "--out-scored", str(tmp_path / "s.parquet"), "--out-accuracy", str(tmp_path / "acc.parquet"),
               "--out-disagreement", str(tmp_path / "d.parquet"), "--out-judge", str(tmp_path / "j.parquet")])
    err = capsys.readouterr().err
    assert rc == 1 and f"--tasks {path}: duplicate id(s): '{items['id'][0]}' (row 1, row 2)" in err
    assert not (tmp_path / "acc.parquet").exists()
