"""The released BigToM evaluation protocol: prompt bytes, option order, answer parser, chat-template
choice, and both parsers reported side by side.  Fixtures are this project's own stories."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from tomlab.bigtom.conditions import read_condition
from tomlab.bigtom.evaluation import (
    build_items,
    items_parser,
    items_protocol,
    parser_table,
    score_generation,
)
from tomlab.bigtom.protocol import (
    ORIGINAL_INSTRUCTION,
    correct_in_b,
    make_prompt,
    parse_original,
    released_answer,
    uses_chat_template,
)

N_STORIES = 16


@pytest.fixture(scope="module")
def conditions_dir(generated_conditions) -> Path:
    return generated_conditions(N_STORIES, 5)


@pytest.fixture(scope="module")
def items(conditions_dir) -> pd.DataFrame:
    return build_items(conditions_dir)


def test_original_is_the_default_and_labels_the_controls(items):
    assert items_protocol(items) == "original" and items_parser(items) == "original"
    assert set(items.loc[items["in_original"], "condition"]) == {"true_belief", "false_belief"}
    assert set(items.loc[~items["in_original"], "condition"]) == {"true_control", "false_control"}


def test_original_prompt_bytes():
    prompt = make_prompt("original", "Ann has a cup. It is red.", "What does Ann believe?", "It is red.", "It is blue.")
    assert prompt == (
        "Answer the questions based on the context. Keep your answer concise, few words are enough, "
        "maximum one sentence. Answer as 'Answer:<option>)<answer>'.\n\n"
        "Story: Ann has a cup. It is red.\nQuestion: What does Ann believe?\n"
        "Choose one of the following:\na) It is red.\nb) It is blue.\nAnswer:"
    )
    assert not ORIGINAL_INSTRUCTION.endswith("\n")


def _released_order(n: int, seed: int) -> list[bool]:
    """Re-enact the released loop: seed the module generator once, shuffle [correct, wrong] per row."""
    state = random.getstate()
    try:
        random.seed(seed)
        out = []
        for i in range(n):
            answers = [f"right{i}", f"wrong{i}"]
            random.shuffle(answers)
            out.append(answers[0] != f"right{i}")
        return out
    finally:
        random.setstate(state)


@pytest.mark.parametrize("seed", [0, 7])
def test_original_option_order_is_one_seeded_shuffle_per_condition_run(conditions_dir, seed):
    built = build_items(conditions_dir, seed=seed)
    expected = _released_order(N_STORIES // 2, seed)
    for (_task, _condition), group in built.groupby(["task", "condition"], sort=False):
        assert list(group["answer_letter"] == "b") == expected
    assert list(correct_in_b("original", seed, range(5), "forward_belief", "true_belief")) == expected[:5]
    # truncation keeps the first stories' order: the draws follow the file
    short = build_items(conditions_dir, seed=seed, max_stories=3)
    assert list(short.groupby(["task", "condition"], sort=False).head(3)["answer_letter"] == "b") == expected[:3] * 12


def test_original_order_needs_the_file_start():
    with pytest.raises(ValueError, match="first stories"):
        list(correct_in_b("original", 0, [3, 4], "forward_belief", "true_belief"))


def test_original_items_hold_the_condition_rows(items, conditions_dir):
    for (task, condition), group in items.groupby(["task", "condition"]):
        frame = read_condition(conditions_dir / f"0_{task}_{condition}" / "stories.csv")
        for row in group.itertuples():
            src = frame.iloc[row.story_id]
            a, b = (src["correct"], src["wrong"]) if row.answer_letter == "a" else (src["wrong"], src["correct"])
            assert row.prompt == make_prompt("original", src["story"], src["question"], a, b)


OPT_A, OPT_B = "Noor believes the pitcher holds oat milk.", "Noor believes the pitcher holds almond milk."


@pytest.mark.parametrize(
    "completion, letter, expected",
    [
        (" a) Noor believes the pitcher holds oat milk.", "a", "a"),
        (" b) Noor believes ...", "a", "b"),
        (" B) almond", "b", "b"),             # first two characters lower-cased
        ("a) oat milk", "a", "invalid"),       # no space after "Answer:": no "Answer: " mark at all
        (" I think a) is right", "a", "a"),    # key anywhere, only the right one
        (" a) or b)", "a", "a"),               # the first two characters decide first
        (" maybe a) maybe b)", "a", "invalid"),
        (" Noor believes the pitcher holds oat milk", "a", "a"),   # option text, final "." dropped
        (" NOOR BELIEVES THE PITCHER HOLDS ALMOND MILK.", "a", "b"),
        (" I am not sure.", "a", "invalid"),
        (" A) oat", "a", "a"),
        (" x\nStory: more\nAnswer: b) almond", "a", "b"),           # the last mark counts
    ],
)
def test_parse_original(completion, letter, expected):
    prompt = make_prompt("original", "S.", "Q?", OPT_A, OPT_B)
    assert parse_original(prompt, completion, OPT_A, OPT_B, letter) == expected


def test_released_answer_strips_end_marks_characterwise():
    assert released_answer("Answer: a) glass</s>") == "a) gla"
    assert released_answer("no mark here") == "Not found."
    assert released_answer("Answer:  b)  ") == "b)"
    # the character-wise strip can eat the option text the fallback looks for
    options = ("the glass", "the cups")
    assert parse_original("Answer:", " the glass", *options, "a") == "invalid"


def test_both_parsers_are_scored_and_tabled(items):
    sub = items[items["condition"] == "true_belief"].head(4).reset_index(drop=True)
    letters = list(sub["answer_letter"])
    replies = [f" {letters[0]}) x", f"{letters[1]}", " nothing", f" {'b' if letters[3] == 'a' else 'a'}) y"]
    scored = score_generation(sub, lambda prompts: replies)
    assert list(scored["parsed_original"]) == [letters[0], "invalid", "invalid", "b" if letters[3] == "a" else "a"]
    assert list(scored["parsed_lenient"])[:2] == [letters[0], letters[1]]
    assert (scored["parsed"] == scored["parsed_original"]).all()
    lenient = score_generation(sub, lambda prompts: replies, parser="lenient")
    assert (lenient["parsed"] == lenient["parsed_lenient"]).all()
    table = parser_table(scored, by=())
    assert table.loc[0, "accuracy_original"] == pytest.approx(0.25)
    assert table.loc[0, "invalid_original"] == pytest.approx(0.5)
    assert table.loc[0, "accuracy_lenient"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="parser"):
        score_generation(sub, lambda prompts: replies, parser="strict")


def test_chat_template_follows_the_protocol_unless_set():
    assert uses_chat_template("original") is False
    assert uses_chat_template("tomlab") is True
    assert uses_chat_template("original", True) is True
    with pytest.raises(ValueError, match="protocol"):
        uses_chat_template("paper")


def test_mixed_protocols_are_refused(items, conditions_dir):
    other = build_items(conditions_dir, protocol="tomlab", max_stories=1)
    with pytest.raises(ValueError, match="protocol"):
        items_protocol(pd.concat([items, other]))


def test_eval_items_cli_writes_each_protocol(conditions_dir, tmp_path):
    from tomlab.cli.main import main

    for protocol in ("original", "tomlab"):
        out = tmp_path / f"{protocol}.parquet"
        assert main(["eval-items", "--conditions", str(conditions_dir), "--protocol", protocol,
                     "--max-stories", "4", "--out", str(out)]) == 0
        written = pd.read_parquet(out)
        assert items_protocol(written) == protocol
        assert written["prompt"].str.startswith(
            ORIGINAL_INSTRUCTION + "\n\nStory: " if protocol == "original" else "Read the story").all()
    lenient = tmp_path / "lenient.parquet"
    assert main(["eval-items", "--conditions", str(conditions_dir), "--parser", "lenient", "--max-stories", "2",
                 "--out", str(lenient)]) == 0
    assert items_parser(pd.read_parquet(lenient)) == "lenient"
