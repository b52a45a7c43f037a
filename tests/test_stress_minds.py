"""Doubt 4's three-mind stories: seeded, rendered cleanly from every scenario, with first- and second-order
ground truth that the questions, probe labels and evaluation items all follow."""

from __future__ import annotations

import random
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tomlab.bigtom.evaluation import ITEM_COLUMNS, accuracy_table, evaluate_items
from tomlab.bigtom.stories import NAMES, SCENARIOS
from tomlab.stress.minds import (
    MINDS,
    QUESTION_COLUMNS,
    ROLES,
    SAMPLE_COLUMNS,
    STORY_COLUMNS,
    first_order_belief,
    generate_minds,
    minds_capacity,
    minds_items,
    minds_probe_samples,
    minds_questions,
    read_minds,
    render_minds_story,
    second_order_belief,
    write_minds,
)

PRONOUNS = dict(NAMES)


@pytest.fixture(scope="module")
def stories() -> pd.DataFrame:
    return generate_minds(81, seed=7)


@pytest.fixture(scope="module")
def samples(stories: pd.DataFrame) -> pd.DataFrame:
    return minds_probe_samples(stories)


# ------------------------------------------------------------------------------------------ generation


def test_columns_ids_and_determinism(stories: pd.DataFrame) -> None:
    assert list(stories.columns) == list(STORY_COLUMNS)
    assert stories["story_id"].tolist() == list(range(81))
    random.seed(3)  # the global generator plays no part
    pd.testing.assert_frame_equal(generate_minds(81, seed=7), stories)
    other = generate_minds(81, seed=8)
    assert set(other["story"]) != set(stories["story"])
    assert not stories["story"].duplicated().any()


def test_scenarios_spread_evenly(stories: pd.DataFrame) -> None:
    counts = stories["scenario"].value_counts()
    assert len(counts) == len(SCENARIOS) and set(counts) == {3}


def test_bad_n_refused() -> None:
    one = SCENARIOS[:1]
    with pytest.raises(ValueError, match="at most"):
        generate_minds(minds_capacity(one) + 1, seed=0, scenarios=one)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            generate_minds(bad, seed=0)  # type: ignore[arg-type]
    assert len(generate_minds(1, seed=0, scenarios=one)) == 1


def test_roles_are_three_distinct_names_in_random_positions(stories: pd.DataFrame) -> None:
    positions = {role: set() for role in ROLES}
    for rec in stories.to_dict("records"):
        names = rec["names"].split(", ")
        assert sorted(names) == sorted(rec[r] for r in ROLES) and len(set(names)) == 3
        for role in ROLES:
            positions[role].add(names.index(rec[role]))
    assert all(p == {0, 1, 2} for p in positions.values()), positions  # no position gives a role away


def _access_sentences(rec: dict) -> list[str]:
    seer, unaware, told = (rec[r] for r in ROLES)
    return [f"only {seer} stays behind", f"{unaware} does not", f"{told} does not",
            f"{seer} tells {told} what happened", f"Nobody tells {unaware} about it"]


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.key)
def test_every_scenario_renders_cleanly(sc) -> None:
    frame = generate_minds(6, seed=1, scenarios=[sc])
    for rec in frame.to_dict("records"):
        story = rec["story"]
        assert not re.search(r"[{}^]", story) and "  " not in story and story.endswith(".")
        assert all(s[:1].isupper() for s in story[:-1].split(". ")), story
        for name in rec["names"].split(", "):
            assert name in story
        for sentence in _access_sentences(rec):
            assert sentence in story, (sentence, story)
        assert f"all see that {rec['belief_prefix']} {rec['x']}." in story
        # the seer's sentence is the scenario's "aware" one; nobody else gets it
        aware_verb = sc.aware.split()[1]
        assert f"{rec['seer']} {aware_verb}" in story
        assert f"{rec['unaware']} {aware_verb}" not in story and f"{rec['told']} {aware_verb}" not in story


