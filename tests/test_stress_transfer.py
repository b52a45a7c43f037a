"""Stress tests, doubts 2 and 3: probes trained on the originals and tested on shifted stories; the
pairing of perturbed samples with their originals; the verdicts on planted cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tomlab.stress.transfer import (
    ORIGINAL,
    POOLS,
    REVERSE,
    inner_ranking,
    origin_table,
    overlap_matrix,
    shift_examples,
    shifted_samples,
    split_half_ceiling,
    story_weights,
    transfer_correct,
    transfer_stats,
)
from tomlab.stress.verdicts import specific_verdict, tokens_verdict

LAYERS, HEADS, D = 4, 4, 8


def _stories(n_stories: int, seed: int, *, planted=(2, 1), words_follow_label=True, word_head=None,
             signal=3.0, graded=False) -> tuple[np.ndarray, pd.DataFrame]:
    """Four samples per story with balanced labels; the label (protagonist) is written into one head.
    The prompt carries a word that names the label (or its opposite: a decoy). With ``word_head``, that
    head carries the word instead of the label (a token detector)."""
    rng = np.random.default_rng(seed)
    y = np.tile([1, 0, 1, 0], n_stories)
    words = y if words_follow_label else 1 - y
    acts = rng.standard_normal((len(y), LAYERS, HEADS, D))
    direction = np.ones(D) / np.sqrt(D)
    acts[:, planted[0], planted[1]] += signal * (2 * y - 1)[:, None] * direction
    if graded:  # every head carries the label, more and more strongly along the head index (or less)
        strength = np.linspace(0.0, 1.5, LAYERS * HEADS).reshape(LAYERS, HEADS)
        strength = strength[::-1, ::-1] if graded == "reversed" else strength
        acts += strength[None, :, :, None] * (2 * y - 1)[:, None, None, None] * direction
    if word_head is not None:
        acts[:, word_head[0], word_head[1]] += 3.0 * (2 * words - 1)[:, None] * direction
    meta = pd.DataFrame({
        "sample_id": np.arange(len(y)), "story_id": np.repeat(np.arange(n_stories), 4),
        "condition": np.tile(["true_belief", "true_belief", "false_belief", "false_belief"], n_stories),
        "protagonist": y, "oracle": np.tile([1, 0, 0, 1], n_stories),
        "prompt": [f"story {s} filler {'seen' if w else 'unseen'}" for s, w in zip(np.repeat(np.arange(n_stories), 4),
                                                                                   words)],
    })
    return acts, meta


def _original(n_stories=60, **kw):
    acts, meta = _stories(n_stories, 0, **kw)
    is_val = meta["story_id"].to_numpy() >= int(0.75 * n_stories)  # whole stories held out
    return acts, meta, is_val


def _paired(meta: pd.DataFrame, is_val: np.ndarray, acts: np.ndarray) -> pd.DataFrame:
    """A shift made of the validation samples' counterparts."""
    val = meta[is_val].reset_index(drop=True)
    return val.assign(pair=val["sample_id"], origin_story=val["story_id"], sample_id=np.arange(len(val))), acts


def test_a_belief_head_transfers_and_holds_on_decoys_where_words_fail():
    acts, meta, is_val = _original()
    # a decoy of the validation stories: the same beliefs (same head), the words say the opposite
    d_acts, d_meta = _stories(15, 5, words_follow_label=False)
    d_meta = d_meta.assign(pair=meta.loc[is_val, "sample_id"].to_numpy(), origin_story=meta.loc[is_val, "story_id"].to_numpy())
    other_acts, other_meta = _stories(30, 7)
    other_meta = other_meta.assign(pair=-1, origin_story=-1)
    correct = transfer_correct((acts, meta, is_val), {"decoy_told": (d_acts, d_meta), "generated": (other_acts, other_meta)},
                               seed=1)
    stats = transfer_stats(correct, top_k=1, n_boot=300, pools=POOLS).set_index("shift")
    assert stats.loc[ORIGINAL, "top_acc"] > 0.9 and stats.loc["decoy_told", "top_acc"] > 0.9
    assert stats.loc[ORIGINAL, "lexical_acc"] > 0.9 and stats.loc["decoy_told", "lexical_acc"] < 0.1  # words mislead
    assert stats.loc["decoys", "n"] == stats.loc["decoy_told", "n"]  # the pool of the decoys run
    assert bool(stats.loc["decoy_told", "paired"]) and not bool(stats.loc["generated", "paired"])
    inner = correct[correct["shift"] == "inner"]
    assert inner.loc[inner["correct"].idxmax(), ["layer", "head"]].tolist() == [2, 1]  # ranked on training data
    frame = stats.reset_index()
    assert tokens_verdict(frame)["verdict"] == "supports the claim"
    # the same heads on other stories: the planted head tops both maps (the rest is noise)
    assert stats.loc["generated", "top_acc"] > 0.9
    overlap = overlap_matrix(correct, top_k=1)
    assert overlap.loc[ORIGINAL, "generated"] == 1.0 and overlap.loc[ORIGINAL, ORIGINAL] == 1.0


