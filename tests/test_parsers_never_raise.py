"""Every parser of model output reads any text without raising (issue 15, defect 5): long numbers,
deep nesting, NUL bytes, stray braces and quotes give "invalid" or nothing, never an exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tomlab.bigtom.evaluation import parse_answer
from tomlab.bigtom.protocol import parse_original
from tomlab.debate.answers import final_number, reply_values, score_answer
from tomlab.debate.protocol import parse_judge
from tomlab.team.agents import parse_yes_no
from tomlab.team.env import parse_reply, parse_reply_original

_PIECES = st.sampled_from(["9" * 400, "/", ".", "e", "E", "-", "%", "{", "}", "[", "]", '"', ":", "\x00", "a)", "b)",
                           "Answer:", "Action:", "Message to Team:", "move to room ", "apply red", "inspect", "yes",
                           "no", "Judge", '{"Whether there is a preference": "Yes"', "\\", "\n", " ", "1/0", "∞",
                           "½", "0x1F", "1,000,000"])
TEXT = st.one_of(st.text(max_size=400), st.lists(_PIECES, max_size=60).map("".join),
                 st.integers(1, 5000).map(lambda n: "[" * n + "]" * n))


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_the_debate_and_judge_parsers_never_raise(text):
    reply_values(text)
    final_number(text)
    assert score_answer(text, ["3/4", "0.75", "75%"]) in (True, False)
    parse_judge(text)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_the_bigtom_and_team_parsers_never_raise(text):
    assert parse_answer(text, "the box", "the basket") in ("a", "b", "invalid")
    parse_original("Story: ...", text, "the box", "the basket", "a")
    parse_reply(text)
    parse_reply_original(text, rooms=[0, 1, 2])
    parse_yes_no(text)
