"""Capture and intervention hooks on a CUDA device: the same numbers as on the CPU, and the right heads
at Mistral-7B's head geometry (32 query heads of 128 dimensions, 8 key-value heads, hidden 4096)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomlab.backends.activations import extract_activations
from tomlab.steering.intervention import Intervention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PROMPTS = ["Story: Noor fills the pitcher with oat milk.\nBelief: the pitcher holds oat milk.",
           "Story: a short one.\nBelief: nothing changed at all here."]
SITES = ("attn_out", "head_z")


def _unit(shape: tuple[int, ...], seed: int) -> np.ndarray:
    theta = np.random.default_rng(seed).normal(size=shape)
    return theta / np.linalg.norm(theta, axis=-1, keepdims=True)


@pytest.mark.parametrize("site", SITES)
def test_intervention_on_cuda_matches_cpu(site):
    from tests.conftest import TINY
    from tomlab.backends.models import load_model

    cpu = load_model("random:llama", dtype="float32", device="cpu", random_config=TINY, seed=0)
    gpu = load_model("random:llama", dtype="float32", device="cuda", random_config=TINY, seed=0)
    gpu.model.load_state_dict(cpu.model.state_dict())  # same weights on both devices
    shape = (cpu.n_layers, cpu.n_heads, cpu.head_dim)
    sigma = np.random.default_rng(1).uniform(0.5, 2.0, size=shape[:2])
    iv = Intervention(site, [(0, 1), (1, 2)], _unit(shape, 0), sigma, 5.0)
    with iv.hook(cpu):
        a = extract_activations(cpu, PROMPTS, sites=SITES, batch_size=2, progress=False)
    with iv.hook(gpu):
        b = extract_activations(gpu, PROMPTS, sites=SITES, batch_size=2, progress=False)
    for s in SITES:
        np.testing.assert_allclose(a[s], b[s], atol=5e-3)
    plain = extract_activations(gpu, PROMPTS, sites=SITES, batch_size=2, progress=False)
    assert not np.allclose(plain[site], b[site])  # the intervention did something
    with iv.with_alpha(0.0).hook(gpu):
        zero = extract_activations(gpu, PROMPTS, sites=SITES, batch_size=2, progress=False)
    for s in SITES:
        assert np.array_equal(zero[s], plain[s])


@pytest.mark.parametrize("site", SITES)
def test_intervention_touches_exactly_the_chosen_heads_at_mistral_geometry(site):
    from tomlab.backends.models import load_model

    geometry = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=4, num_attention_heads=32,
                    num_key_value_heads=8)
    lm = load_model("random:mistral", dtype="bfloat16", device="cuda", random_config=geometry, seed=0)
    assert (lm.n_layers, lm.n_heads, lm.head_dim) == (4, 32, 128)
    prompts = PROMPTS * 16
    plain = extract_activations(lm, prompts, sites=(site,), batch_size=32, progress=False)[site]
    assert plain.shape == (32, 4, 32, 128)
    iv = Intervention(site, [(1, 3), (2, 17), (3, 31)], _unit((4, 32, 128), 1), np.ones((4, 32)), 8.0)
    with iv.hook(lm) as hook:
        assert hook.active
        steered = extract_activations(lm, prompts, sites=(site,), batch_size=32, progress=False)[site]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in lm.model.modules())
    changed = np.abs(steered.astype(np.float32) - plain.astype(np.float32)).max(axis=(0, 3)) > 0  # (L, H)
    assert not changed[0].any()  # upstream of every intervened layer: untouched
    assert np.flatnonzero(changed[1]).tolist() == [3]  # the first intervened layer: its chosen head only
    with iv.with_alpha(0.0).hook(lm):
        zero = extract_activations(lm, prompts, sites=(site,), batch_size=32, progress=False)[site]
    assert np.array_equal(zero, plain)
