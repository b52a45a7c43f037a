"""Probe statements, prompt bytes, sample order and labels, and the by_sample split, on hand-made files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from tomlab.probing.probes import split_train_val
from tomlab.probing.samples import (
    STATEMENT_STYLES,
    action_statement,
    belief_statement,
    build_probe_samples,
    probe_statement,
)
from tomlab.schema import default as schema_default

# --------------------------------------------------------------------------------------
# statements
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "statement"),
    [
        ("Ines believes that the kettle is full of water.", "The kettle is full of water."),
        ("Ines believes the kettle is full of water.", "The kettle is full of water."),
        # every later capital is lower-cased, as str.capitalize does
        ("Ines believes that Ines's Kettle holds Water from Lisbon.", "Ines's kettle holds water from lisbon."),
        # any first two words go, and only an exact "that" as the third
        ("Ines knows that the kettle is empty.", "The kettle is empty."),
        ("Ines believes That kettle is empty.", "That kettle is empty."),
        ("Ines believes thatched roofs leak.", "Thatched roofs leak."),
        # words are re-joined with single spaces
        ("  Ines   believes that\tthe kettle  is\nfull. ", "The kettle is full."),
        # nothing after "that": an empty statement, as in the original
        ("Ines believes that", ""),
        ("Ines believes it", "It"),
    ],
)
def test_belief_statement(answer: str, statement: str) -> None:
    assert belief_statement(answer) == statement


@pytest.mark.parametrize("answer", ["", "Ines", "Ines believes", "  Ines   believes "])
def test_belief_statement_needs_three_words(answer: str) -> None:
    with pytest.raises(ValueError, match="fewer than three words"):
        belief_statement(answer)


@pytest.mark.parametrize(
    ("answer", "statement"),
    [
        ("Aarav will proceed with planting the Tulips.", "Proceed with planting the tulips."),
        ("Aarav WILL water the garden.", "Water the garden."),
        ("Aarav grabs the Cup.", "Grab the cup."),
        ("Aarav address the crowd.", "Address the crowd."),  # "ss": left alone
        ("Aarav kisses the cat.", "Kisse the cat."),  # "es": only the s goes, as in the original
        ("Aarav goes home.", "Goe home."),  # only the final s goes, as in the original
        ("Aarav opened the door.", "Opened the door."),  # no s: the verb stays
        ("Aarav will", ""),
        ("Aarav   grabs\tthe  cup.", "Grab the cup."),
        # fewer than two words: the answer itself, capitalized, whitespace untouched
        ("wait", "Wait"),
        (" wAIT ", " wait "),
        ("", ""),
    ],
)
def test_action_statement(answer: str, statement: str) -> None:
    assert action_statement(answer) == statement


def test_probe_statement_styles() -> None:
    assert STATEMENT_STYLES == ("original", "verbatim")
    assert schema_default("probing.statements") == "original"
    belief = "Ines believes that the Kettle is full."
    action = " Ines will boil Water. "
    assert probe_statement("forward_belief", belief) == "The kettle is full."
    assert probe_statement("backward_belief", belief, "verbatim") == "the Kettle is full."
    assert probe_statement("forward_action", action) == "Boil water."
    assert probe_statement("forward_action", action, "verbatim") == "Ines will boil Water."
    with pytest.raises(ValueError, match="unknown statement style"):
        probe_statement("forward_belief", belief, "plain")
    with pytest.raises(ValueError, match="unknown task"):
        probe_statement("percept_to_belief", belief)


# --------------------------------------------------------------------------------------
# samples from hand-made condition files
# --------------------------------------------------------------------------------------

# (story stem, aware answer, not-aware answer) per story, for the belief and the action task
_BELIEFS = [
    ("Ana fills a Jar with rice. A mouse eats the rice.", "Ana believes that the jar is empty.",
     "Ana believes that the Jar holds rice."),
    ("Bo parks his Car on Main Street. A truck tows it away.", "Bo believes his car was towed.",
     "Bo believes his Car is on Main Street."),
]
_ACTIONS = [
    ("Ana fills a Jar with rice. A mouse eats the rice.", "Ana will buy more rice.", "Ana cooks the Rice."),
    ("Bo parks his Car on Main Street. A truck tows it away.", "Bo calls the Towing company.",
     "Bo will drive to Work."),
]


def _write(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter=";").writerows(rows)


@pytest.fixture()
def hand_made(tmp_path: Path) -> Path:
    """Condition files for two stories and the forward belief and action tasks (all probed)."""
    for task, table, question in (("forward_belief", _BELIEFS, "What does X believe?"),
                                  ("forward_action", _ACTIONS, "What will X do?")):
        tb = [(f"{stem} They see it.", question, aware, unaware) for stem, aware, unaware in table]
        fb = [(f"{stem} They do not see it.", question, unaware, aware) for stem, aware, unaware in table]
        _write(tmp_path / f"0_{task}_true_belief" / "stories.csv", tb)
        _write(tmp_path / f"0_{task}_false_belief" / "stories.csv", fb)
    return tmp_path


def test_sample_order_and_labels_follow_the_original(hand_made: Path) -> None:
    samples = build_probe_samples(hand_made, eval_fraction=0.0)
    assert samples["sample_id"].tolist() == list(range(8))
    assert samples["story_id"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # per story: true belief (correct, wrong), then false belief (correct, wrong)
    assert samples["condition"].tolist()[:4] == ["true_belief", "true_belief", "false_belief", "false_belief"]
    assert samples["protagonist"].tolist() == [1, 0, 1, 0] * 2
    assert samples["oracle"].tolist() == [1, 0, 0, 1] * 2
    assert samples["joint"].tolist() == [3, 0, 1, 2] * 2
    assert samples["answer"].tolist()[:4] == ["aware", "not_aware", "not_aware", "aware"]


def test_prompt_bytes(hand_made: Path) -> None:
    belief = build_probe_samples(hand_made, eval_fraction=0.0)
    stem = _BELIEFS[0][0]
    assert belief["prompt"].tolist()[:4] == [
        f"Story: {stem} They see it.\nBelief: The jar is empty.",
        f"Story: {stem} They see it.\nBelief: The jar holds rice.",
        f"Story: {stem} They do not see it.\nBelief: The jar holds rice.",
        f"Story: {stem} They do not see it.\nBelief: The jar is empty.",
    ]
    stem = _BELIEFS[1][0]
    assert belief["prompt"].tolist()[4:6] == [
        f"Story: {stem} They see it.\nBelief: His car was towed.",
        f"Story: {stem} They see it.\nBelief: His car is on main street.",
    ]
    action = build_probe_samples(hand_made, task="forward_action", eval_fraction=0.0)
    assert action["statement"].tolist() == [
        "Buy more rice.", "Cook the rice.", "Cook the rice.", "Buy more rice.",
        "Call the towing company.", "Drive to work.", "Drive to work.", "Call the towing company.",
    ]
    assert action["prompt"][1].encode("utf-8") == (
        f"Story: {_ACTIONS[0][0]} They see it.\nAction: Cook the rice.".encode()
    )
    verbatim = build_probe_samples(hand_made, task="forward_action", eval_fraction=0.0, statements="verbatim")
    assert verbatim["statement"].tolist()[:2] == ["Ana will buy more rice.", "Ana cooks the Rice."]
    for column in ("sample_id", "oracle", "protagonist", "joint"):
        assert verbatim[column].tolist() == action[column].tolist()


def test_labels_are_positional_even_when_both_answers_read_alike(tmp_path: Path) -> None:
    same = "Ana believes that the jar is empty."
    _write(tmp_path / "0_forward_belief_true_belief" / "stories.csv", [("S.", "Q?", same, same)])
    _write(tmp_path / "0_forward_belief_false_belief" / "stories.csv", [("S.", "Q?", same, same)])
    samples = build_probe_samples(tmp_path, eval_fraction=0.0)
    assert samples["joint"].tolist() == [3, 0, 1, 2]


# --------------------------------------------------------------------------------------
# the by_sample split is scikit-learn's train_test_split over the sample order
# --------------------------------------------------------------------------------------


def _meta(n: int) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": np.arange(n), "story_id": np.arange(n) // 4})


@pytest.mark.parametrize(("n", "fraction", "seed"), [(400, 0.2, 0), (40, 0.2, 3), (37, 0.3, 1)])
def test_by_sample_is_train_test_split(n: int, fraction: float, seed: int) -> None:
    is_val = split_train_val(_meta(n), val_fraction=fraction, mode="by_sample", seed=seed)
    ids = np.arange(n)
    _, _, _, _, _, val_ids = train_test_split(np.zeros((n, 3)), ids % 4, ids, test_size=fraction, random_state=seed)
    expected = np.zeros(n, dtype=bool)
    expected[val_ids] = True
    np.testing.assert_array_equal(is_val, expected)


def test_by_sample_follows_sample_id_not_row_order() -> None:
    meta = _meta(40)
    shuffled = meta.sample(frac=1.0, random_state=7)
    a = split_train_val(meta, 0.2, "by_sample", seed=0)
    b = split_train_val(shuffled, 0.2, "by_sample", seed=0)
    assert set(meta["sample_id"][a]) == set(shuffled["sample_id"][b])


def test_by_sample_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        split_train_val(_meta(1), 0.2, "by_sample")
