"""Tokenizers built in memory for random models: no file, no download.

- ``bytes``: 256 byte tokens and three specials, with a plain chat template (the tests' tiny models).
- ``sentencepiece_inst``: a SentencePiece-style BPE (``▁`` marks a word start, as Llama's and Mistral's
  tokenizers do) trained here on a fixed English text, with Mistral-Instruct's chat format
  (``<s>[INST] ... [/INST]``), a BOS token added to plain text and ``</s>`` ending a turn: what the
  paper's models feed a prompt through, so a rehearsal at their geometry exercises the same rendering,
  special tokens and prompt lengths of the right order.
"""

from __future__ import annotations

import json
from typing import Any

KINDS = ("bytes", "sentencepiece_inst")

#: Mistral-Instruct's turn format (a system message, if any, opens the first user turn).
INST_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\\n\\n' %}"
    "{% elif m['role'] == 'user' %}[INST] {{ ns.system }}{{ m['content'] }} [/INST]{% set ns.system = '' %}"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)

# The training text: written for this module; any English of the stories' register serves, since only
# the tokens' lengths and kinds matter to a rehearsal.
_CORPUS = """
A person walks into the kitchen and puts a bottle of milk in the fridge. Later the fridge breaks, and
nobody notices it while the person is away at work. When she comes back she believes that the milk is
still cold. The question asks what the person believes, and the answer is one of two options: the
milk is cold, or the milk is warm. Answer with the letter of the option you choose. The story goes on:
a gardener plants tomatoes in the yard, a frost comes at night, the gardener sleeps and does not see it.
He thinks the plants are fine. A teacher leaves her keys on the desk; a student moves them into the
drawer while she is out of the room. Where will the teacher look for her keys? She will look on the
desk, because she did not see them being moved. Translate the following sentence from Chinese into
English, and give your reasons. The debate topic is stated as follows. Agents Alpha, Bravo and Charlie
defuse bombs in rooms connected by corridors; each bomb has a sequence of coloured wires to cut in order.
What is the correct answer? Let us think step by step: the bat and the ball cost one dollar and ten
cents in total, and the bat costs one dollar more than the ball, so the ball costs five cents.
"""


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens + specials) with a plain chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", padding_side="left"
    )
    tok.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    return tok


def sentencepiece_inst_tokenizer(vocab_size: int = 1000) -> Any:
    """A SentencePiece-style BPE trained on :data:`_CORPUS` (every printable ASCII character and byte
    fallback for the rest, so any text encodes), with ``<unk>``, ``<s>``, ``</s>``, BOS added to plain
    text, and :data:`INST_TEMPLATE`.  Deterministic: the same tokenizer on every call."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=[chr(c) for c in range(33, 127)] + ["▁"], show_progress=False)
    trained.train_from_iterator([line for line in _CORPUS.splitlines() if line.strip()], trainer=trainer)
    # the 256 byte tokens are ordinary vocabulary (as in Llama's), so that any text encodes and decodes
    state = json.loads(trained.to_str())["model"]
    vocab = dict(state["vocab"])
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    core.add_special_tokens(specials)
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    core.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                      decoders.Strip(" ", 1, 0)])
    bos = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                        special_tokens=[("<s>", bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  padding_side="left")
    tok.chat_template = INST_TEMPLATE
    return tok


def random_tokenizer(kind: str) -> Any:
    """The in-memory tokenizer of a random model (:data:`KINDS`)."""
    if kind == "bytes":
        return byte_tokenizer()
    if kind == "sentencepiece_inst":
        return sentencepiece_inst_tokenizer()
    raise ValueError(f"model.random_tokenizer is one of {list(KINDS)}, got {kind!r}")
