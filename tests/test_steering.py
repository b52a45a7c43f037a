from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tomlab.backends.hooks import HeadCapture, HeadIntervention
from tomlab.steering.directions import (
    DIRECTION_KINDS,
    compute_directions,
    mass_mean_directions,
    probe_directions,
    projection_std,
    random_directions,
    rank_heads,
    tpfo_directions,
)
from tomlab.steering.intervention import Intervention

TEXT = "Story: Ada bakes bread. The oven breaks.\nBelief: the bread is baked."
SITES = ("head_z", "attn_out")


def _geometry(lm):
    return lm.n_layers, lm.n_heads, lm.head_dim


def _setup(lm, seed=1):
    n_layers, n_heads, d = _geometry(lm)
    theta = random_directions(n_layers, n_heads, d, seed=seed)
    sigma = np.random.default_rng(seed).uniform(0.5, 2.0, size=(n_layers, n_heads))
    return theta, sigma


def _ids(lm, texts=(TEXT,)):
    return lm.tokenizer(list(texts), return_tensors="pt", padding=True)


def _logits(lm, enc):
    with torch.no_grad():
        return lm.model(**enc).logits


class AllPositions:
    """Records the o_proj input and output at every position of one layer (registered after others)."""

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        def hook(module, args, output):
            self.z = args[0].detach().clone()
            self.out = output.detach().clone()

        self.handle = self.module.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _run_captured(lm, enc, intervention=None):
    module = lm.o_proj_module(0)
    with HeadCapture(lm, sites=SITES) as cap, AllPositions(module) as allpos:
        if intervention is None:
            logits = _logits(lm, enc)
        else:
            with intervention:
                logits = _logits(lm, enc)
        taken = cap.take()
    return taken, allpos, logits


@pytest.mark.parametrize("site", SITES)
def test_only_chosen_heads_change_by_the_shift(tiny_llama, site):
    lm = tiny_llama
    theta, sigma = _setup(lm)
    layer, head, alpha = 0, 2, 3.0
    d = lm.head_dim
    enc = _ids(lm)
    base, base_all, base_logits = _run_captured(lm, enc)
    inter = HeadIntervention(lm, [(layer, head)], theta, sigma, alpha, site=site)
    new, new_all, new_logits = _run_captured(lm, enc, inter)
    expected = torch.as_tensor(alpha * sigma[layer, head] * theta[layer, head], dtype=torch.float32)
    assert torch.allclose(torch.as_tensor(inter.shift_vector(layer, head), dtype=torch.float32), expected)

    diff = new[site][0, layer] - base[site][0, layer]  # (H, D) at the last token
    assert torch.allclose(diff[head], expected, atol=1e-5, rtol=0)
    assert diff[head].abs().max() > 0.1
    others = [h for h in range(lm.n_heads) if h != head]
    assert torch.equal(new[site][0, layer, others], base[site][0, layer, others])
    if site == "head_z":  # the heads' own outputs are untouched apart from the chosen one
        zb, zn = base["head_z"][0, layer], new["head_z"][0, layer]
        assert torch.equal(zn[others], zb[others])
    else:  # the o_proj input is untouched when the output is shifted
        assert torch.equal(new["head_z"][0, layer], base["head_z"][0, layer])
    # earlier positions are unaffected at both the input and the output of o_proj
    assert torch.equal(new_all.z[:, :-1], base_all.z[:, :-1])
    assert torch.equal(new_all.out[:, :-1], base_all.out[:, :-1])
    # last position over the whole hidden vector, per-slice check from the all-position capture
    site_all = (new_all.z if site == "head_z" else new_all.out)[0, -1].view(lm.n_heads, d)
    site_base = (base_all.z if site == "head_z" else base_all.out)[0, -1].view(lm.n_heads, d)
    assert torch.allclose(site_all[head] - site_base[head], expected, atol=1e-5, rtol=0)
    assert torch.equal(site_all[others], site_base[others])
    # the logits at the last position move, earlier ones do not
    assert not torch.equal(new_logits[0, -1], base_logits[0, -1])
    assert torch.equal(new_logits[0, :-1], base_logits[0, :-1])


def test_multiple_heads_across_layers(tiny_llama):
    lm = tiny_llama
    theta, sigma = _setup(lm, seed=4)
    heads = [(0, 1), (0, 3), (2, 0)]
    enc = _ids(lm)
    base, _, _ = _run_captured(lm, enc)
    new, _, _ = _run_captured(lm, enc, HeadIntervention(lm, heads, theta, sigma, 2.0, site="head_z"))
    diff = new["head_z"][0, 0] - base["head_z"][0, 0]
    for h in range(lm.n_heads):
        if h in (1, 3):
            expected = torch.as_tensor(2.0 * sigma[0, h] * theta[0, h], dtype=torch.float32)
            assert torch.allclose(diff[h], expected, atol=1e-5)
        else:
            assert torch.equal(diff[h], torch.zeros_like(diff[h]))