def test_a_token_detector_falls_with_the_words_on_decoys():
    # the heads carry the word, which agrees with the label on the originals
    acts, meta, is_val = _original(planted=(0, 0), signal=0.0, word_head=(3, 2))
    d_acts, d_meta = _stories(15, 5, planted=(0, 0), signal=0.0, words_follow_label=False, word_head=(3, 2))
    d_meta = d_meta.assign(pair=meta.loc[is_val, "sample_id"].to_numpy(), origin_story=meta.loc[is_val, "story_id"].to_numpy())
    correct = transfer_correct((acts, meta, is_val), {"decoy_photo": (d_acts, d_meta)}, seed=1)
    stats = transfer_stats(correct, top_k=1, n_boot=300, pools=POOLS)
    decoys = stats.set_index("shift").loc["decoys"]
    assert decoys["top_acc"] < 0.1 and decoys["lexical_acc"] < 0.1
    assert tokens_verdict(stats)["verdict"] == "undermines it"


def test_other_heads_on_other_stories_undermine_and_noise_is_inconclusive():
    acts, meta, is_val = _original(n_stories=120, graded=True, signal=0.0)
    # the belief is read by other heads there: the grading runs the other way
    other_acts, other_meta = _stories(120, 9, graded="reversed", signal=0.0)
    other_meta = other_meta.assign(pair=-1, origin_story=-1)
    correct = transfer_correct((acts, meta, is_val), {"generated": (other_acts, other_meta)}, seed=1,
                               reverse="generated")
    stats = transfer_stats(correct, top_k=4, n_boot=300)
    row = stats.set_index("shift").loc["generated"]
    assert row["top_acc"] < stats.set_index("shift").loc[ORIGINAL, "top_acc"] and row["jaccard"] == 0.0
    assert row["spearman_high"] < 0
    verdict = specific_verdict(stats)
    assert verdict["verdict"] == "undermines it", verdict
    noise, nmeta, nval = _original(signal=0.0)
    n_other, n_other_meta = _stories(20, 3, signal=0.0)
    correct = transfer_correct((noise, nmeta, nval), {"generated": (n_other, n_other_meta.assign(pair=-1, origin_story=-1))})
    assert specific_verdict(transfer_stats(correct, n_boot=200))["verdict"] == "inconclusive at this scale"


