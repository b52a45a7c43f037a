"""The completion cache keys a local model by what makes it answer, not by its name alone (issue 15,
defect 1): another seed, random config, dtype or chat template under the same name misses the cache, and
so does another generation config or end-of-sequence token on the same weights (issue 26)."""

from __future__ import annotations

import pytest
import torch

from tomlab.backends.lm import CachedLM, GenerationConfig, TransformersLM
from tomlab.backends.models import load_model

TINY = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}


def _lm(seed: int = 0, dtype: str = "float32", config: dict | None = None) -> TransformersLM:
    loaded = load_model("random:llama", dtype=dtype, device="cpu", random_config=config or TINY, seed=seed)
    return TransformersLM(loaded, batch_size=2)


def _cached(tmp_path, lm: TransformersLM) -> bool:
    """Whether the one prompt comes from the cache."""
    return CachedLM(lm, tmp_path).generate(["Story: a cat.\nAnswer:"], GenerationConfig(max_new_tokens=3))[0].cached


def test_the_same_model_hits_and_every_change_that_alters_answers_misses(tmp_path):
    first = _lm()
    assert not _cached(tmp_path, first)
    assert _cached(tmp_path, _lm())  # loaded again, the same weights: a hit
    assert first.model_id == _lm(seed=1).model_id  # the name alone cannot tell them apart ...
    for other in (_lm(seed=1), _lm(dtype="bfloat16"), _lm(config={**TINY, "intermediate_size": 64})):
        assert other.cache_identity != first.cache_identity  # ... the identity does
        assert not _cached(tmp_path, other)


def test_a_new_chat_template_misses(tmp_path):
    plain = _lm()
    assert not _cached(tmp_path, plain)
    templated = _lm()
    templated.tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert not _cached(tmp_path, templated)


@pytest.mark.parametrize("name", ["model.layers.0.mlp.up_proj.weight", "model.norm.weight"])
def test_one_changed_tensor_changes_the_fingerprint(name):
    a, b = _lm().loaded, _lm().loaded
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        dict(b.model.named_parameters())[name].mul_(1.01)
    b.extra.pop("weights_fingerprint")
    assert a.fingerprint() != b.fingerprint()


PROMPT = "Story: a cat.\nAnswer:"


def _first_token(lm: TransformersLM, config: GenerationConfig) -> int:
    """The token greedy decoding picks first after PROMPT."""
    with torch.no_grad():
        return int(lm.model(torch.tensor([lm.encode(PROMPT, config)])).logits[0, -1].argmax())


def _extra_end_id(lm: TransformersLM, token: int) -> None:
    gen = lm.model.generation_config
    ends = [gen.eos_token_id] if isinstance(gen.eos_token_id, int) else list(gen.eos_token_id or [])
    gen.eos_token_id = [*ends, token]


def _suppressed(lm: TransformersLM, token: int) -> None:
    lm.model.generation_config.suppress_tokens = [token]


def _biased(lm: TransformersLM, token: int) -> None:
    lm.model.generation_config.sequence_bias = {(token,): -100.0}  # keyed by tuples: not plain JSON


@pytest.mark.parametrize("change", [_extra_end_id, _suppressed, _biased],
                         ids=["extra-eos", "suppress-tokens", "sequence-bias"])
def test_a_changed_generation_config_on_the_same_weights_misses(tmp_path, change):
    config = GenerationConfig(max_new_tokens=3)
    first = _lm()
    filled = CachedLM(first, tmp_path).generate([PROMPT], config)[0]
    assert filled.text and not filled.cached
    second = _lm()
    before = second.cache_identity
    assert before == first.cache_identity  # the same weights, the same generation config
    change(second, _first_token(second, config))  # a hub model's updated generation_config.json
    assert second.cache_identity not in (before, first.cache_identity)
    through = CachedLM(second, tmp_path).generate([PROMPT], config)[0]
    uncached = second.generate([PROMPT], config)[0]
    assert not through.cached
    assert through.text == uncached.text != filled.text
    if change is _extra_end_id:
        assert uncached.text == ""


def test_swapped_end_and_pad_tokens_change_the_identity():
    base = _lm()
    swapped = _lm()
    tok = swapped.tokenizer
    tok.eos_token, tok.pad_token = tok.pad_token, tok.eos_token  # the same special tokens, other roles
    assert sorted(tok.all_special_tokens) == sorted(base.tokenizer.all_special_tokens)
    assert swapped.cache_identity != base.cache_identity