@pytest.mark.parametrize("site", SITES)
def test_alpha_zero_is_bit_identical(tiny_llama, site):
    lm = tiny_llama
    theta, sigma = _setup(lm)
    enc = _ids(lm, [TEXT, "Story: Short.\nBelief: yes."])
    base = _logits(lm, enc)
    heads = [(l, h) for l in range(lm.n_layers) for h in range(lm.n_heads)]
    with Intervention(site, heads, theta, sigma, 0.0).hook(lm):
        zero = _logits(lm, enc)
    assert torch.equal(zero, base)
    with Intervention(site, heads, theta, sigma, 1.0).hook(lm):
        moved = _logits(lm, enc)
    assert not torch.equal(moved, base)


def test_applies_to_each_new_token_with_kv_cache(tiny_llama):
    lm = tiny_llama
    theta, sigma = _setup(lm)
    module = lm.o_proj_module(1)
    inputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, a, o: inputs.append(a[0].detach().clone()))
    enc = _ids(lm)
    try:
        with torch.no_grad(), Intervention("head_z", [(1, 0)], theta, sigma, 5.0).hook(lm):
            out = lm.model(**enc, use_cache=True)
            step = torch.tensor([[5]])
            mask = torch.cat([enc["attention_mask"], torch.ones_like(step)], dim=1)
            lm.model(input_ids=step, attention_mask=mask, past_key_values=out.past_key_values, use_cache=True)
        inputs_base: list[torch.Tensor] = []
        handle.remove()
        handle = module.register_forward_hook(lambda m, a, o: inputs_base.append(a[0].detach().clone()))
        with torch.no_grad():
            out = lm.model(**enc, use_cache=True)
            lm.model(input_ids=step, attention_mask=mask, past_key_values=out.past_key_values, use_cache=True)
    finally:
        handle.remove()
    d = lm.head_dim
    shift = torch.as_tensor(5.0 * sigma[1, 0] * theta[1, 0], dtype=torch.float32)
    assert len(inputs) == 2 and inputs[1].shape[1] == 1  # the cached step sees one new position
    # at the prompt pass nothing earlier in the network changed, so the difference is exactly the shift
    assert torch.allclose(inputs[0][0, -1, :d] - inputs_base[0][0, -1, :d], shift, atol=1e-5)
    assert torch.equal(inputs[0][0, :-1], inputs_base[0][0, :-1])
    # the new token's pass: layer 1's input and its cached keys/values do not depend on the shift
    # (it enters at layer 1's output), so the new token's z differs by exactly the shift again
    assert torch.allclose(inputs[1][0, -1, :d] - inputs_base[1][0, -1, :d], shift, atol=1e-5)
    assert torch.equal(inputs[1][0, -1, d:], inputs_base[1][0, -1, d:])


def _n_hooks(lm):
    return sum(
        len(lm.o_proj_module(l)._forward_hooks) + len(lm.o_proj_module(l)._forward_pre_hooks)
        for l in range(lm.n_layers)
    )


@pytest.mark.parametrize("site", SITES)
def test_hooks_removed_after_block_and_exception(tiny_llama, site):
    lm = tiny_llama
    theta, sigma = _setup(lm)
    before = _n_hooks(lm)
    heads = [(0, 0), (1, 2), (1, 3)]
    weights = {k: v.clone() for k, v in lm.model.state_dict().items()}
    inter = HeadIntervention(lm, heads, theta, sigma, 4.0, site=site)
    with inter:
        assert _n_hooks(lm) == before + 2  # one hook per intervened layer
        assert inter.active
        _logits(lm, _ids(lm))
    assert _n_hooks(lm) == before and not inter.active
    with pytest.raises(KeyError):
        with Intervention(site, heads, theta, sigma, 4.0).hook(lm):
            assert _n_hooks(lm) == before + 2
            raise KeyError("boom")
    assert _n_hooks(lm) == before
    def fail(module, args, output):
        raise ZeroDivisionError("inside the forward pass")

    failing = lm.o_proj_module(lm.n_layers - 1).register_forward_hook(fail)
    try:
        with pytest.raises(ZeroDivisionError):  # an exception inside the forward pass as well
            with Intervention(site, heads, theta, sigma, 4.0).hook(lm):
                _logits(lm, _ids(lm))
    finally:
        failing.remove()
    assert _n_hooks(lm) == before
    for k, v in lm.model.state_dict().items():
        assert torch.equal(v, weights[k])