def test_pairs_are_followed_when_the_shift_is_a_shuffled_subset():
    acts, meta, is_val = _original(graded=True)
    val = np.flatnonzero(is_val)
    rng = np.random.default_rng(2)
    chosen = rng.permutation(val)[: len(val) // 2]  # half the validation samples, in another order
    shift = meta.iloc[chosen].reset_index(drop=True)
    shift = shift.assign(pair=shift["sample_id"], origin_story=shift["story_id"], sample_id=np.arange(len(shift)))
    correct = transfer_correct((acts, meta, is_val), {"noop": (acts[chosen], shift)}, seed=0)
    stats = transfer_stats(correct, top_k=3, n_boot=200).set_index("shift")
    # the same activations: the shift scores exactly what the originals score on those samples
    orig = correct[(correct["shift"] == ORIGINAL) & (correct["method"] == "head")]
    top = correct[correct["shift"] == "inner"].nlargest(3, "correct")[["layer", "head"]]
    picked = orig.merge(top, on=["layer", "head"])
    expected = picked[picked["pair"].isin(shift["pair"])]["correct"].mean()
    assert stats.loc["noop", "original_top_acc"] == pytest.approx(expected)
    assert stats.loc["noop", "top_acc"] == pytest.approx(expected) and stats.loc["noop", "drop"] == pytest.approx(0)
    assert stats.loc["noop", "spearman"] == pytest.approx(1.0)


def test_graded_heads_on_other_stories_support_the_same_heads_and_the_reverse_is_paired():
    acts, meta, is_val = _original(n_stories=120, graded=True, signal=0.0)
    other_acts, other_meta = _stories(120, 11, graded=True, signal=0.0)
    other_meta = other_meta.assign(pair=-1, origin_story=-1)
    correct = transfer_correct((acts, meta, is_val), {"generated": (other_acts, other_meta)}, seed=0,
                               reverse="generated")
    stats = transfer_stats(correct, top_k=4, n_boot=300)
    row = stats.set_index("shift").loc["generated"]
    assert row["spearman_ceiling"] > 0.5 and row["spearman"] > 0.8
    assert specific_verdict(stats)["verdict"] == "supports the claim"
    reverse = stats.set_index("shift").loc[REVERSE]
    assert bool(reverse["paired"]) and reverse["n"] == is_val.sum() and reverse["top_acc"] > 0.8
    assert f"inner:{REVERSE}" in set(correct["shift"])  # ranked on the other stories' own inner split


def test_story_weights_resample_whole_stories_and_the_inner_split_holds_stories_out():
    stories = np.repeat(np.arange(10), 4)
    w = story_weights(stories, 50, np.random.default_rng(0))
    assert np.allclose(w.sum(axis=0), 1.0)
    assert (w.reshape(10, 4, 50).std(axis=1) == 0).all()  # a story's samples weigh the same in every draw
    # on noise with four opposite-label samples per story, held-out stories score chance, not below it
    acts, meta = _stories(80, 4, signal=0.0)
    y, s = meta["protagonist"].to_numpy(), meta["story_id"].to_numpy()
    ranking = inner_ranking(acts, y, s, C=10.0, max_iter=100, seed=0)
    assert 0.4 < ranking.mean() < 0.6
    rng = np.random.default_rng(0)
    reliability, _ = split_half_ceiling(np.random.default_rng(1).random((16, 80)) < 0.5, stories=np.repeat(np.arange(20), 4),
                                        top_k=4, draws=30, rng=rng)
    assert reliability < 0.5  # a map of noise agrees with itself only by chance


def test_transfer_refuses_reserved_names_and_mismatched_shapes():
    acts, meta, is_val = _original(n_stories=8)
    with pytest.raises(ValueError, match="reserved"):
        transfer_correct((acts, meta, is_val), {ORIGINAL: (acts, meta.assign(pair=-1))})
    with pytest.raises(ValueError, match="disagree"):
        transfer_correct((acts, meta, is_val), {"names": (acts[:3], meta.assign(pair=-1))})


# --- real stories: perturbed samples are paired with the originals they came from -------------------

@pytest.fixture(scope="module")
def shifted(generated_conditions, tmp_path_factory):
    from tomlab.bigtom.conditions import write_conditions
    from tomlab.bigtom.raw import read_raw
    from tomlab.probing.probes import split_train_val
    from tomlab.probing.samples import build_probe_samples
    from tomlab.stress.perturb import perturb_frame

    conditions = generated_conditions(24, 3)
    raw = read_raw(conditions.parent / "stories.csv")
    original = build_probe_samples(conditions, eval_fraction=0.5)
    is_val = split_train_val(original, val_fraction=0.5, mode="by_story", seed=0)
    out = {}
    for kind in ("decoy_told", "percept_paraphrase", "names"):
        root = tmp_path_factory.mktemp(kind)
        frame, _ = perturb_frame(raw, kind, seed=0)
        write_conditions(frame.drop(columns="story_id"), root)
        origin = origin_table(len(raw), frame["story_id"].tolist())
        out[kind] = (root, origin, frame)
    return raw, original, is_val, out


def test_perturbed_samples_pair_with_validation_samples_and_only_changed_ones_count(shifted):
    _, original, is_val, out = shifted
    for kind, (root, origin, _) in out.items():
        s = shifted_samples(str(root), task="forward_belief", statements="original", original=original,
                            is_val=is_val, origin=origin)
        pairs = original.set_index("sample_id").loc[s["pair"]]
        assert is_val[s["pair"].to_numpy()].all()  # only validation samples are scored
        assert (pairs["story_id"].to_numpy() == s["origin_story"].to_numpy()).all()
        assert (pairs["condition"].to_numpy() == s["condition"].to_numpy()).all()
        assert (pairs["protagonist"].to_numpy() == s["protagonist"].to_numpy()).all()  # labels follow the belief
        assert (pairs["prompt"].to_numpy() != s["prompt"].to_numpy()).all()
        conditions = set(s["condition"])
        expected = {"decoy_told": {"true_belief"}, "percept_paraphrase": {"false_belief"},
                    "names": {"true_belief", "false_belief"}}[kind]
        assert conditions == expected, kind  # a decoy changes only the condition its belief belongs to
    with pytest.raises(ValueError, match="pair with"):
        shifted_samples(str(out["names"][0]), task="forward_belief", statements="original", origin=out["names"][1])


def test_examples_name_the_changed_sentence_and_count_skips(shifted):
    raw, _, _, out = shifted
    ex = shift_examples(raw, {k: (frame.reset_index(drop=True), origin) for k, (_, origin, frame) in out.items()})
    ex = ex.set_index("perturbation")
    assert ex.loc["decoy_told", "field"] == "aware_of_event" and "friend tells" in ex.loc["decoy_told", "after"]
    assert ex.loc["percept_paraphrase", "field"] == "not_aware_of_event"
    assert ex.loc["names", "before"] != ex.loc["names", "after"]
    origin = out["percept_paraphrase"][1]
    assert ex.loc["percept_paraphrase", "skipped"] == int((origin["row"] < 0).sum())
    assert ex.loc["percept_paraphrase", "applied"] + ex.loc["percept_paraphrase", "skipped"] == len(raw)