def test_owner_things_are_named_not_pronouned() -> None:
    shed = next(sc for sc in SCENARIOS if sc.key == "garden_shed")
    people = [("Amara", PRONOUNS["Amara"]), ("Bruno", PRONOUNS["Bruno"]), ("Chloe", PRONOUNS["Chloe"])]
    text = render_minds_story(shed, shed.variants[0], shed.details[0], people, ("unaware", "seer", "told"))
    assert "Amara's teenage son lends" in text["story"] and "Bruno sees Amara's son" in text["story"]
    assert "Amara does not see her son" in text["story"]
    assert "While" not in text["story"]  # the "While {Name} ..." clause of the event is dropped
    with pytest.raises(ValueError):
        render_minds_story(shed, shed.variants[0], shed.details[0], people, ("seer", "seer", "told"))


# ---------------------------------------------------------------------------------------- ground truth


def test_first_order_truth_table() -> None:
    assert {r: first_order_belief(r) for r in ROLES} == {"seer": "y", "unaware": "x", "told": "y"}
    with pytest.raises(ValueError):
        first_order_belief("narrator")


def test_second_order_truth_table() -> None:
    expected = {
        ("seer", "unaware"): "x", ("seer", "told"): "y",
        ("unaware", "seer"): "x", ("unaware", "told"): "x",
        ("told", "seer"): "y", ("told", "unaware"): "x",
    }
    assert {pair: second_order_belief(*pair) for pair in expected} == expected
    with pytest.raises(ValueError):
        second_order_belief("seer", "seer")


def test_questions_follow_the_truth(stories: pd.DataFrame) -> None:
    q = minds_questions(stories)
    assert list(q.columns) == list(QUESTION_COLUMNS) and len(q) == len(stories) * len(MINDS)
    rec = stories.iloc[0]
    first = q[(q["story_id"] == 0) & (q["condition"] == "unaware")].iloc[0]
    assert first["question"] == (f"What does {rec['unaware']} believe {rec['belief_prefix']}: "
                                 f"{rec['x']} or {rec['y']}?")
    assert first["correct"] == f"{rec['unaware']} believes that {rec['belief_prefix']} {rec['x']}."
    second = q[(q["story_id"] == 0) & (q["condition"] == "seer_about_told")].iloc[0]
    assert second["question"].startswith(f"What does {rec['seer']} think {rec['told']} believes ")
    assert second["correct"].endswith(f"{rec['belief_prefix']} {rec['y']}.") and second["truth"] == "y"
    for row in q.to_dict("records"):
        states = stories.loc[row["story_id"], ["x", "y"]]
        assert row["correct"].endswith(f" {states[row['truth']]}.")
        assert row["wrong"].endswith(f" {states['y' if row['truth'] == 'x' else 'x']}.")
        assert row["correct"] != row["wrong"]


# --------------------------------------------------------------------------------------- probe samples


def test_probe_samples_shape_and_labels(stories: pd.DataFrame, samples: pd.DataFrame) -> None:
    assert list(samples.columns) == list(SAMPLE_COLUMNS)
    assert samples["sample_id"].tolist() == list(range(len(stories) * len(MINDS) * 2))
    assert (samples["task"] == "minds").all() and (samples["protagonist"] == samples["belief"]).all()
    assert (samples["joint"] == 2 * samples["oracle"] + samples["belief"]).all()
    assert (samples["oracle"] == (samples["value"] == "y")).all()
    rec = stories.iloc[0]
    assert samples.loc[0, "prompt"] == f"Story: {rec['story']}\nBelief: {samples.loc[0, 'statement']}"
    # the statement names whose belief it is: the full answer sentence
    first = samples.iloc[0]
    assert first["statement"] == f"{first['subject']} believes that {rec['belief_prefix']} {rec['x']}."
    second = samples[samples["order"] == 2].iloc[0]
    assert second["statement"].startswith(f"{second['subject']} thinks that {second['target_name']} believes that ")
    # the example of the brief: the unaware one's sample for x is believed but false
    unaware_x = samples[(samples["condition"] == "unaware") & (samples["value"] == "x")]
    assert (unaware_x["belief"] == 1).all() and (unaware_x["oracle"] == 0).all()
    for row in samples.drop_duplicates("condition").to_dict("records"):
        role, target = row["role"], row["target"]
        truth = first_order_belief(role) if row["order"] == 1 else second_order_belief(role, target)
        sub = samples[samples["condition"] == row["condition"]]
        assert (sub["belief"] == (sub["value"] == truth)).all(), row["condition"]


