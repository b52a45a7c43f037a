"""Completions are decoded in the context of their prompt, so a SentencePiece tokenizer keeps the space
that opens a completion (``"Answer:" + " a)"``), as the released evaluation's joint decoding does."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tomlab.backends.lm import decode_after


@pytest.fixture(scope="module")
def sp_like() -> PreTrainedTokenizerFast:
    words = ["<unk>", "<s>", "</s>", "▁Answer:", "▁a)", "▁b)", "▁the", "▁cat", "▁é", "t"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def test_alone_the_leading_space_is_lost(sp_like):
    ids = sp_like.convert_tokens_to_ids(["▁a)", "▁the", "▁cat"])
    assert sp_like.decode(ids) == "a) the cat"  # what decoding the new tokens alone gives


def test_in_context_the_leading_space_is_kept(sp_like):
    prompt = sp_like.convert_tokens_to_ids(["<s>", "▁Answer:"])
    new = sp_like.convert_tokens_to_ids(["▁a)", "▁the", "▁cat", "</s>"])
    assert decode_after(sp_like, prompt, new) == " a) the cat"
    assert decode_after(sp_like, prompt, []) == ""


def test_falls_back_to_alone_when_the_prompt_text_is_not_a_prefix():
    class Odd:
        def decode(self, ids, skip_special_tokens=True):
            return {(1,): "ab", (1, 2): "xyz", (2,): "z"}[tuple(ids)]

    assert decode_after(Odd(), [1], [2]) == "z"
