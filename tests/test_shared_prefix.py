"""Shared-prefix steering (one prefix pass, every intervention branched from it) against the
token-by-token path it replaces: the same greedy completions and parsed answers, log-likelihoods
within 1e-3, the same completion cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tomlab.backends import meter
from tomlab.backends.branching import Branches
from tomlab.backends.likelihood import letter_probs
from tomlab.backends.lm import CachedLM, GenerationConfig, TransformersLM
from tomlab.steering.directions import random_directions
from tomlab.steering.intervention import Intervention
from tomlab.steering.run import evaluate_steered
from tomlab.steering.shared import evaluate_interventions, letter_probs_interventions

STORIES = [
    "Ada puts milk in the fridge. The fridge breaks while Ada is out.",
    "Bo leaves his keys on the desk. His sister moves them to the drawer.",
    "Cy plants tomatoes. A frost comes at night and Cy sleeps.",
    "Di bakes bread and sets it by the window. A dog eats it.",
    "Ed parks the car on the street. A truck blocks it in.",
]


def _items(n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        story = STORIES[i % len(STORIES)]
        rows.append({"item_id": i, "story_id": i // 2, "task": "forward_belief", "condition": "false_belief",
                     "story": story, "question": "What does the character believe?",
                     "prompt": f"Story: {story}\nQuestion: What does the character believe?\n"
                               f"a) it is as before\nb) it has changed\nAnswer{'!' * (i % 3)}:",
                     "option_a": "it is as before", "option_b": "it has changed",
                     "answer_letter": "ab"[i % 2], "correct": "x", "wrong": "y",
                     "protocol": "tomlab", "parser": "lenient"})
    return pd.DataFrame(rows)


def _interventions(lm, site="head_z"):
    theta = random_directions(lm.n_layers, lm.n_heads, lm.head_dim, seed=5)
    sigma = np.random.default_rng(5).uniform(0.5, 2.0, size=(lm.n_layers, lm.n_heads))
    base = Intervention(site=site, heads=[(0, 1), (1, 2), (2, 0)], directions=theta, sigma=sigma, alpha=0.0)
    other = Intervention(site=site, heads=[(2, 3)], directions=-theta, sigma=sigma, alpha=25.0)
    return [base, base.with_alpha(15.0), base.with_alpha(-40.0), other]


@pytest.mark.parametrize("site", ["head_z", "attn_out"])
@pytest.mark.parametrize("chat", [False, True])
def test_shared_prefix_matches_token_by_token(tiny_llama, site, chat):
    lm = tiny_llama
    items = _items(7)
    config = GenerationConfig(max_new_tokens=6, chat_template=chat)
    gen = TransformersLM(lm, batch_size=3)
    ivs = _interventions(lm, site)
    new, counters = evaluate_interventions(lm, items, gen, config, ivs, batch_size=3, progress=False)
    assert counters == {"cache_hits": 0, "cache_misses": 0} or counters["cache_misses"] == len(items) * len(ivs)
    changed = False
    for iv, fresh in zip(ivs, new):
        old, _ = evaluate_steered(lm, items, gen, config, iv, batch_size=3, progress=False)
        assert fresh["completion"].tolist() == old["completion"].tolist()
        assert fresh["parsed"].tolist() == old["parsed"].tolist()
        np.testing.assert_allclose(fresh["logp_a"], old["logp_a"], atol=1e-3)
        np.testing.assert_allclose(fresh["logp_b"], old["logp_b"], atol=1e-3)
        assert fresh["n_tokens_a"].tolist() == old["n_tokens_a"].tolist()
        assert fresh["ll_pred"].tolist() == old["ll_pred"].tolist()
        assert set(fresh["alpha"]) == {iv.alpha}
        changed |= not np.allclose(fresh["logp_a"], new[0]["logp_a"])
    assert changed  # the interventions moved the scores: the comparison is not between plain runs
    assert all(not m._forward_pre_hooks and not m._forward_hooks
               for m in (lm.o_proj_module(i) for i in range(lm.n_layers)))


def test_shared_prefix_uses_and_fills_the_completion_cache(tiny_llama, tmp_path):
    lm = tiny_llama
    items = _items(5)
    config = GenerationConfig(max_new_tokens=4, chat_template=False)
    gen = TransformersLM(lm, batch_size=2)
    ivs = _interventions(lm)[:3]
    # the old path fills the cache of one intervention; the new one answers it from there
    old, _ = evaluate_steered(lm, items, gen, config, ivs[1], cache_dir=tmp_path, batch_size=2, progress=False)
    frames, counters = evaluate_interventions(lm, items, gen, config, ivs, cache_dir=tmp_path, batch_size=2,
                                              progress=False, modes=("generation",))
    assert counters == {"cache_hits": 5, "cache_misses": 10}
    assert frames[1]["completion"].tolist() == old["completion"].tolist()
    # and what it computed is now in the cache, under each intervention's namespace
    for iv, frame in zip(ivs, frames):
        cached = CachedLM(gen, tmp_path, namespace=iv.fingerprint)
        got = cached.generate(items["prompt"].tolist(), config)
        assert cached.hits == 5 and [c.text for c in got] == frame["completion"].tolist()
    _, again = evaluate_interventions(lm, items, gen, config, ivs, cache_dir=tmp_path, batch_size=2,
                                      progress=False, modes=("generation",))
    assert again == {"cache_hits": 15, "cache_misses": 0}


def test_shared_letter_probs_match(tiny_llama):
    lm = tiny_llama
    items = _items(4)
    ivs = _interventions(lm)
    shared = letter_probs_interventions(lm, items, ivs, batch_size=2, chat_template=False, progress=False)
    for iv, frame in zip(ivs, shared):
        with iv.hook(lm) as hook:
            old = letter_probs(lm, items, batch_size=2, chat_template=False, progress=False, intervention=hook)
        np.testing.assert_allclose(frame["p_correct"], old["p_correct"], rtol=1e-3, atol=1e-6)


def test_branches_check_their_inputs_and_meter_the_work(tiny_llama):
    lm = tiny_llama
    ivs = [iv.hook(lm) for iv in _interventions(lm)]
    branches = Branches(lm, ivs, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="two tokens"):
        branches.run([[5]], GenerationConfig(max_new_tokens=2))
    with pytest.raises(ValueError, match="greedily"):
        branches.run([[5, 6, 7]], GenerationConfig(max_new_tokens=2, temperature=0.7))
    with pytest.raises(ValueError, match="empty continuation"):
        branches.run([[5, 6, 7]], None, [[[]]])
    mixed = Intervention(site="attn_out", heads=[(0, 0)], directions=np.zeros((lm.n_layers, lm.n_heads, lm.head_dim)),
                         sigma=np.ones((lm.n_layers, lm.n_heads)), alpha=1.0)
    with pytest.raises(ValueError, match="share a site"):
        Branches(lm, [ivs[0], mixed.hook(lm)])
    with meter.metered() as m:
        done, scores = branches.run([[5, 6, 7, 8], [9, 10, 11]], GenerationConfig(max_new_tokens=3), [[[1], [2, 3]]])
    assert len(done) == len(ivs) and all(len(row) == 2 for row in done)
    assert scores.shape == (len(ivs), 1, 2) and np.isfinite(scores).all()
    assert m.prompts == 2 * len(ivs)
    assert m.prompt_tokens == (3 + 2) + 2 * len(ivs)  # each prefix once, then one last token per branch
    assert m.scored_tokens == (1 + 2) * len(ivs)


@pytest.mark.parametrize("family", ["mistral", "qwen2", "gemma2", "gpt2"])
def test_shared_prefix_matches_on_other_families(family):
    """Other layouts of the cache and the attention output (GPT-2's c_proj, Gemma 2's sliding layers)."""
    from tomlab.backends.models import load_model

    lm = load_model(f"random:{family}", dtype="float32", random_config={"num_hidden_layers": 3}, seed=0)
    items = _items(5)
    config = GenerationConfig(max_new_tokens=5, chat_template=False)
    gen = TransformersLM(lm, batch_size=2)
    ivs = _interventions(lm)
    new, _ = evaluate_interventions(lm, items, gen, config, ivs, batch_size=2, progress=False)
    for iv, fresh in zip(ivs, new):
        old, _ = evaluate_steered(lm, items, gen, config, iv, batch_size=2, progress=False)
        assert fresh["completion"].tolist() == old["completion"].tolist()
        np.testing.assert_allclose(fresh[["logp_a", "logp_b"]], old[["logp_a", "logp_b"]], atol=1e-3)


def test_generation_and_scoring_share_one_prefix_pass(tiny_llama, tmp_path):
    lm = tiny_llama
    items = _items(5)
    config = GenerationConfig(max_new_tokens=3, chat_template=False)
    gen = TransformersLM(lm, batch_size=2)
    ivs = _interventions(lm)[:2]
    prefix = sum(len(gen.encode(p, config)) - 1 for p in items["prompt"])
    with meter.metered() as fresh:
        evaluate_interventions(lm, items, gen, config, ivs, cache_dir=tmp_path, batch_size=2, progress=False)
    assert fresh.prompt_tokens == prefix + len(items) * len(ivs)  # one prefix pass served both modes
    with meter.metered() as cached:  # completions from the cache: the scores need their own pass
        evaluate_interventions(lm, items, gen, config, ivs, cache_dir=tmp_path, batch_size=2, progress=False)
    assert cached.prompt_tokens == prefix and cached.prompts == 0 and cached.cache_hits == len(items) * len(ivs)
