"""Every parser of model output reads any text without raising (issue 15, defect 5): long numbers,
deep nesting, NUL bytes, stray braces and quotes give "invalid" or nothing, never an exception; and
in time linear in the text (issue 26, item 5)."""

from __future__ import annotations

import signal
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomlab.bigtom.evaluation import parse_answer
from tomlab.bigtom.protocol import parse_original
from tomlab.debate.answers import final_number, reply_values, score_answer
from tomlab.debate.answers import parse_answer as debate_gold
from tomlab.debate.protocol import parse_judge
from tomlab.debate.released import parse_literal_dict
from tomlab.debate.tasks import final_translation
from tomlab.team.agents import parse_yes_no
from tomlab.team.env import parse_reply, parse_reply_original
from tomlab.team.epistemic import message_reveals

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



def test_the_judge_reads_numbers_no_float_or_int_holds_as_written():
    # an integer past Python's 4300-digit limit raised ValueError; now it is read as text (issue 26)
    reading = parse_judge('{"answer": ' + "9" * 5000 + ', "preference": "affirmative"}')
    assert reading.ok and reading.data["answer"] == "9" * 5000 and reading.data["preference"] == "affirmative"
    # a float beyond the range stays as written, never infinity ("inf" would be the judge's answer)
    assert parse_judge('{"answer": 1e999999}').data == {"answer": "1e999999"}
    assert parse_judge('{"answer": 1.5e3}').data == {"answer": 1500.0}  # a float in range is a float

# --- every parser runs in time linear in its reply (issue 26, item 5) ---------------------------------
# A degenerate reply (a run of whitespace after a number, a long digit run, nested brackets, repeated
# labels) once took time growing with the square or the cube of its length ("65" and 1000 spaces: 8 s;
# a run of tabs did not finish). Each parser reads 100 KB of each pattern in at most ~10x the time of
# 10 KB (a bound of 40 leaves a wide margin); a hard ceiling makes a hang fail instead of blocking.

class _Bomb:
    id, room, sequence, cut = 1, 2, ("red", "green"), 0


def _quietly(parse):
    def read(text: str) -> None:
        try:
            parse(text)
        except ValueError:  # parse_literal_dict refuses what is not a dict; refusing is reading
            pass
    return read


LINEAR_PARSERS = {
    "debate answer": lambda t: score_answer(t, ["65"]),
    "debate gold": debate_gold,
    "judge": parse_judge,
    "released moderator dict": _quietly(parse_literal_dict),
    "translation": final_translation,
    "bigtom": lambda t: parse_answer(t, "the jar is empty", "the jar is not empty"),
    "bigtom released": lambda t: parse_original("Story: ...", t, "the jar is empty", "the jar is not empty", "a"),
    "team reply": parse_reply,
    "team reply released": lambda t: parse_reply_original(t, rooms=[0, 1, 2]),
    "team yes/no": parse_yes_no,
    "team message": lambda t: message_reveals(t, _Bomb()),
}


_LABELS = ("answer", "option", "bomb", "move to room", "\n**action", "\nmessage", "exp(", "e ^", "\n", "translation")


def _cycle(piece: str):
    return lambda n: (piece * (n // len(piece) + 1))[:n]


ADVERSARIAL = {
    "spaces after a number": lambda n: "65" + " " * n,
    "tabs after a number": lambda n: "65" + "\t" * n,
    "newlines after a number": lambda n: "65" + "\n" * n,
    "mixed whitespace after a number": lambda n: "1" + _cycle(" \t\n")(n),
    "whitespace runs between digits": _cycle("7" + " " * 99 + "\n" * 50 + "\t" * 50),
    "long digit run": lambda n: "9" * n,
    "digits and spaces": _cycle("1 "),
    "separators": _cycle("1,.-/"),
    "thousands groups": lambda n: "1" + ",000" * (n // 4) + ",0",
    "nested brackets": lambda n: "[" * (n // 2) + "]" * (n // 2),
    "nested braces": lambda n: "{" * (n // 2) + "}" * (n // 2),
    "answer fragments": _cycle("Answer: "),
    "labels then spaces": lambda n: "".join(label + " " * (n // 10) + "x " for label in _LABELS),
    "long word in braces": lambda n: "{" + "a" * n,
    "powers": lambda n: _cycle("2^")(n) + "2",
    "both options": _cycle("the jar is empty, the jar is not empty "),
    "one option inside the other": _cycle("not empty "),
}


def _seconds(parse, text: str, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        parse(text)
        best = min(best, time.perf_counter() - start)
    return best


def _hang_fails(signum, frame):
    raise TimeoutError("the parser did not finish: its time grows faster than its input")


@pytest.mark.parametrize("pattern", sorted(ADVERSARIAL))
@pytest.mark.parametrize("parser", sorted(LINEAR_PARSERS))
def test_every_parser_reads_degenerate_replies_in_linear_time(parser, pattern):
    parse, make = LINEAR_PARSERS[parser], ADVERSARIAL[pattern]
    small, large = make(10_000), make(100_000)
    previous = signal.signal(signal.SIGALRM, _hang_fails)
    signal.setitimer(signal.ITIMER_REAL, 30.0)  # a ceiling for a hang, not the measure
    try:
        t_small = _seconds(parse, small, 3)
        t_large = _seconds(parse, large, 2)
        for _ in range(2):  # measure again before failing: a busy machine stretches one timing, not every one
            if t_large < 40 * t_small:
                break
            t_small, t_large = min(t_small, _seconds(parse, small, 5)), min(t_large, _seconds(parse, large, 3))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert t_large < 40 * t_small, f"{parser} on {pattern}: 100 KB took {t_large / t_small:.0f}x the time of 10 KB"
