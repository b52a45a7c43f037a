"""The generation backend: batching, stopping, seeding, token accounting and the on-disk cache."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import torch

from tomlab.backends.lm import (
    CachedLM,
    Completion,
    GenerationConfig,
    LanguageModel,
    Prompt,
    ScriptedLM,
    TransformersLM,
    cache_key,
    prompt_text,
    truncate_at_stop,
)

PROMPTS: list[Prompt] = [
    "Hi",
    "Sally puts the marble in the basket and leaves the room.",
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Where is the marble?"}],
]


@pytest.fixture(scope="module")
def lm(tiny_llama) -> TransformersLM:
    return TransformersLM(tiny_llama, batch_size=8)


class CountingLM(LanguageModel):
    """Wraps a backend and records every batch it is asked for."""

    def __init__(self, inner: LanguageModel) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[list[Prompt]] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        self.batches.append(list(prompts))
        out = self.inner.generate(prompts, config)
        self._record(out)
        return out


# ------------------------------------------------------------------------------ config / helpers


def test_config_key_is_stable_and_validated():
    a = GenerationConfig(stop=["\n", "END"])
    assert a.stop == ("\n", "END")
    assert a.key() == GenerationConfig(stop=("\n", "END")).key()
    assert json.dumps(a.key(), sort_keys=True)  # serialisable
    assert a.key() != GenerationConfig(max_new_tokens=21).key()
    with pytest.raises(ValueError):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError):
        GenerationConfig(top_p=0.0)
    with pytest.raises(ValueError):
        GenerationConfig(temperature=-1)


def test_truncate_at_stop_takes_earliest_stop():
    assert truncate_at_stop("abc END def\nx", ["\n", "END"]) == ("abc ", True)
    assert truncate_at_stop("abc", ["z"]) == ("abc", False)
    assert truncate_at_stop("abc", ["", "c"]) == ("ab", True)
    assert truncate_at_stop("abc", []) == ("abc", False)


def test_prompt_text_and_keys_keep_strings_and_messages_apart():
    msgs = [{"role": "user", "content": "hi"}]
    assert prompt_text("hello") == "hello"
    assert prompt_text(msgs) == "user: hi"
    cfg = GenerationConfig()
    assert cache_key("m", "user: hi", cfg) != cache_key("m", msgs, cfg)
    assert cache_key("m", msgs, cfg) == cache_key("m", [dict(msgs[0])], cfg)
    assert cache_key("m", msgs, cfg) != cache_key("m", msgs, cfg, namespace="steered")


# ------------------------------------------------------------------------------- transformers


@pytest.mark.parametrize("chat_template", [True, False])
def test_greedy_batched_equals_one_at_a_time(lm, chat_template):
    cfg = GenerationConfig(max_new_tokens=10, chat_template=chat_template)
    batched = lm.generate(PROMPTS, cfg)
    single = [lm.generate_one(p, cfg) for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert batched == single
    # and with batches smaller than the prompt list
    small = TransformersLM(lm.loaded, batch_size=2)
    assert small.generate(PROMPTS, cfg) == batched


def test_max_new_tokens_and_length_finish(lm):
    for n in (1, 5):
        for c in lm.generate(PROMPTS, GenerationConfig(max_new_tokens=n)):
            assert c.completion_tokens <= n
            if c.finish_reason == "length":
                assert c.completion_tokens == n
    # the random model does not reach EOS within a few tokens here
    assert all(c.finish_reason == "length" for c in lm.generate(PROMPTS, GenerationConfig(max_new_tokens=5)))


def test_eos_ends_generation(lm):
    cfg = GenerationConfig(max_new_tokens=6)
    first = lm.generate_one("Hi", cfg)
    ids = torch.tensor([lm.encode("Hi", cfg)])
    with torch.inference_mode():
        token = int(lm.model(input_ids=ids).logits[0, -1].argmax())  # the first greedy token

    class EosLM(TransformersLM):
        def _eos_ids(self):
            return {int(token)}

    c = EosLM(lm.loaded).generate_one("Hi", cfg)
    assert c == Completion(text="", prompt_tokens=first.prompt_tokens, completion_tokens=0, finish_reason="stop")


def test_stop_string_truncates_real_generation(lm):
    cfg = GenerationConfig(max_new_tokens=16)
    texts = [c.text for c in lm.generate(PROMPTS, cfg)]
    # a printable ASCII character that the greedy text of the second prompt certainly contains
    text = texts[1]
    pos = next(i for i, ch in enumerate(text) if i > 0 and ch.isascii() and ch.isprintable())
    stop = text[pos]
    stopped = lm.generate(PROMPTS, GenerationConfig(max_new_tokens=16, stop=(stop,)))
    assert stopped[1].text == text[: text.index(stop)]
    assert stopped[1].finish_reason == "stop"
    assert stopped[1].completion_tokens == len(lm.tokenizer(stopped[1].text, add_special_tokens=False)["input_ids"])
    for c, full in zip(stopped, texts):
        assert stop not in c.text
        assert full.startswith(c.text)
    # stopping early does not depend on the batching either
    assert [lm.generate_one(p, GenerationConfig(max_new_tokens=16, stop=(stop,))) for p in PROMPTS] == stopped


def test_sampling_is_seeded_and_leaves_global_rng_alone(lm):
    cfg = GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, seed=7)
    state = torch.random.get_rng_state()
    a = lm.generate(PROMPTS, cfg)
    b = lm.generate(PROMPTS, cfg)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a == b
    c = lm.generate(PROMPTS, GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, seed=8))
    assert [x.text for x in c] != [x.text for x in a]
    greedy = lm.generate(PROMPTS, GenerationConfig(max_new_tokens=8))
    assert [x.text for x in greedy] != [x.text for x in a]


def test_a_sample_depends_on_its_prompt_alone_not_its_batch_or_the_cache(lm, tmp_path):
    cfg = GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, seed=3)
    together = [c.text for c in lm.generate(PROMPTS, cfg)]
    alone = [lm.generate([p], cfg)[0].text for p in PROMPTS]
    assert together == alone
    cached = CachedLM(lm, tmp_path)
    full = [c.text for c in cached.generate(PROMPTS, cfg)]
    for p in PROMPTS[::2]:  # lose half the cache: the misses are sampled again, with other batch-mates
        cached.path_for(cached.key(p, cfg)).unlink()
    again = cached.generate(PROMPTS, cfg)
    assert [c.text for c in again] == full and any(not c.cached for c in again) and any(c.cached for c in again)


def test_token_accounting_and_usage(tiny_llama):
    lm = TransformersLM(tiny_llama, batch_size=2)
    tok = tiny_llama.tokenizer
    cfg = GenerationConfig(max_new_tokens=4)
    out = lm.generate(PROMPTS, cfg)
    for p, c in zip(PROMPTS, out):
        rendered = lm.render(p, cfg)
        assert rendered.endswith("assistant\n")
        assert c.prompt_tokens == len(tok(rendered, add_special_tokens=False)["input_ids"])
    plain = GenerationConfig(max_new_tokens=3, chat_template=False)
    assert lm.render(PROMPTS[2], plain) == "system: Answer briefly.\nuser: Where is the marble?"
    assert lm.render("Hi", plain) == "Hi"
    out2 = lm.generate(PROMPTS[:2], plain)
    assert out2[0].prompt_tokens == len(tok("Hi")["input_ids"])
    u = lm.usage
    assert u.calls == 2 and u.completions == 5
    assert u.prompt_tokens == sum(c.prompt_tokens for c in out + out2)
    assert u.completion_tokens == sum(c.completion_tokens for c in out + out2)
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_forward_hooks_apply_during_generate_and_nothing_is_left(lm):
    cfg = GenerationConfig(max_new_tokens=5)
    base = lm.generate(PROMPTS, cfg)
    layer = lm.loaded.layers()[0]
    seen = []

    def hook(module, args, output):
        seen.append(1)
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden + 3.0
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = layer.register_forward_hook(hook)
    try:
        steered = lm.generate(PROMPTS, cfg)
    finally:
        handle.remove()
    assert seen
    assert [c.text for c in steered] != [c.text for c in base]
    assert lm.generate(PROMPTS, cfg) == base
    assert lm.model.training is False
    assert lm.tokenizer.padding_side == "left"


# ------------------------------------------------------------------------------------ scripted


def test_scripted_lm_cycles_counts_and_stops():
    lm = ScriptedLM(["one two three", "alpha beta"], model_id="script")
    cfg = GenerationConfig(max_new_tokens=2)
    a, b, c = lm.generate(["p q", "r", "s"], cfg)
    assert (a.text, a.completion_tokens, a.finish_reason) == ("one two", 2, "length")
    assert (b.text, b.completion_tokens, b.finish_reason) == ("alpha beta", 2, "stop")
    assert c.text == "one two" and a.prompt_tokens == 2
    fn_lm = ScriptedLM(lambda text: text.upper() + " END tail", model_id="upper")
    out = fn_lm.generate_one([{"role": "user", "content": "hi"}], GenerationConfig(stop=(" END",)))
    assert out.text == "USER: HI" and out.finish_reason == "stop"
    assert fn_lm.prompts_seen == ["user: hi"]
    assert fn_lm.usage.calls == 1 and fn_lm.usage.completion_tokens == 2


# --------------------------------------------------------------------------------------- cache


def test_cache_hits_skip_the_inner_model(tmp_path):
    inner = CountingLM(ScriptedLM(lambda t: f"echo {t} STOP more", model_id="echo"))
    cached = CachedLM(inner, tmp_path)
    cfg = GenerationConfig(stop=("STOP",))
    first = cached.generate(["a", "b"], cfg)
    assert [c.text for c in first] == ["echo a ", "echo b "]
    assert all(c.finish_reason == "stop" and not c.cached for c in first)
    second = cached.generate(["a", "b"], cfg)
    assert len(inner.batches) == 1
    assert all(c.cached for c in second)
    assert [(c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in second] == \
        [(c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in first]
    assert cached.hits == 2 and cached.misses == 2
    assert cached.model_id == "echo"
    # one file per key, under a two-character folder
    key = cached.key("a", cfg)
    assert cached.path_for(key) == tmp_path / key[:2] / f"{key[2:]}.json"
    assert cached.path_for(key).is_file()
    # a fresh wrapper over the same folder sees the same entries
    again = CachedLM(inner, tmp_path).generate(["a"], cfg)
    assert again[0].cached and len(inner.batches) == 1


def test_cache_misses_on_other_config_or_namespace(tmp_path):
    inner = CountingLM(ScriptedLM(lambda t: "x y", model_id="m"))
    CachedLM(inner, tmp_path).generate(["a"], GenerationConfig())
    assert not CachedLM(inner, tmp_path).generate(["a"], GenerationConfig(max_new_tokens=3))[0].cached
    assert not CachedLM(inner, tmp_path, namespace="steered").generate(["a"], GenerationConfig())[0].cached
    assert not CachedLM(inner, tmp_path).generate([[{"role": "user", "content": "a"}]], GenerationConfig())[0].cached
    assert len(inner.batches) == 4
    assert CachedLM(inner, tmp_path, namespace="steered").generate(["a"], GenerationConfig())[0].cached


@pytest.mark.parametrize("garbage", ["{not json", "", json.dumps({"key": "x"}), json.dumps([1, 2])])
def test_corrupt_cache_file_is_a_miss_and_is_repaired(tmp_path, garbage):
    inner = CountingLM(ScriptedLM(lambda t: "fine", model_id="m"))
    cached = CachedLM(inner, tmp_path)
    cfg = GenerationConfig()
    cached.generate(["a"], cfg)
    path = cached.path_for(cached.key("a", cfg))
    path.write_text(garbage)
    redone = cached.generate(["a"], cfg)[0]
    assert not redone.cached and redone.text == "fine"
    assert len(inner.batches) == 2
    assert json.loads(path.read_text())["completion"]["text"] == "fine"
    assert cached.generate(["a"], cfg)[0].cached
    assert len(inner.batches) == 2


def test_mixed_batch_sends_only_misses_in_one_call(tmp_path):
    inner = CountingLM(ScriptedLM(lambda t: f"r-{t}", model_id="m"))
    cached = CachedLM(inner, tmp_path)
    cfg = GenerationConfig()
    cached.generate(["b", "d"], cfg)
    out = cached.generate(["a", "b", "c", "d", "a"], cfg)
    assert inner.batches[-1] == ["a", "c"]
    assert len(inner.batches) == 2
    assert [c.text for c in out] == ["r-a", "r-b", "r-c", "r-d", "r-a"]
    assert [c.cached for c in out] == [False, True, False, True, False]
    assert cached.usage.calls == 2 and cached.usage.completions == 7
    assert inner.inner.usage.completions == 4


def test_cache_over_transformers_model(lm, tmp_path):
    cached = CachedLM(lm, tmp_path / "cache")
    cfg = GenerationConfig(max_new_tokens=6)
    first = cached.generate(PROMPTS, cfg)
    before = lm.usage.calls
    second = cached.generate(PROMPTS, cfg)
    assert lm.usage.calls == before
    assert [c.text for c in second] == [c.text for c in first] == [c.text for c in lm.generate(PROMPTS, cfg)]
    assert all(c.cached for c in second)
