"""Stress tests in behaviour (doubts 3 and 5) and the several-minds probes (doubt 4): the item sets, the
tables and the verdicts, on real generated stories and on planted cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tomlab.stress.behaviour import (
    ORIGINAL,
    behaviour_table,
    stress_items,
    symbolic_summary,
)
from tomlab.stress.minds import generate_minds, minds_items, minds_probe_samples
from tomlab.stress.minds_probes import GROUPS, head_map, minds_correct, minds_stats
from tomlab.stress.transfer import origin_table, transfer_correct
from tomlab.stress.verdicts import minds_verdict, steering_verdict


@pytest.fixture(scope="module")
def item_sets(generated_conditions, tmp_path_factory):
    from tomlab.bigtom.conditions import write_conditions
    from tomlab.bigtom.raw import read_raw
    from tomlab.stress.perturb import perturb_frame

    conditions = generated_conditions(20, 4)
    raw = read_raw(conditions.parent / "stories.csv")
    sets = {}
    for name, kind, seed in (("decoy_photo", "decoy_photo", 0), ("noop", "noop", 0), ("names@0", "names", 0),
                             ("names@1", "names", 1), ("percept_paraphrase", "percept_paraphrase", 0)):
        frame, _ = perturb_frame(raw, kind, seed=seed)
        root = tmp_path_factory.mktemp(name.replace("@", "_"))
        write_conditions(frame.drop(columns="story_id"), root)
        sets[name] = (str(root), origin_table(len(raw), frame["story_id"].tolist()))
    minds = minds_items(generate_minds(4, 0))
    items = stress_items(str(conditions), list(range(6)), sets, minds=minds)
    return items, sets


def test_item_sets_keep_only_what_changed_and_name_their_origin(item_sets):
    items, sets = item_sets
    assert items["item_id"].is_unique
    counts = items.groupby(["set", "condition"]).size()
    assert counts[ORIGINAL, "true_belief"] == counts[ORIGINAL, "false_belief"] == 6
    assert set(items.loc[items["set"] == "decoy_photo", "condition"]) == {"false_belief"}  # the decoy's slot only
    assert counts["noop", "true_belief"] == counts["noop", "false_belief"] == 6  # the clause changes both
    original = items[items["set"] == ORIGINAL].set_index(["origin_story", "condition"])
    for name in ("decoy_photo", "noop", "names@0", "percept_paraphrase"):
        part = items[items["set"] == name]
        assert part["origin_story"].between(0, 5).all()
        before = original.loc[list(zip(part["origin_story"], part["condition"]))]
        assert ((before["story"].to_numpy() != part["story"].to_numpy())
                | (before["question"].to_numpy() != part["question"].to_numpy())).all()  # only what changed
        if name != "names@0":  # the answers keep their words (new names change the names in them)
            assert (before["correct"].to_numpy() == part["correct"].to_numpy()).all()
    skipped = set(sets["percept_paraphrase"][1].query("row < 0")["origin_story"])
    assert not skipped & set(items.loc[items["set"] == "percept_paraphrase", "origin_story"])
    assert (items["set"] == "minds").sum() == 4 * 9


def _scored(items: pd.DataFrame, plain_right, steered_right) -> pd.DataFrame:
    """A scored frame in tomlab stress-behaviour's shape: log-likelihood correctness from two rules."""
    plain = items.assign(direction="none", ll_correct=[bool(plain_right(r)) for r in items.itertuples()])
    steered = items.assign(direction="+tpfo", ll_correct=[bool(steered_right(r)) for r in items.itertuples()])
    return pd.concat([plain, steered], ignore_index=True)


def test_steering_that_fixes_false_beliefs_everywhere_supports_and_none_is_inconclusive(item_sets):
    items, _ = item_sets
    fixes = _scored(items, lambda r: r.condition != "false_belief", lambda r: True)
    table = behaviour_table(fixes, n_boot=200)
    fb = table[(table["condition"] == "false_belief") & (table["set"] == "noop")].iloc[0]
    assert fb["plain"] == 0.0 and fb["steered"] == 1.0 and fb["delta_low"] > 0.9
    assert fb["versus_original"] == 0.0  # the same as the original stories
    assert steering_verdict(fixes, n_boot=200)["verdict"] == "supports the claim"
    # only the original stories move: the direction does not transfer
    local = _scored(items, lambda r: False, lambda r: r.set == ORIGINAL)
    assert steering_verdict(local, n_boot=200)["verdict"] == "undermines it"
    # nothing moves, not even the originals: nothing to transfer
    still = _scored(items, lambda r: r.story_id % 2 == 0, lambda r: r.story_id % 2 == 0)
    assert steering_verdict(still, n_boot=200)["verdict"] == "inconclusive at this scale"


