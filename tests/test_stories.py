"""Tests for tomlab.stories: the seeded BigToM-format story generator."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pandas as pd
import pytest

from tomlab.bigtom.conditions import CONDITION_NAMES, build_conditions
from tomlab.bigtom.raw import RAW_FIELDS, read_raw, write_raw
from tomlab.bigtom.stories import (
    SCENARIOS,
    generate_stories,
    max_stories,
    write_generated,
)


@pytest.fixture(scope="module")
def three_hundred() -> pd.DataFrame:
    return generate_stories(300, seed=11)


def _name(row: pd.Series) -> str:
    m = re.fullmatch(r"What will (.+) do\?", row["action_question"])
    assert m, row["action_question"]
    return m.group(1)


def test_columns_and_ids(three_hundred: pd.DataFrame) -> None:
    assert list(three_hundred.columns) == [*RAW_FIELDS, "scenario", "story_id"]
    assert three_hundred["story_id"].tolist() == list(range(300))


def test_same_seed_same_frame_regardless_of_global_rng() -> None:
    random.seed(1)
    a = generate_stories(120, seed=5)
    random.seed(2)
    _ = [random.random() for _ in range(10)]
    b = generate_stories(120, seed=5)
    pd.testing.assert_frame_equal(a, b)


def test_different_seeds_differ() -> None:
    a = generate_stories(100, seed=1)
    b = generate_stories(100, seed=2)
    assert a["story"].tolist() != b["story"].tolist()
    assert set(a["story"]) != set(b["story"])


def test_scenarios_are_spread(three_hundred: pd.DataFrame) -> None:
    assert len(SCENARIOS) >= 24
    assert len({sc.key for sc in SCENARIOS}) == len(SCENARIOS)
    used = three_hundred["scenario"].value_counts()
    assert len(used) >= 24
    assert used.max() - used.min() <= 1, "stories are spread evenly over the scenarios"


def test_stories_are_distinct(three_hundred: pd.DataFrame) -> None:
    assert three_hundred["story"].nunique() == 300


def test_capacity_limit() -> None:
    limit = max_stories()
    assert limit >= 1000
    everything = generate_stories(limit, seed=0)
    assert everything["story"].nunique() == limit
    with pytest.raises(ValueError, match=str(limit)):
        generate_stories(limit + 1, seed=0)
    with pytest.raises(ValueError):
        generate_stories(-1, seed=0)
    assert len(generate_stories(0, seed=0)) == 0


def test_round_trip_and_conditions(tmp_path: Path) -> None:
    path = tmp_path / "generated.csv"
    write_generated(path, 150, seed=3)
    raw = read_raw(path)
    expected = generate_stories(150, seed=3)
    assert raw[list(RAW_FIELDS)].values.tolist() == expected[list(RAW_FIELDS)].values.tolist()
    assert raw["story_id"].tolist() == list(range(150))
    conds = build_conditions(raw)
    assert list(conds) == list(CONDITION_NAMES)
    assert all(len(frame) == 150 for frame in conds.values())
    # write_raw directly from the generated frame (extra columns are ignored)
    write_raw(expected, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == path.read_bytes()


def test_bigtom_style_fields(three_hundred: pd.DataFrame) -> None:
    for _, row in three_hundred.iterrows():
        name = _name(row)
        sentences = row["story"].split(".")
        assert len(sentences) == 6 and sentences[-1] == ""
        assert sentences[3].startswith(f" {name} believes ")
        assert row["belief_question"].startswith(f"Does {name} believe ") and row["belief_question"].endswith("?")
        assert row["aware_of_event"].startswith(f"{name} ")
        assert row["not_aware_of_event"].startswith(f"{name} does not ")
        assert row["not_aware_of_random_event"].startswith(f"{name} does not ")
        assert row["action_answer_aware"].startswith(f"{name} will ")
        assert row["action_answer_not_aware"].startswith(f"{name} will ")
        assert row["desire_question"].startswith(f"Does {name} want")
        assert row["random_event"].endswith(".") and row["random_event"].count(".") == 1


def test_belief_answers(three_hundred: pd.DataFrame) -> None:
    for _, row in three_hundred.iterrows():
        name = _name(row)
        aware, not_aware = row["belief_answer_aware"], row["belief_answer_not_aware"]
        prefix = re.compile(rf"{re.escape(name)} believes (that )?")
        ma, mn = prefix.match(aware), prefix.match(not_aware)
        assert ma and mn, (aware, not_aware)
        assert ma.group(0) == mn.group(0), "same lead-in for both answers"
        assert aware != not_aware
        # the initial-belief sentence of the story states the not-aware belief
        assert row["story"].split(".")[3].strip() + "." == not_aware
        # both answers appear as options in the belief question
        content_a, content_n = aware[ma.end():-1], not_aware[mn.end():-1]
        common = len(_common_prefix(content_a, content_n))
        assert content_n[common:] in row["belief_question"] and content_a[common:] in row["belief_question"]


def _common_prefix(a: str, b: str) -> str:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[:i]


def test_no_forbidden_characters(three_hundred: pd.DataFrame) -> None:
    for field in RAW_FIELDS:
        for value in three_hundred[field]:
            assert isinstance(value, str) and value.strip()
            assert ";" not in value and "\n" not in value and "\r" not in value, (field, value)
            assert "{" not in value and "^" not in value, (field, value)
