"""Steering as the pipeline runs it: scoring under an intervention, direction sets, caching, tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tomlab.backends.hooks import HeadIntervention
from tomlab.backends.likelihood import (
    continuation_logprobs,
    letter_probs,
    option_logprobs,
)
from tomlab.backends.lm import GenerationConfig, ScriptedLM, TransformersLM
from tomlab.steering.directions import (
    KIND_SLUGS,
    RANKED_BY,
    build_direction_sets,
    canonical_kind,
    load_direction_sets,
    random_directions,
    save_direction_sets,
)
from tomlab.steering.intervention import Intervention
from tomlab.steering.run import evaluate_steered, token_projections
from tomlab.steering.tables import steering_accuracy

PROMPT = "Story: Ada puts milk in the fridge. The fridge breaks.\nQuestion: Is the milk cold?\nAnswer:"


def _theta_sigma(lm, seed=3):
    theta = random_directions(lm.n_layers, lm.n_heads, lm.head_dim, seed=seed)
    sigma = np.random.default_rng(seed).uniform(0.5, 2.0, size=(lm.n_layers, lm.n_heads))
    return theta, sigma


def _stepwise_logprob(lm, prompt: str, continuation: str, hook_args) -> float:
    """Score a continuation token by token with a KV cache, the intervention shifting each new position."""
    tok = lm.tokenizer
    prompt_ids = tok(prompt, add_special_tokens=True)["input_ids"]
    joint = tok(prompt + " " + continuation, add_special_tokens=True)["input_ids"]
    assert joint[: len(prompt_ids)] == prompt_ids
    cont = joint[len(prompt_ids):]
    total = 0.0
    with torch.no_grad(), HeadIntervention(lm, *hook_args[:4], site=hook_args[4]):
        out = lm.model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1]
        for t in cont:
            total += float(logits.float().log_softmax(-1)[t])
            out = lm.model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1]
    return total


@pytest.mark.parametrize("site", ["head_z", "attn_out"])
def test_scoring_under_intervention_equals_token_by_token_generation(tiny_llama, site):
    lm = tiny_llama
    theta, sigma = _theta_sigma(lm)
    heads = [(0, 1), (2, 3)]
    prompts = [PROMPT, "Story: Bo sees rain.\nAnswer:"]
    conts = ["the milk is warm", "wet"]
    with HeadIntervention(lm, heads, theta, sigma, 8.0, site=site) as hook:
        scores, lengths = continuation_logprobs(lm, prompts, conts, batch_size=2, chat_template=False,
                                                progress=False, intervention=hook)
        assert hook.edit_from is None  # reset after every batch
    plain, _ = continuation_logprobs(lm, prompts, conts, batch_size=2, chat_template=False, progress=False)
    for p, c, s in zip(prompts, conts, scores):
        expected = _stepwise_logprob(lm, p, c, (heads, theta, sigma, 8.0, site))
        assert s == pytest.approx(expected, abs=2e-4)
    assert not np.allclose(scores, plain)  # the intervention did something
    assert (lengths > 0).all()


def test_edit_from_shifts_only_positions_from_the_start(tiny_llama):
    lm = tiny_llama
    theta, sigma = _theta_sigma(lm)
    seen = {}
    module = lm.o_proj_module(1)
    handle = module.register_forward_pre_hook(lambda m, a: seen.__setitem__("z", a[0].detach().clone()))
    enc = lm.tokenizer(["abcdefgh", "abcdefgh"], return_tensors="pt")
    try:
        with torch.no_grad():
            lm.model(**enc)
            base = seen["z"]
            with HeadIntervention(lm, [(1, 2)], theta, sigma, 4.0, site="head_z") as hook:
                hook.set_edit_from([3, 6])
                lm.model(**enc)
                hook.set_edit_from(None)
    finally:
        handle.remove()
    diff = (seen["z"] - base).abs().sum(-1)  # (batch, positions)
    assert torch.all(diff[0, :3] == 0) and torch.all(diff[0, 3:] > 0)
    assert torch.all(diff[1, :6] == 0) and torch.all(diff[1, 6:] > 0)


def _items(n=3):
    rows = []
    for i in range(n):
        rows.append({"item_id": f"{i}/forward_belief/false_belief", "story_id": i, "task": "forward_belief",
                     "condition": "false_belief", "prompt": f"Story: case {i}.\nAnswer:",
                     "option_a": "yes", "option_b": "no", "answer_letter": "ab"[i % 2],
                     "correct": "yes" if i % 2 == 0 else "no", "wrong": "no" if i % 2 == 0 else "yes"})
    return pd.DataFrame(rows)


def test_letter_probs_maps_correct_and_wrong(tiny_llama):
    out = letter_probs(tiny_llama, _items(), chat_template=False, progress=False)
    assert np.all((out["p_a"] > 0) & (out["p_a"] < 1))
    is_b = out["answer_letter"] == "b"
    assert np.allclose(out.loc[is_b, "p_correct"], out.loc[is_b, "p_b"])
    assert np.allclose(out.loc[~is_b, "p_correct"], out.loc[~is_b, "p_a"])
    assert np.allclose(out["p_correct"] + out["p_wrong"], out["p_a"] + out["p_b"])


def test_option_logprobs_alpha_zero_is_plain(tiny_llama):
    lm = tiny_llama
    theta, sigma = _theta_sigma(lm)
    plain = option_logprobs(lm, _items(), chat_template=False, progress=False)
    with HeadIntervention(lm, [(0, 0)], theta, sigma, 0.0) as hook:
        zero = option_logprobs(lm, _items(), chat_template=False, progress=False, intervention=hook)
    assert np.array_equal(plain["logp_a"], zero["logp_a"]) and np.array_equal(plain["logp_b"], zero["logp_b"])


def _fingerprint(heads, directions, sigma, alpha, site):
    return Intervention(site, heads, directions, sigma, alpha).fingerprint


def test_fingerprint_separates_interventions():
    theta = random_directions(2, 2, 4, seed=0)
    sigma = np.ones((2, 2))
    base = _fingerprint([(0, 1)], theta, sigma, 20.0, "head_z")
    assert base.startswith("steer-")
    assert base == "steer-925a9a7b699f69f3"  # the completion caches' namespace: it must never drift
    assert _fingerprint([(0, 1)], theta, sigma, 20.0, "head_z") == base
    assert _fingerprint([(0, 1)], theta, sigma, 10.0, "head_z") != base
    assert _fingerprint([(0, 1)], theta, sigma, 20.0, "attn_out") != base
    assert _fingerprint([(1, 1)], theta, sigma, 20.0, "head_z") != base
    other = theta.copy()
    other[0, 1] = -other[0, 1]
    assert _fingerprint([(0, 1)], other, sigma, 20.0, "head_z") != base
    # heads not intervened on do not enter the fingerprint
    other = theta.copy()
    other[1, 0] = -other[1, 0]
    assert _fingerprint([(0, 1)], other, sigma, 20.0, "head_z") == base
    assert _fingerprint([(0, 1)], theta, sigma, 0.0, "head_z") == ""
    assert _fingerprint(np.zeros((0, 2)), theta, sigma, 20.0, "head_z") == ""


def test_evaluate_steered_caches_and_alpha_zero_shares_the_plain_cache(tiny_llama, tmp_path):
    lm = tiny_llama
    theta, sigma = _theta_sigma(lm)
    items = _items(4)
    gen = TransformersLM(lm, batch_size=2)
    config = GenerationConfig(max_new_tokens=4, chat_template=False)
    steer = Intervention(site="head_z", heads=[(0, 0), (1, 3)], directions=theta, sigma=sigma, alpha=30.0)
    kw = dict(cache_dir=tmp_path, batch_size=2, progress=False)
    first, c1 = evaluate_steered(lm, items, gen, config, steer, **kw)
    assert c1 == {"cache_hits": 0, "cache_misses": 4}
    again, c2 = evaluate_steered(lm, items, gen, config, steer, **kw)
    assert c2 == {"cache_hits": 4, "cache_misses": 0}
    assert again["completion"].tolist() == first["completion"].tolist()
    assert np.array_equal(again["logp_a"], first["logp_a"])
    # alpha = 0 shares the plain model's namespace: after a plain run it generates nothing
    from tomlab.backends.lm import CachedLM

    plain = CachedLM(gen, tmp_path).generate(items["prompt"].tolist(), config)
    zero, c3 = evaluate_steered(lm, items, gen, config, steer.with_alpha(0.0), **kw)
    assert c3 == {"cache_hits": 4, "cache_misses": 0}
    assert zero["completion"].tolist() == [c.text for c in plain]
    assert set(zero["alpha"]) == {0.0} and set(first["site"]) == {"head_z"}
    # hooks are gone afterwards
    assert all(not lm.o_proj_module(l)._forward_pre_hooks for l in range(lm.n_layers))


def _synthetic_probe_data(seed=0, n=80, layers=2, heads=3, d=5):
    rng = np.random.default_rng(seed)
    oracle = rng.integers(0, 2, n)
    protagonist = rng.integers(0, 2, n)
    acts = rng.normal(size=(n, layers, heads, d))
    acts[:, 0, 1, 0] += 3 * (2 * protagonist - 1)  # head (0, 1) carries the protagonist label
    acts[:, 1, 2, 1] += 3 * (2 * oracle - 1)  # head (1, 2) carries the oracle label
    meta = pd.DataFrame({"oracle": oracle, "protagonist": protagonist, "joint": 2 * oracle + protagonist})
    rows = []
    for target, best in (("oracle", (1, 2)), ("protagonist", (0, 1)), ("joint", (1, 0))):
        for l in range(layers):
            for h in range(heads):
                rows.append({"target": target, "layer": l, "head": h, "val_acc": 0.9 if (l, h) == best else 0.5})
    return acts, meta, pd.DataFrame(rows)


def test_direction_sets_rank_heads_by_their_own_probe(tmp_path):
    acts, meta, table = _synthetic_probe_data()
    is_val = np.arange(len(meta)) % 5 == 0
    sets = build_direction_sets(acts, meta, table, list(KIND_SLUGS), k=1, is_val=is_val, seed=0, max_iter=200)
    assert sets["+protagonist"].heads.tolist() == [[0, 1]]
    assert sets["-oracle"].heads.tolist() == [[1, 2]]
    assert sets["+tpfo"].heads.tolist() == [[1, 0]]
    assert sets["random"].heads.tolist() == sets["+tpfo"].heads.tolist()  # RANKED_BY random -> joint
    assert RANKED_BY["random"] == "joint"
    # the probe directions point along the planted axes, -oracle against the oracle label
    assert sets["+protagonist"].theta[0, 1, 0] > 0.9
    assert sets["-oracle"].theta[1, 2, 1] < -0.9
    for entry in sets.values():
        assert np.allclose(np.linalg.norm(entry.theta, axis=-1), 1.0)
    path = tmp_path / "d.npz"
    save_direction_sets(path, sets)
    back = load_direction_sets(path)
    assert set(back) == set(sets)
    for kind in sets:
        assert np.array_equal(back[kind].theta, sets[kind].theta)
        assert np.array_equal(back[kind].heads, sets[kind].heads)


def test_direction_sets_fit_on_training_samples_only():
    acts, meta, table = _synthetic_probe_data()
    is_val = np.zeros(len(meta), dtype=bool)
    is_val[:40] = True
    a = build_direction_sets(acts, meta, table, ["mass_mean_protagonist"], k=1, is_val=is_val)
    scrambled = acts.copy()
    scrambled[:40] = 0.0  # validation samples must not matter
    b = build_direction_sets(scrambled, meta, table, ["mass_mean_protagonist"], k=1, is_val=is_val)
    assert np.allclose(a["mass_mean_protagonist"].theta, b["mass_mean_protagonist"].theta)


def test_kind_slugs_round_trip():
    for kind, slug in KIND_SLUGS.items():
        assert canonical_kind(slug) == kind and canonical_kind(kind) == kind
    with pytest.raises(ValueError, match="unknown direction kind"):
        canonical_kind("+oracle")


def _scored(correct, item_ids, **extra):
    frame = pd.DataFrame({"item_id": item_ids, "task": "forward_belief", "condition": "false_belief",
                          "correct_pred": correct, "valid": True})
    return frame.assign(**extra)


def test_steering_accuracy_paired_delta():
    ids = [f"i{k}" for k in range(40)]
    base = _scored([False] * 40, ids)
    better = _scored([True] * 30 + [False] * 10, ids, source_task="forward_belief", direction="+tpfo",
                     site="head_z", alpha=20.0)
    same = _scored([False] * 40, ids, source_task="forward_belief", direction="random", site="head_z", alpha=20.0)
    table = steering_accuracy(base, pd.concat([better, same]), n_boot=500)
    row = table[table["direction"] == "+tpfo"].iloc[0]
    assert row["accuracy"] == pytest.approx(0.75) and row["baseline"] == 0.0 and row["delta"] == pytest.approx(0.75)
    assert row["delta_ci_low"] > 0.5 and row["delta_ci_high"] <= 1.0
    row = table[table["direction"] == "random"].iloc[0]
    assert row["delta"] == 0.0 and row["delta_ci_low"] == 0.0 == row["delta_ci_high"]
    assert (table["direction"] == "none").sum() == 1
    missing = _scored([True], ["nope"], source_task="forward_belief", direction="+tpfo", site="head_z", alpha=1.0)
    with pytest.raises(ValueError, match="not in the baseline"):
        steering_accuracy(base, missing)


def test_token_projections_match_captures(tiny_llama):
    lm = tiny_llama
    theta, sigma = _theta_sigma(lm)
    proj = token_projections(lm, PROMPT, Intervention("head_z", [(1, 2)], theta, sigma, 1.0))
    n_tokens = len(lm.tokenizer(PROMPT)["input_ids"])
    assert len(proj) == n_tokens and proj["position"].tolist() == list(range(n_tokens))
    from tomlab.backends.activations import extract_activations

    last = extract_activations(lm, [PROMPT], sites=("head_z",), progress=False)["head_z"][0, 1, 2].astype(float)
    assert proj["projection"].iloc[-1] == pytest.approx(float(last @ theta[1, 2]), abs=2e-2)  # float16 storage
    assert np.allclose(proj["z"], proj["projection"] / sigma[1, 2])


def test_scripted_generator_is_not_a_steering_backend(tiny_llama):
    """A canned backend ignores hooks: evaluate_steered still runs and tags the rows."""
    theta, sigma = _theta_sigma(tiny_llama)
    scored, counters = evaluate_steered(
        tiny_llama, _items(2), ScriptedLM(["a)", "b)"]), GenerationConfig(max_new_tokens=2, chat_template=False),
        Intervention(site="attn_out", heads=[(0, 0)], directions=theta, sigma=sigma, alpha=5.0), modes=["generation"],
        progress=False,
    )
    assert scored["parsed"].tolist() == ["a", "b"] and counters == {}
    assert scored["correct_pred"].tolist() == [True, True]