def test_the_symbolic_distribution_spans_the_draws_of_new_names(item_sets):
    items, _ = item_sets
    # draw 0 answers everything, draw 1 nothing: mean 0.5, range 0 to 1
    scored = _scored(items, lambda r: r.set != "names@1", lambda r: True)
    summary = symbolic_summary(behaviour_table(scored, n_boot=200)).set_index("condition")
    assert summary.loc["true_belief", "instantiations"] == 2
    assert summary.loc["true_belief", "mean"] == 0.5 and summary.loc["true_belief", "lowest"] == 0.0
    assert summary.loc["true_belief", "highest"] == 1.0 and summary.loc["true_belief", "original"] == 1.0


# --- several minds: probes on planted activations --------------------------------------------------

def _minds_acts(samples: pd.DataFrame, head=(1, 2), seed=0, layers=3, heads=4, d=6) -> np.ndarray:
    """Noise, with each sample's belief label written into one head."""
    rng = np.random.default_rng(seed)
    acts = rng.standard_normal((len(samples), layers, heads, d))
    acts[:, head[0], head[1], 0] += 3.0 * (2 * samples["belief"].to_numpy() - 1)
    return acts


def _belief_transfer(head=(1, 2), layers=3, heads=4, d=6) -> pd.DataFrame:
    """A transfer frame whose forward-belief heads rank ``head`` first."""
    rng = np.random.default_rng(3)
    y = np.tile([1, 0, 1, 0], 40)
    acts = rng.standard_normal((len(y), layers, heads, d))
    acts[:, head[0], head[1], 0] += 3.0 * (2 * y - 1)
    meta = pd.DataFrame({"sample_id": np.arange(len(y)), "story_id": np.repeat(np.arange(40), 4), "protagonist": y,
                         "prompt": ["some story"] * len(y)})
    return transfer_correct((acts, meta, meta["story_id"].to_numpy() >= 30), {}, seed=0)


def test_minds_probes_find_the_planted_head_and_the_verdict_follows_it():
    stories = generate_minds(30, 0)
    samples = minds_probe_samples(stories)
    correct = minds_correct(_minds_acts(samples), samples, val_fraction=0.25, seed=0)
    assert set(correct["group"]) == set(GROUPS)
    stats = minds_stats(correct, _belief_transfer(), top_k=1, n_boot=200).set_index("group")
    first = stats.loc["first_order"]
    assert first["best_head"] == "L1H2" and first["best_acc"] > 0.9 and first["belief_heads_acc"] > 0.9
    assert stats.loc["second_order", "best_acc"] > 0.9  # the planted label covers both orders
    assert minds_verdict(stats.reset_index())["verdict"] == "supports the claim"
    table = head_map(correct, "first_order")
    assert table.shape == (3, 4) and table.loc[1, 2] == table.to_numpy().max()
    # the belief heads sit elsewhere: the minds are decodable, not by them (enough stories to show it)
    more = minds_probe_samples(generate_minds(80, 0))
    correct = minds_correct(_minds_acts(more), more, val_fraction=0.25, seed=0)
    elsewhere = minds_stats(correct, _belief_transfer(head=(0, 0)), top_k=3, n_boot=200)
    assert minds_verdict(elsewhere)["verdict"] == "undermines it"


def test_minds_probes_on_noise_are_inconclusive():
    samples = minds_probe_samples(generate_minds(12, 1))
    acts = np.random.default_rng(0).standard_normal((len(samples), 3, 4, 6))
    stats = minds_stats(minds_correct(acts, samples, seed=0), _belief_transfer(), top_k=1, n_boot=200)
    assert minds_verdict(stats)["verdict"] == "inconclusive at this scale"
    with pytest.raises(ValueError, match="activations"):
        minds_correct(acts[:5], samples)
