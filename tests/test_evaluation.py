from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tomlab.backends.likelihood import _continuation_ids, option_logprobs
from tomlab.bigtom.conditions import (
    CONDITIONS,
    TASKS,
    conditions_from_csv,
    read_condition,
)
from tomlab.bigtom.evaluation import (
    ITEM_COLUMNS,
    accuracy_table,
    build_items,
    parse_answer,
    score_generation,
)
from tomlab.bigtom.protocol import TOMLAB_INSTRUCTION as INSTRUCTION
from tomlab.stats import bootstrap_ci

N_STORIES = 20


@pytest.fixture(scope="module")
def conditions_dir(generated_conditions) -> Path:
    return generated_conditions(N_STORIES, 3)


@pytest.fixture(scope="module")
def items(conditions_dir) -> pd.DataFrame:
    """Items of tomlab's protocol (hashed option order, its instruction, the lenient parser)."""
    return build_items(conditions_dir, protocol="tomlab")


# ---------------------------------------------------------------------------------------------
# build_items


def test_items_cover_only_the_evaluation_split(items):
    assert list(items.columns) == list(ITEM_COLUMNS)
    assert len(items) == (N_STORIES // 2) * len(TASKS) * len(CONDITIONS)
    assert sorted(items["story_id"].unique()) == list(range(N_STORIES // 2))
    counts = items.groupby("story_id").size()
    assert (counts == 12).all()
    pairs = set(zip(items["task"], items["condition"]))
    assert pairs == {(t, c) for t in TASKS for c in CONDITIONS}
    assert items["item_id"].is_unique


def test_items_match_the_condition_files(items, conditions_dir):
    for (task, condition), group in items.groupby(["task", "condition"]):
        frame = read_condition(conditions_dir / f"0_{task}_{condition}" / "stories.csv")
        for row in group.itertuples():
            source = frame.iloc[row.story_id]
            assert (row.story, row.question, row.correct, row.wrong) == tuple(
                source[["story", "question", "correct", "wrong"]]
            )
    # probe-split stories (second half) never appear
    fb = read_condition(conditions_dir / "0_forward_belief_true_belief" / "stories.csv")
    assert not set(fb["story"].iloc[N_STORIES // 2:]) & set(items["story"])


def test_answer_letter_points_at_the_correct_option(items):
    chosen = np.where(items["answer_letter"] == "a", items["option_a"], items["option_b"])
    other = np.where(items["answer_letter"] == "a", items["option_b"], items["option_a"])
    assert (chosen == items["correct"]).all()
    assert (other == items["wrong"]).all()
    assert set(items["answer_letter"]) == {"a", "b"}
    share_a = (items["answer_letter"] == "a").mean()
    assert 0.3 < share_a < 0.7


def test_shuffle_is_deterministic_and_depends_on_seed(conditions_dir, items):
    again = build_items(conditions_dir, protocol="tomlab")
    pd.testing.assert_frame_equal(items, again)
    other = build_items(conditions_dir, seed=1, protocol="tomlab")
    assert (other["answer_letter"] != items["answer_letter"]).any()
    # independent of which other items are built (row order / subset)
    subset = build_items(conditions_dir, tasks=("backward_belief",), conditions=("false_control", "true_belief"),
                         max_stories=3, protocol="tomlab")
    merged = subset.merge(items, on="item_id", suffixes=("", "_full"))
    assert len(merged) == 6
    assert (merged["answer_letter"] == merged["answer_letter_full"]).all()
    assert (merged["prompt"] == merged["prompt_full"]).all()


def test_prompt_format_is_exact(items):
    row = items.iloc[5]
    expected = (
        INSTRUCTION + "\n"
        + f"Story: {row.story}\nQuestion: {row.question}\nChoose one of the following:\n"
        + f"a) {row.option_a}\nb) {row.option_b}\nAnswer:"
    )
    assert row.prompt == expected
    assert "\n" not in INSTRUCTION
    assert all(p.startswith(INSTRUCTION + "\nStory: ") and p.endswith("\nAnswer:") for p in items["prompt"])


def test_eval_fraction_and_max_stories(conditions_dir):
    small = build_items(conditions_dir, eval_fraction=0.25, max_stories=2)
    assert sorted(small["story_id"].unique()) == [0, 1]
    quarter = build_items(conditions_dir, eval_fraction=0.25)
    assert sorted(quarter["story_id"].unique()) == list(range(5))


def test_real_bigtom_has_1200_items(bigtom_csv, tmp_path):
    conditions_from_csv(bigtom_csv, tmp_path / "conditions")
    real = build_items(tmp_path / "conditions")
    assert len(real) == 1200 and (real["protocol"] == "original").all()
    assert real["in_original"].sum() == 600
    assert real["story_id"].nunique() == 100 and real["story_id"].max() == 99
    assert 0.4 < (real["answer_letter"] == "a").mean() < 0.6


# ---------------------------------------------------------------------------------------------
# parse_answer

A = "Noor believes the milk pitcher contains oat milk."
B = "Noor believes the milk pitcher contains almond milk."


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a) Noor believes the milk pitcher contains oat milk.", "a"),
        ("b)", "b"),
        ("(b)", "b"),
        ("(B) almond", "b"),
        ("b.", "b"),
        ("B. Noor believes the pitcher has almond milk", "b"),
        ("A", "a"),
        ("a", "a"),
        ("   b) something", "b"),
        ("\n\n a)", "a"),
        ("Answer: a)", "a"),
        ("answer: B", "b"),
        ("**b)** almond milk", "b"),
        ("a: oat", "a"),
        ("b\nBecause she saw it.", "b"),
        # a leading explicit letter wins over option text later on
        ("a) Noor believes the milk pitcher contains almond milk.", "a"),
        # both letters offered -> invalid
        ("a) the cat ... b) the dog", "invalid"),
        ("a) or b)", "invalid"),
        ("A) oat milk\nB) almond milk", "invalid"),
        ("Either (a) or (b) could be right.", "invalid"),
        # letter markers later in the text
        ("I think the answer is b) because she saw it", "b"),
        ("The correct choice is option a.", "a"),
        ("The answer is b.", "b"),
        ("Option B is right", "b"),
        # nothing usable
        ("", "invalid"),
        ("   ", "invalid"),
        ("Both are possible", "invalid"),
        ("I don't know.", "invalid"),
        ("Answer:", "invalid"),
        # option text inside a sentence
        ("The milk pitcher contains almond milk.", "b"),
        ("Noor believes the milk pitcher contains oat milk", "a"),
        ("She thinks it is OAT MILK!", "a"),
        ("It could be oat milk or almond milk.", "invalid"),
        # "A" as an article is not a letter choice
        ("A coworker swapped it, so almond milk.", "b"),
        # the model starts writing a new item: the rest is ignored
        ("a)\nStory: Tom goes out.\nQuestion: ?\nChoose one of the following:\na) x\nb) y", "a"),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text, A, B) == expected


def test_parse_answer_substring_options():
    a = "Maya believes that the jar is empty."
    b = "Maya believes that the jar is not empty."
    assert parse_answer("The jar is not empty.", a, b) == "b"
    assert parse_answer("the jar is empty", a, b) == "a"
    assert parse_answer("empty or not empty", a, b) == "invalid"


def test_parse_answer_action_options():
    a = "Felix will take a taxi to the city tow yard."
    b = "Felix will take the lift up to level seven."
    assert parse_answer(" He will take the lift up to level seven.", a, b) == "b"
    assert parse_answer("Felix will take a taxi to the city tow yard", a, b) == "a"
    assert parse_answer("Felix will go home.", a, b) == "invalid"
    assert parse_answer("b", a, a) == "b"  # letter rules do not need the options to differ
    assert parse_answer("Felix will take a taxi to the city tow yard", a, a) == "invalid"


# ---------------------------------------------------------------------------------------------
# score_generation


def test_score_generation_counts_correct_and_invalid(items):
    sub = items.iloc[:8].reset_index(drop=True)
    calls: list[list[str]] = []
    letters = list(sub["answer_letter"])
    flip = {"a": "b", "b": "a"}
    replies = [
        f"{letters[0]})", f"({letters[1]})", f"{flip[letters[2]]})", "a) or b)", "",
        "Answer: " + letters[5], sub.loc[6, "correct"], sub.loc[7, "wrong"],
    ]

    def fake_generate(prompts: list[str]) -> list[str]:
        calls.append(list(prompts))
        return replies

    scored = score_generation(sub, fake_generate, parser="lenient")
    assert len(calls) == 1 and calls[0] == list(sub["prompt"])
    assert list(scored["completion"]) == replies
    assert list(scored["valid"]) == [True, True, True, False, False, True, True, True]
    assert list(scored["correct_pred"]) == [True, True, False, False, False, True, True, False]
    assert scored["correct_pred"].mean() == pytest.approx(4 / 8)
    table = accuracy_table(scored, by=())
    assert table.loc[0, "accuracy"] == pytest.approx(0.5)
    assert table.loc[0, "invalid_rate"] == pytest.approx(2 / 8)
    assert "completion" not in sub.columns  # input untouched


def test_score_generation_rejects_wrong_length(items):
    with pytest.raises(ValueError):
        score_generation(items.iloc[:3], lambda prompts: ["a)"])


# ---------------------------------------------------------------------------------------------
# option_logprobs


def _direct_logprob(lm, prompt: str, continuation: str) -> float:
    tok = lm.tokenizer
    n_prompt = len(tok(prompt)["input_ids"])
    ids = torch.tensor([tok(prompt + continuation)["input_ids"]])
    with torch.no_grad():
        logp = lm.model(ids).logits[0].float().log_softmax(-1)
    targets = ids[0, n_prompt:]
    return float(logp[n_prompt - 1: ids.shape[1] - 1].gather(-1, targets[:, None]).sum())


@pytest.fixture(scope="module")
def small_items(conditions_dir) -> pd.DataFrame:
    return build_items(conditions_dir, max_stories=1, tasks=("forward_belief", "forward_action"),
                       conditions=("true_belief", "false_belief", "true_control"))


def test_option_logprobs_match_a_direct_forward_pass(tiny_llama, small_items):
    scored = option_logprobs(tiny_llama, small_items, batch_size=4, progress=False)
    assert np.isfinite(scored["logp_a"]).all() and np.isfinite(scored["logp_b"]).all()
    assert (scored[["logp_a", "logp_b"]] < 0).all().all()
    for i in (0, 3):
        row = small_items.iloc[i]
        expect_a = _direct_logprob(tiny_llama, row.prompt, " " + row.option_a)
        expect_b = _direct_logprob(tiny_llama, row.prompt, " " + row.option_b)
        assert scored["logp_a"].iloc[i] == pytest.approx(expect_a, rel=1e-4, abs=1e-3)
        assert scored["logp_b"].iloc[i] == pytest.approx(expect_b, rel=1e-4, abs=1e-3)
    expected_pred = np.where(scored["logp_b"] > scored["logp_a"], "b", "a")
    assert list(scored["ll_pred"]) == list(expected_pred)
    assert list(scored["ll_correct"]) == list(scored["ll_pred"] == scored["answer_letter"])
    # byte tokenizer: one token per byte of " " + option
    assert list(scored["n_tokens_a"]) == [len((" " + o).encode()) for o in small_items["option_a"]]


def test_option_logprobs_do_not_depend_on_batching(tiny_llama, small_items):
    one = option_logprobs(tiny_llama, small_items, batch_size=1, progress=False)
    four = option_logprobs(tiny_llama, small_items, batch_size=4, progress=False)
    np.testing.assert_allclose(one["logp_a"], four["logp_a"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(one["logp_b"], four["logp_b"], rtol=1e-4, atol=1e-3)


def test_option_logprobs_chat_template(tiny_llama, small_items):
    sub = small_items.iloc[:2]
    scored = option_logprobs(tiny_llama, sub, batch_size=2, chat_template=True, progress=False)
    row = sub.iloc[0]
    rendered = tiny_llama.tokenizer.apply_chat_template(
        [{"role": "user", "content": row.prompt}], add_generation_prompt=True, tokenize=False
    )
    assert scored["logp_a"].iloc[0] == pytest.approx(
        _direct_logprob(tiny_llama, rendered, row.option_a), rel=1e-4, abs=1e-3
    )


class _MergingTokenizer:
    """Splits on characters but merges ": X" into one token, so the prompt is not a joint prefix."""

    def __call__(self, text: str, add_special_tokens: bool = True):
        ids: list[int] = [1] if add_special_tokens else []
        i = 0
        while i < len(text):
            if text[i:i + 2] == ": " and i + 2 < len(text):
                ids.append(1000 + ord(text[i + 2]))
                i += 3
            else:
                ids.append(ord(text[i]))
                i += 1
        return {"input_ids": ids}


def test_continuation_ids_falls_back_when_prompt_is_not_a_prefix():
    tok = _MergingTokenizer()
    ids, n = _continuation_ids(tok, "Answer:", " yes")
    assert n == len("Answer:") + 1
    assert ids == [1, *map(ord, "Answer:"), *map(ord, " yes")]
    ids, n = _continuation_ids(tok, "Answer", " yes")  # the prefix holds: joint tokenisation
    assert ids == [1, *map(ord, "Answer yes")] and n == 7


# ---------------------------------------------------------------------------------------------
# accuracy_table / bootstrap_ci


def test_bootstrap_ci_properties():
    rng = np.random.default_rng(1)
    small = (rng.random(40) < 0.7).astype(float)
    large = (rng.random(2000) < 0.7).astype(float)
    lo, hi = bootstrap_ci(small, seed=0)
    assert lo <= small.mean() <= hi and lo < hi
    lo2, hi2 = bootstrap_ci(large, seed=0)
    assert lo2 <= large.mean() <= hi2
    assert hi2 - lo2 < (hi - lo) / 3
    assert bootstrap_ci(small, seed=0) == (lo, hi)
    assert bootstrap_ci(small, seed=5) != (lo, hi)
    assert bootstrap_ci(np.ones(30)) == (1.0, 1.0)
    assert bootstrap_ci(np.zeros(30)) == (0.0, 0.0)
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([])))
    wide = bootstrap_ci(small, seed=0, alpha=0.5)
    assert wide[1] - wide[0] < hi - lo


def test_accuracy_table_groups(items):
    scored = items.copy()
    scored["correct_pred"] = scored["condition"].isin(["true_belief", "true_control"])
    scored.loc[scored["task"] == "forward_action", "correct_pred"] = (
        scored.loc[scored["task"] == "forward_action", "story_id"] % 2 == 0
    )
    table = accuracy_table(scored, seed=0)
    assert list(table.columns) == ["task", "condition", "n", "accuracy", "ci_low", "ci_high", "invalid_rate"]
    assert len(table) == 12 and (table["n"] == N_STORIES // 2).all()
    assert table["invalid_rate"].isna().all()
    fb = table.set_index(["task", "condition"])
    assert fb.loc[("forward_belief", "true_belief"), ["accuracy", "ci_low", "ci_high"]].tolist() == [1.0, 1.0, 1.0]
    assert fb.loc[("forward_belief", "false_belief"), ["accuracy", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]
    mixed = fb.loc[("forward_action", "true_belief")]
    assert mixed["accuracy"] == pytest.approx(0.5)
    assert mixed["ci_low"] < 0.5 < mixed["ci_high"]
    pd.testing.assert_frame_equal(table, accuracy_table(scored, seed=0))
    by_task = accuracy_table(scored, by=("task",))
    assert list(by_task["task"]) == list(TASKS) and (by_task["n"] == 40).all()
    scored["valid"] = scored["story_id"] != 0
    assert accuracy_table(scored)["invalid_rate"].tolist() == pytest.approx([0.1] * 12)
    scored["ll_correct"] = True
    overall = accuracy_table(scored, "ll_correct", by=())
    assert overall[["n", "accuracy", "ci_low", "ci_high"]].iloc[0].tolist() == [120, 1.0, 1.0, 1.0]