def test_probe_labels_are_balanced_and_not_a_function_of_the_content(samples: pd.DataFrame) -> None:
    assert set(samples["oracle"]) == {0, 1} and set(samples["belief"]) == {0, 1}
    assert set(samples["joint"]) == {0, 1, 2, 3}
    assert samples["prompt"].is_unique and samples["prompt_id"].is_unique
    # within a story, the same content (value) is believed by one mind and not by another
    per_content = samples.groupby(["story_id", "value"])
    assert per_content["belief"].nunique().eq(2).all()
    one = samples[(samples["story_id"] == 0) & (samples["value"] == "x")]
    assert set(one.loc[one["condition"] == "unaware", "belief"]) == {1}
    assert set(one.loc[one["condition"] == "seer", "belief"]) == {0}


# ------------------------------------------------------------------------------------------------ items


@pytest.mark.parametrize("protocol", ["original", "tomlab"])
def test_items_follow_the_truth(stories: pd.DataFrame, protocol: str) -> None:
    items = minds_items(stories, protocol=protocol, seed=0)
    assert list(items.columns) == list(ITEM_COLUMNS) and len(items) == len(stories) * len(MINDS)
    assert items["item_id"].is_unique and not items["in_original"].any()
    assert set(items["task"]) == {"minds_first_order", "minds_second_order"}
    assert set(items["answer_letter"]) == {"a", "b"}
    assert set(items["parser"]) == {"original" if protocol == "original" else "lenient"}
    q = minds_questions(stories).set_index(["story_id", "condition"])
    for row in items.to_dict("records"):
        expect = q.loc[(row["story_id"], row["condition"])]
        chosen = row["option_a"] if row["answer_letter"] == "a" else row["option_b"]
        assert chosen == row["correct"] == expect["correct"]
        truth_state = stories.loc[row["story_id"], expect["truth"]]
        assert chosen.endswith(f" {truth_state}.") and row["question"] in row["prompt"]
        assert f"a) {row['option_a']}\nb) {row['option_b']}" in row["prompt"]
    assert minds_items(stories, protocol=protocol, seed=0).equals(items)


def test_items_are_scored_by_evaluate_items(stories: pd.DataFrame) -> None:
    items = minds_items(stories.iloc[:6], protocol="original", seed=1)
    letters = dict(zip(items["prompt"], items["answer_letter"]))
    options = {p: (a, b) for p, a, b in zip(items["prompt"], items["option_a"], items["option_b"])}

    class Oracle:  # answers every item correctly, in the released format
        def generate(self, prompts: list[str], config: object) -> list[SimpleNamespace]:
            out = []
            for p in prompts:
                letter = letters[p]
                out.append(SimpleNamespace(text=f" {letter}) {options[p][letter == 'b']}"))
            return out

    scored = evaluate_items(None, items, Oracle(), SimpleNamespace(chat_template=False), modes=("generation",))
    assert scored["correct_pred"].all() and scored["valid"].all()
    table = accuracy_table(scored, n_boot=10)
    assert len(table) == len(MINDS) and (table["accuracy"] == 1.0).all()


# ------------------------------------------------------------------------------------------------ files


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_read_round_trip(stories: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"minds{suffix}"
    write_minds(stories, path)
    pd.testing.assert_frame_equal(read_minds(path), stories)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_reader_refuses_a_bad_file_and_names_it(stories: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    stories.drop(columns=["told"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"broken\.csv.*told"):
        read_minds(path)
    twice = tmp_path / "twice.csv"
    stories.assign(told=stories["seer"]).to_csv(twice, index=False)
    with pytest.raises(ValueError, match=r"twice\.csv.*two roles"):
        read_minds(twice)
    with pytest.raises(ValueError, match=r"minds\.txt"):
        write_minds(stories, tmp_path / "minds.txt")
