from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tomlab.backends.activations import extract_activations
from tomlab.backends.hooks import HeadCapture
from tomlab.bigtom.conditions import split_stories
from tomlab.probing.samples import make_prompt, strip_believer

PROMPTS = [
    "Story: Ada bakes bread. The oven breaks.\nBelief: the bread is baked.",
    "Story: Short.\nBelief: yes.",
    "Story: Tomas leaves the keys on the table and goes out; his sister moves them.\nBelief: the keys are on the table.",
]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def manual_llama_attention(lm, text: str, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention of ``layer`` at the last token, computed by hand from the weights.

    Returns (z, out): z the per-head outputs (heads, head_dim) entering o_proj, out = o_proj(z).
    """
    model = lm.model
    cfg = model.config
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states[layer][0]  # input of `layer`
        block = model.model.layers[layer]
        w = block.input_layernorm.weight
        x = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps) * w
        attn = block.self_attn
        T, H, D = x.shape[0], lm.n_heads, lm.head_dim
        kv = cfg.num_key_value_heads
        q = (x @ attn.q_proj.weight.T).view(T, H, D).transpose(0, 1)
        k = (x @ attn.k_proj.weight.T).view(T, kv, D).transpose(0, 1)
        v = (x @ attn.v_proj.weight.T).view(T, kv, D).transpose(0, 1)
        theta = cfg.rope_parameters["rope_theta"]
        inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
        freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
        cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(H // kv, dim=0)
        v = v.repeat_interleave(H // kv, dim=0)
        scores = q[:, -1:, :] @ k.transpose(1, 2) / math.sqrt(D)  # last query attends to all (causal)
        z = (scores.softmax(-1) @ v)[:, 0, :]  # (H, D)
        out = z.reshape(-1) @ attn.o_proj.weight.T
    return z, out.view(H, D)


@pytest.mark.parametrize("layer", [0, 2])
def test_captures_equal_manual_attention_at_both_sites(tiny_llama, layer):
    acts = extract_activations(tiny_llama, PROMPTS, sites=("attn_out", "head_z"), batch_size=3, progress=False)
    for i, text in enumerate(PROMPTS):
        z, out = manual_llama_attention(tiny_llama, text, layer)
        np.testing.assert_allclose(acts["head_z"][i, layer], z.numpy(), atol=2e-3, rtol=1e-2)
        np.testing.assert_allclose(acts["attn_out"][i, layer], out.numpy(), atol=2e-3, rtol=1e-2)
        assert not np.allclose(acts["head_z"][i, layer], acts["attn_out"][i, layer])


def test_batched_with_left_padding_equals_one_at_a_time(tiny_llama):
    batched = extract_activations(tiny_llama, PROMPTS, batch_size=3, progress=False)
    single = extract_activations(tiny_llama, PROMPTS, batch_size=1, progress=False)
    for site in batched:
        assert batched[site].shape == (3, tiny_llama.n_layers, tiny_llama.n_heads, tiny_llama.head_dim)
        assert batched[site].dtype == np.float32  # as the released code saves them
        np.testing.assert_allclose(batched[site], single[site], atol=2e-3)


def test_half_precision_storage_is_a_switch(tiny_llama):
    full = extract_activations(tiny_llama, PROMPTS, sites=("attn_out",), batch_size=3, progress=False)["attn_out"]
    half = extract_activations(tiny_llama, PROMPTS, sites=("attn_out",), batch_size=3, progress=False,
                               dtype="float16")["attn_out"]
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, full.astype(np.float16))
    with pytest.raises(ValueError, match="float32 or float16"):
        extract_activations(tiny_llama, PROMPTS, progress=False, dtype="int8")


def test_hooks_are_removed_after_capture(tiny_llama):
    module = tiny_llama.o_proj_module(0)
    before = len(module._forward_hooks)
    with HeadCapture(tiny_llama, ["head_z"]):
        assert len(module._forward_hooks) == before + 1
    assert len(module._forward_hooks) == before
    with pytest.raises(RuntimeError):
        with HeadCapture(tiny_llama, ["head_z"]):
            raise RuntimeError("boom")
    assert len(module._forward_hooks) == before


def test_unknown_site_is_rejected(tiny_llama):
    with pytest.raises(ValueError, match="unknown capture site"):
        HeadCapture(tiny_llama, ["mlp"])


def test_no_vocabulary_logits_are_computed(tiny_llama, monkeypatch):
    calls = []
    head = tiny_llama.model.lm_head
    handle = head.register_forward_hook(lambda *a: calls.append(1))
    try:
        extract_activations(tiny_llama, PROMPTS[:2], batch_size=2, progress=False)
    finally:
        handle.remove()
    assert calls == []


def test_strip_believer_and_prompt():
    assert strip_believer("Noor believes the milk pitcher contains oat milk.") == "the milk pitcher contains oat milk."
    assert strip_believer("Mary Ann believes that the door is open.") == "the door is open."
    assert strip_believer("Fatima knows about the concealed door.") == "about the concealed door."
    with pytest.raises(ValueError, match="believes"):
        strip_believer("Noor hopes the door is open.")
    assert make_prompt("A story.", "x.") == "Story: A story.\nBelief: x."


def test_split_stories_halves_like_the_original():
    ev, probe = split_stories(200, 0.5)
    assert ev.tolist() == list(range(100)) and probe.tolist() == list(range(100, 200))
    with pytest.raises(ValueError):
        split_stories(10, 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_extraction_matches_cpu():
    from tests.conftest import TINY
    from tomlab.backends.models import load_model

    cpu = load_model("random:llama", dtype="float32", device="cpu", random_config=TINY, seed=0)
    gpu = load_model("random:llama", dtype="float32", device="cuda", random_config=TINY, seed=0)
    gpu.model.load_state_dict(cpu.model.state_dict())  # same weights on both devices
    a = extract_activations(cpu, PROMPTS, batch_size=3, progress=False)
    b = extract_activations(gpu, PROMPTS, batch_size=3, progress=False)
    for site in a:
        np.testing.assert_allclose(a[site], b[site], atol=5e-3)


def test_prompt_lengths_count_tokens_and_given_lengths_must_match(tiny_llama):
    from tomlab.backends.activations import prompt_lengths

    lengths = prompt_lengths(tiny_llama, PROMPTS)
    assert lengths == [len(tiny_llama.tokenizer(p)["input_ids"]) for p in PROMPTS]
    given = extract_activations(tiny_llama, PROMPTS, batch_size=2, progress=False, lengths=lengths)
    counted = extract_activations(tiny_llama, PROMPTS, batch_size=2, progress=False)
    for site in given:
        np.testing.assert_array_equal(given[site], counted[site])
    with pytest.raises(ValueError, match="lengths"):
        extract_activations(tiny_llama, PROMPTS, progress=False, lengths=lengths[:1])


def test_capture_all_positions_agrees_with_last(tiny_llama):
    from tomlab.backends.activations import token_activations

    text = "Story: Ada bakes bread.\nBelief: it is baked."
    acts, tokens = token_activations(tiny_llama, text, site="attn_out")
    n = len(tiny_llama.tokenizer(text)["input_ids"])
    assert acts.shape == (n, tiny_llama.n_layers, tiny_llama.n_heads, tiny_llama.head_dim) and len(tokens) == n
    last = extract_activations(tiny_llama, [text], sites=("attn_out",), progress=False)["attn_out"][0]
    np.testing.assert_allclose(acts[-1], last, atol=2e-3)
    # a prefix of the prompt gives the same activations at its positions (causal attention)
    prefix, _ = token_activations(tiny_llama, text[:20], site="attn_out")
    k = len(prefix)
    np.testing.assert_allclose(acts[: k - 1], prefix[: k - 1], atol=1e-5)
    with pytest.raises(ValueError, match="positions"):
        HeadCapture(tiny_llama, positions="first")
