"""Doubt 3's perturbations, pinned on the real BigToM rows and on generated ones: the belief is kept where the
words change, the words are kept where the decoy turns the belief, and no label ever needs to change."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tomlab.bigtom.conditions import build_conditions
from tomlab.bigtom.raw import RAW_FIELDS, read_raw
from tomlab.bigtom.stories import generate_stories
from tomlab.stress.perturb import (
    KEEP_BELIEF,
    PERTURBATIONS,
    perturb_frame,
    perturb_row,
)

ANSWERS = [f for f in RAW_FIELDS if "answer" in f or "question" in f]


@pytest.fixture(scope="module")
def real(bigtom_csv) -> pd.DataFrame:
    return read_raw(bigtom_csv)


@pytest.mark.parametrize("source", ["generated", "real"])
@pytest.mark.parametrize("kind", PERTURBATIONS)
def test_every_perturbation_applies_to_real_and_generated_rows_and_stays_valid(request, source, kind):
    # generated rows need no data file, so they are checked everywhere; the real rows where the file is
    for raw in ([generate_stories(12, seed=3)] if source == "generated" else [request.getfixturevalue("real")]):
        out, skipped = perturb_frame(raw, kind, seed=0)
        assert len(out) + len(skipped) == len(raw) and len(skipped) <= 0.05 * len(raw), (kind, skipped[:5])
        frames = build_conditions(out)  # the condition files build from the perturbed rows as from the originals
        assert len(frames["0_forward_belief_true_belief"]) == len(out)
        again, _ = perturb_frame(raw, kind, seed=0)
        pd.testing.assert_frame_equal(out, again)  # deterministic per seed
        changed = (out[list(RAW_FIELDS)] != raw.set_index("story_id").loc[out["story_id"], list(RAW_FIELDS)]
                   .reset_index(drop=True)).any(axis=1)
        assert changed.all(), kind  # every kept row was actually perturbed


def test_names_are_swapped_everywhere_and_nothing_else_moves(real):
    row = real.iloc[0].to_dict()
    out = perturb_row(row, "names", seed=0)
    old, new = row["story"].split()[0], out["story"].split()[0]
    assert old != new and not any(re.search(rf"\b{old}\b", out[f]) for f in RAW_FIELDS)
    assert all(out[f] == row[f].replace(old, new) for f in RAW_FIELDS)
    assert perturb_row(row, "names", seed=1) is not None


def test_belief_keeping_perturbations_keep_every_answer(real):
    for kind in KEEP_BELIEF:
        out, _ = perturb_frame(real, kind, seed=0)
        base = real.set_index("story_id").loc[out["story_id"]].reset_index(drop=True)
        if kind == "names":  # the answers change only by the name
            continue
        pd.testing.assert_frame_equal(out[ANSWERS].reset_index(drop=True), base[ANSWERS], check_dtype=False)


def test_noop_adds_one_clause_and_keeps_five_sentences(real):
    row = real.iloc[5].to_dict()
    out = perturb_row(row, "noop", seed=0)
    assert out["story"].count(".") == row["story"].count(".") and len(out["story"]) > len(row["story"])
    assert out["story"].split(".")[1:] == row["story"].split(".")[1:]  # only the first sentence grows


def test_percept_paraphrases_drop_the_not_seeing_words_but_keep_the_event(real):
    out, _ = perturb_frame(real, "percept_paraphrase", seed=0)
    base = real.set_index("story_id").loc[out["story_id"]].reset_index(drop=True)
    for new, old in zip(out["not_aware_of_event"], base["not_aware_of_event"]):
        assert "does not" not in new and re.search(r"\b(misses|unaware|no idea)\b", new)
        tail = re.match(r"^\S+ (?:does not|doesn't|did not) \w+ (.+?)\.?$", old).group(1)  # what was not perceived
        assert tail in new
    styles = {re.search(r"misses|unaware|no idea", s).group(0) for s in out["not_aware_of_event"]}
    assert styles == {"misses", "unaware", "no idea"}


def test_decoys_keep_the_words_and_sit_where_their_belief_belongs(real):
    told, _ = perturb_frame(real, "decoy_told", seed=0)
    base = real.set_index("story_id").loc[told["story_id"]].reset_index(drop=True)
    for decoy, unseen in zip(told["aware_of_event"], base["not_aware_of_event"]):
        # the true-belief story now holds the not-seeing words, then a friend tells: a true belief
        assert decoy.startswith(unseen.rstrip(".")) and "tells" in decoy
    photo, _ = perturb_frame(real, "decoy_photo", seed=0)
    assert photo["not_aware_of_event"].str.contains(r"\bsees a photo\b").all()  # a seeing word, a false belief
    for kind, frame in (("decoy_told", told), ("decoy_photo", photo)):
        base = real.set_index("story_id").loc[frame["story_id"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(frame[ANSWERS].reset_index(drop=True), base[ANSWERS],
                                      check_dtype=False)  # labels follow the belief
        frames = build_conditions(frame)
        tb, fb = frames["0_forward_belief_true_belief"], frames["0_forward_belief_false_belief"]
        assert (tb["correct"] == frame["belief_answer_aware"].to_numpy()).all()
        assert (fb["correct"] == frame["belief_answer_not_aware"].to_numpy()).all()


def test_a_row_it_cannot_apply_to_is_skipped_and_counted(real):
    odd = real.iloc[:3].copy()
    odd.loc[odd.index[0], "not_aware_of_event"] = "Nobody notices anything."
    out, skipped = perturb_frame(odd, "percept_paraphrase", seed=0)
    assert skipped == [int(odd["story_id"].iloc[0])] and len(out) == 2
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb_row(real.iloc[0].to_dict(), "synonyms")