def test_constructor_validation(tiny_llama):
    lm = tiny_llama
    theta, sigma = _setup(lm)
    with pytest.raises(ValueError, match="site"):
        HeadIntervention(lm, [(0, 0)], theta, sigma, 1.0, site="resid")
    with pytest.raises(ValueError, match="outside"):
        HeadIntervention(lm, [(lm.n_layers, 0)], theta, sigma, 1.0)
    with pytest.raises(ValueError, match="twice"):
        HeadIntervention(lm, [(0, 0), (0, 0)], theta, sigma, 1.0)
    with pytest.raises(ValueError, match="directions"):
        HeadIntervention(lm, [(0, 0)], theta[:, :, :-1], sigma, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        HeadIntervention(lm, [(0, 0)], theta, sigma[:1], 1.0)


def test_shift_cast_to_activation_dtype(tiny_llama):
    lm = tiny_llama
    theta, sigma = _setup(lm)
    inter = HeadIntervention(lm, [(0, 1)], theta, sigma, 2.0)
    x = torch.zeros(2, 3, lm.hidden_size, dtype=torch.bfloat16)
    y = inter._apply(0, x)
    assert y.dtype == torch.bfloat16 and torch.equal(x, torch.zeros_like(x))  # input untouched
    d = lm.head_dim
    expected = torch.as_tensor(2.0 * sigma[0, 1] * theta[0, 1]).to(torch.bfloat16)
    assert torch.equal(y[:, -1, d : 2 * d], expected.expand(2, d))
    assert torch.equal(y[:, :-1], x[:, :-1]) and torch.equal(y[:, -1, :d], x[:, -1, :d])


# ---------------------------------------------------------------------------------------------
# directions and sigma on hand-made data
# ---------------------------------------------------------------------------------------------


def test_projection_std_by_hand():
    # one layer, one head, D = 2; projections on (0.6, 0.8): 1.0, 3.0, -1.0, 5.0 -> mean 2, var 5
    # points t * u + s * v with u = (0.6, 0.8), v = (0.8, -0.6) orthonormal, t = 1, 3, -1, 5
    pts = np.array([[0.6, 0.8], [1.8, 2.4], [-0.6, -0.8], [3.0, 4.0]]) + np.array([0.8, -0.6]) * np.array(
        [[7.0], [-2.0], [0.5], [1.0]]
    )
    acts = pts[:, None, None, :]
    theta = np.array([0.6, 0.8])[None, None, :]
    sigma = projection_std(acts.astype(np.float16), theta)
    assert sigma.shape == (1, 1)
    np.testing.assert_allclose(sigma[0, 0], np.sqrt(5.0), rtol=2e-3)  # float16 input
    np.testing.assert_allclose(projection_std(acts, theta)[0, 0], np.sqrt(5.0), rtol=1e-12)
    assert projection_std(acts, np.array([0.8, -0.6])[None, None, :])[0, 0] == pytest.approx(np.std([7, -2, 0.5, 1]))
    with pytest.raises(ValueError):
        projection_std(acts, np.ones((1, 2, 2)))


def test_mass_mean_direction_of_two_clusters():
    # head (0, 0): clusters at (1, 1) and (4, 5) -> (3, 4) / 5; head (0, 1): the opposite way
    base = np.array([[1.0, 1.0], [1.2, 0.8], [0.8, 1.2], [4.0, 5.0], [4.1, 4.9], [3.9, 5.1]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    acts = np.stack([base, base[::-1]], axis=1)[:, None, :, :]  # (6, 1, 2, 2)
    theta = mass_mean_directions(acts, labels)
    np.testing.assert_allclose(theta[0, 0], [0.6, 0.8], atol=1e-12)
    np.testing.assert_allclose(theta[0, 1], [-0.6, -0.8], atol=1e-12)
    with pytest.raises(ValueError):
        mass_mean_directions(acts, np.zeros(6, dtype=int))
    # the dispatcher uses the protagonist labels
    meta = pd.DataFrame({"protagonist": labels, "oracle": 1 - labels, "joint": 2 * (1 - labels) + labels})
    np.testing.assert_allclose(compute_directions("mass_mean_protagonist", acts, meta), theta)


def test_random_directions_unit_and_seeded():
    a = random_directions(3, 4, 16, seed=7)
    assert a.shape == (3, 4, 16) and a.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(a, random_directions(3, 4, 16, seed=7))
    assert not np.allclose(a, random_directions(3, 4, 16, seed=8))
    meta = pd.DataFrame({"protagonist": [0, 1], "oracle": [0, 1], "joint": [0, 3]})
    np.testing.assert_array_equal(compute_directions("random", np.zeros((2, 3, 4, 16)), meta, seed=7), a)


def _planted(n=200, seed=0):
    """Binary oracle/protagonist labels planted along known axes of a D = 4 head (2 layers, 1 head)."""
    rng = np.random.default_rng(seed)
    oracle = rng.integers(0, 2, n)
    protagonist = rng.integers(0, 2, n)
    x = 0.3 * rng.standard_normal((n, 2, 1, 4))
    x[:, :, 0, 0] += 2.0 * (oracle - 0.5)[:, None]
    x[:, :, 0, 1] += 2.0 * (protagonist - 0.5)[:, None]
    meta = pd.DataFrame({"oracle": oracle, "protagonist": protagonist, "joint": 2 * oracle + protagonist})
    return x, meta


def test_probe_directions_point_to_label_one():
    acts, meta = _planted()
    theta = probe_directions(acts, meta["protagonist"].to_numpy())
    assert theta.shape == (2, 1, 4)
    np.testing.assert_allclose(np.linalg.norm(theta, axis=-1), 1.0, atol=1e-12)
    assert (theta[:, 0, 1] > 0.9).all()  # mostly along the protagonist axis, positive side
    plus = compute_directions("+protagonist", acts, meta)
    np.testing.assert_allclose(plus, theta)
    oracle = probe_directions(acts, meta["oracle"].to_numpy())
    assert (oracle[:, 0, 0] > 0.9).all()
    minus = compute_directions("-oracle", acts, meta)
    np.testing.assert_allclose(minus, -oracle)
    # projecting on +protagonist separates the classes
    proj = np.einsum("nlhd,lhd->nlh", acts, theta)[:, 0, 0]
    y = meta["protagonist"].to_numpy()
    assert proj[y == 1].min() > proj[y == 0].max() - 1.0 and proj[y == 1].mean() > proj[y == 0].mean() + 1.5
    with pytest.raises(ValueError):
        probe_directions(acts, np.full(len(meta), 2) - meta["protagonist"].to_numpy() * 3)  # labels {-1, 2}


def test_tpfo_direction_separates_class_one():
    acts, meta = _planted(n=240, seed=3)
    joint = meta["joint"].to_numpy()
    theta = tpfo_directions(acts, joint)
    np.testing.assert_allclose(np.linalg.norm(theta, axis=-1), 1.0, atol=1e-12)
    # TpFo = protagonist 1 and oracle 0: + on the protagonist axis, - on the oracle axis
    assert (theta[:, 0, 1] > 0.3).all() and (theta[:, 0, 0] < -0.3).all()
    proj = np.einsum("nlhd,lhd->nlh", acts, theta)[:, 0, 0]
    assert proj[joint == 1].mean() > max(proj[joint == c].mean() for c in (0, 2, 3)) + 0.5
    np.testing.assert_allclose(compute_directions("+tpfo", acts, meta), theta)
    with pytest.raises(ValueError):
        tpfo_directions(acts, meta["protagonist"].to_numpy())  # not 4 classes


def test_compute_directions_bad_kind():
    acts, meta = _planted(n=8)
    with pytest.raises(ValueError) as err:
        compute_directions("+belief", acts, meta)
    for kind in DIRECTION_KINDS:
        assert kind in str(err.value)
    with pytest.raises(ValueError, match="rows"):
        compute_directions("random", acts, meta.iloc[:4])


# ---------------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------------


def test_rank_heads_array_order_and_ties():
    acc = np.array([[0.5, 0.9, 0.7], [0.9, 0.6, 0.9], [np.nan, 0.95, 0.1]])
    assert rank_heads(acc, 4) == [(2, 1), (0, 1), (1, 0), (1, 2)]
    assert rank_heads(acc, 0) == []
    assert len(rank_heads(acc, 100)) == 9 and rank_heads(acc, 100)[-1] == (2, 0)  # NaN last
    with pytest.raises(ValueError):
        rank_heads(acc, -1)
    with pytest.raises(ValueError):
        rank_heads(acc[0], 2)


def test_rank_heads_dataframe():
    rows = [(0, 0, 0.6), (0, 1, 0.8), (1, 0, 0.8), (1, 1, 0.7)]
    df = pd.DataFrame(rows, columns=["layer", "head", "val_acc"]).iloc[::-1]  # order must not matter
    assert rank_heads(df, 3) == [(0, 1), (1, 0), (1, 1)]
    both = pd.concat([df.assign(target="oracle"), df.assign(target="joint", val_acc=1 - df["val_acc"])])
    with pytest.raises(ValueError, match="several targets"):
        rank_heads(both, 2)
    assert rank_heads(both, 2, target="oracle") == [(0, 1), (1, 0)]
    assert rank_heads(both, 1, target="joint") == [(0, 0)]
    with pytest.raises(ValueError):
        rank_heads(df.drop(columns="val_acc"), 2)
