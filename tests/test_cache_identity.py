"""The completion cache keys a local model by what makes it answer, not by its name alone (issue 15,
defect 1): another seed, random config, dtype or chat template under the same name misses the cache."""

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
    b.extra.pop("fingerprint")
    assert a.fingerprint() != b.fingerprint()
