"""The evaluation protocol of Zhu, Zhang & Wang (2024), as their released code runs it, and tomlab's own.

``original`` (the default) is the released evaluation, reproduced from its behaviour: the instruction
file's sentence, a blank line, ``Story:``, ``Question:`` with the two options, ``Answer:``; no chat
template; the option order of Python's ``random`` seeded once per condition run and shuffled once
per story in file order; and the answer read by the released parser (:func:`parse_original`).
``tomlab`` is this project's variant: a one-line instruction asking for a letter, the model's chat
template, and an option order hashed from (seed, story, task, condition), so an item's order does not
depend on which other items are built; its answers are read by the lenient parser
(:func:`tomlab.bigtom.evaluation.parse_answer`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence

from tomlab.schema import vocabulary

PROTOCOLS: tuple[str, ...] = vocabulary("eval_protocol")
"""Evaluation protocols: the released code's (default) and this project's."""

PARSERS: tuple[str, ...] = vocabulary("answer_parser")
"""Answer parsers: the released code's and tomlab's lenient one."""

ORIGINAL_INSTRUCTION = (
    "Answer the questions based on the context. Keep your answer concise, few words are enough, "
    "maximum one sentence. Answer as 'Answer:<option>)<answer>'."
)
"""The instruction of the released evaluation (its instruction file, which has no final newline)."""

ORIGINAL_CONDITIONS: tuple[str, ...] = ("true_belief", "false_belief")
"""The conditions the released evaluation runs; tomlab's controls are additions."""

TOMLAB_INSTRUCTION = (
    "Read the story below and answer the question about it by picking one of the two options, "
    "replying with the letter a or b."
)
"""The one-line instruction of tomlab's protocol."""

_ANSWER_MARK = "Answer: "
_NOT_FOUND = "Not found."
INVALID = "invalid"


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return protocol


def check_parser(parser: str) -> str:
    if parser not in PARSERS:
        raise ValueError(f"unknown parser {parser!r}; known: {', '.join(PARSERS)}")
    return parser


def uses_chat_template(protocol: str, chat_template: bool | None = None) -> bool:
    """Whether prompts are rendered with the model's chat template: ``chat_template`` when given,
    otherwise the protocol's choice (the original feeds plain text; tomlab uses the template)."""
    check_protocol(protocol)
    return (protocol == "tomlab") if chat_template is None else bool(chat_template)


def protocol_parser(protocol: str) -> str:
    """The parser that goes with a protocol: the released one for ``original``, the lenient one for
    ``tomlab`` (whose instruction asks for a bare letter, which the released parser cannot read)."""
    return "original" if check_protocol(protocol) == "original" else "lenient"


def make_prompt(protocol: str, story: str, question: str, option_a: str, option_b: str) -> str:
    """The evaluation prompt of ``protocol`` for one item."""
    options = f"Choose one of the following:\na) {option_a}\nb) {option_b}"
    if check_protocol(protocol) == "original":
        return f"{ORIGINAL_INSTRUCTION}\n\nStory: {story}\nQuestion: {question}\n{options}\nAnswer:"
    return f"{TOMLAB_INSTRUCTION}\nStory: {story}\nQuestion: {question}\n{options}\nAnswer:"


def _hashed_bit(seed: int, story_id: int, task: str, condition: str) -> bool:
    key = f"tomlab-eval|{int(seed)}|{int(story_id)}|{task}|{condition}".encode()
    return bool(hashlib.sha256(key).digest()[0] & 1)


def correct_in_b(
    protocol: str, seed: int, story_ids: Sequence[int], task: str, condition: str
) -> Iterator[bool]:
    """For each story of one condition run, in file order, whether the correct answer goes to slot b.

    ``original``: a fresh ``random.Random(seed)`` per condition run, one ``shuffle`` of
    ``[correct, wrong]`` per story starting from the file's first story, as the released script does
    (``random.seed(0)``, then one shuffle per row).  The draws depend on the position in the file, so
    ``story_ids`` must be the file's first rows in order (the evaluation split is).  ``tomlab``: one bit
    of a hash of (seed, story, task, condition).
    """
    ids = [int(s) for s in story_ids]
    if check_protocol(protocol) == "tomlab":
        for sid in ids:
            yield _hashed_bit(seed, sid, task, condition)
        return
    if ids != list(range(len(ids))):
        raise ValueError("the original option order needs the file's first stories in order (0, 1, 2, ...)")
    rng = random.Random(seed)
    for _ in ids:
        pair = ["correct", "wrong"]
        rng.shuffle(pair)
        yield pair[0] == "wrong"


def released_answer(text: str) -> str:
    """What the released parser reads from the decoded prompt + completion: the text after the last
    ``"Answer: "`` (with its space), stripped, then with trailing ``<``, ``/``, ``s`` and ``>``
    characters removed (the release strips its end-of-sequence mark character-wise, so a final
    "s" of a word goes too); ``"Not found."`` when there is no such mark."""
    at = text.rfind(_ANSWER_MARK)
    if at < 0:
        return _NOT_FOUND
    return text[at + len(_ANSWER_MARK):].strip().rstrip("</s>")


def parse_original(prompt: str, completion: str, option_a: str, option_b: str, answer_letter: str) -> str:
    """The released code's verdict on one answer, as a letter: ``"a"``, ``"b"`` or ``"invalid"``.

    The released script decodes prompt and completion together, reads :func:`released_answer`, and
    compares its first two characters, lower-cased, with the right and the wrong key (``"a)"`` /
    ``"b)"``).  If neither matches it looks for the right key or the right option's text (lower case,
    final "." removed) anywhere in the answer, and the same for the wrong one: only one side found
    gives that side; both or neither is invalid.  The key search is case-sensitive, as released.
    """
    if answer_letter not in ("a", "b"):
        raise ValueError(f"answer_letter must be 'a' or 'b', got {answer_letter!r}")
    other = "b" if answer_letter == "a" else "a"
    right_text, wrong_text = (option_a, option_b) if answer_letter == "a" else (option_b, option_a)
    answer = released_answer(str(prompt) + str(completion))
    head = answer[:2].lower()
    if head == f"{answer_letter})":
        return answer_letter
    if head == f"{other})":
        return other
    lowered = answer.lower()
    right = f"{answer_letter})" in answer or right_text.lower().rstrip(".") in lowered
    wrong = f"{other})" in answer or wrong_text.lower().rstrip(".") in lowered
    if right and not wrong:
        return answer_letter
    if wrong and not right:
        return other
    return INVALID
