"""Counter-intuitive arithmetic: the template generator checked by independent arithmetic, the
original-format loader, and answer normalisation."""

from __future__ import annotations

import json
import math
import re

import pytest

from tomlab.debate.tasks import (
    FAMILIES,
    extract_numbers,
    final_number,
    generate_arithmetic,
    load_arithmetic_json,
    score_answer,
    stated_answer,
    words_to_number,
)


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


# Independent solutions: each reads the numbers in the question text and solves the puzzle by
# simulation or direct reasoning, not by the generator's formula.
def _solve(family: str, q: str) -> float:
    n = _ints(q)
    if family == "bat_and_ball":
        total, diff = n[0], n[1]
        return next(x for x in range(total + 1) if x + (x + diff) == total)
    if family == "machines":
        machines, minutes, k = n[0], n[1], n[3]
        rate = machines / (machines * minutes)  # widgets per machine-minute
        return k / (k * rate)
    if family == "doubling":
        days = n[0]
        size, day = 1.0, days  # full on day `days`; walk back halving
        while size > 0.5:
            size /= 2
            day -= 1
        return day
    if family == "hens":
        a, b = n[0], n[3]
        per_hen_per_day = a / (a * a)
        return b * b * per_hen_per_day
    if family == "race":
        runners = list(range(1, 12))  # positions; you are right behind position k
        k = n[0]
        return runners[k - 1]
    if family == "buy_sell":
        a, b, c, d = n
        cash = -a + b - c + d
        return cash
    if family == "round_trip":
        dist, v1, v2 = n[0], n[1], n[2]
        return 2 * dist / (dist / v1 + dist / v2)
    if family == "cuts":
        t, k = n[0], n[2]
        pieces, minutes = 1, 0
        while pieces < k:
            pieces += 1
            minutes += t
        return minutes
    if family == "fence":
        length, d = n[0], n[1]
        return len(range(0, length + 1, d))
    if family == "percent":
        p = n[0]
        price = 100 * (1 + p / 100) * (1 - p / 100)
        return price - 100
    if family == "socks":
        per, colours = n[0], n[1]
        return colours + 1 if per >= 2 else colours
    if family == "clock":
        s, k, m = n[0], n[1], n[3]
        gap = s / (k - 1)
        return gap * (m - 1)
    raise AssertionError(family)


def test_at_least_ten_families():
    assert len(FAMILIES) >= 10


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_generated_answers_match_an_independent_solution(family):
    rows = generate_arithmetic(40, seed=3, families=[family])
    assert len(rows) == 40 and set(rows["family"]) == {family}
    for r in rows.itertuples():
        truth = _solve(family, r.question)
        assert math.isclose(float(r.answer), truth, abs_tol=1e-9), (r.question, r.answer, truth)
        assert not math.isclose(float(r.intuitive), truth, abs_tol=1e-9)  # the trap is a different number
        assert score_answer(f"The answer is {r.answer}.", r.answers)
        assert not score_answer(f"The answer is {r.intuitive}.", r.answers)


def test_instances_are_fresh_per_seed_and_reproducible():
    a, b, c = generate_arithmetic(50, seed=1), generate_arithmetic(50, seed=1), generate_arithmetic(50, seed=2)
    assert a.equals(b) and not a["question"].equals(c["question"])
    assert a["question"].nunique() > 40
    with pytest.raises(ValueError, match="unknown"):
        generate_arithmetic(3, families=["nonsense"])


def test_loader_reads_the_original_format(tmp_path):
    path = tmp_path / "ci.json"
    path.write_text(json.dumps([
        {"question": "A bat and a ball cost $1.10 ...", "answer": ["0.05", "5 cents"], "explanation": "x",
         "incorrect answer": "0.1", "incorrect explanation": "y"},
        {"question": "Q2", "answer": "7"},
    ]))
    rows = load_arithmetic_json(path)
    assert list(rows["answers"].iloc[0]) == ["0.05", "5 cents"] and rows["intuitive"].iloc[0] == "0.1"
    assert rows["answers"].iloc[1] == ["7"]
    bad = tmp_path / "bad.json"
    bad.write_text('[{"question": "no answer"}]')
    with pytest.raises(ValueError, match="bad.json: entry 0"):
        load_arithmetic_json(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        load_arithmetic_json(broken)


def test_number_normalisation():
    assert words_to_number("twenty-one") == 21 and words_to_number("one hundred and five") == 105
    assert words_to_number("two thousand three hundred") == 2300 and words_to_number("banana") is None
    assert extract_numbers("It costs $1,250.50, i.e. 5% more, or three more") == [1250.5, 5.0, 3.0]
    assert final_number("First I thought 10, but the answer is 5 cents.") == 5
    assert final_number("x = 47 days") == 47 and final_number("no idea") is None
    assert final_number("So: forty-seven") == 47
    assert score_answer("The final answer is **1,000** widgets", ["1000"])
    assert score_answer("It changes by -4%", ["-4"]) and not score_answer("It changes by 4%", ["-4"])
    assert score_answer("about five minutes", ["5"]) and not score_answer("", ["5"])
    assert score_answer("It is the second place", ["second"])  # a word answer matches as text


def test_stated_answer_needs_an_answer_line():
    assert stated_answer("Answer: 12") == 12 and stated_answer("so the answer is twelve.") == 12
    assert stated_answer("Answer:\n$1,250") == 1250
    assert stated_answer("I said 5 first.\nAnswer: 7\nRound 3: your turn") == 7
    # an echoed instruction or round header is not an answer, though final_number would read one
    echo = "End with a line of the form 'Answer: <number>'.\n\nRound 3: your turn, negative."
    assert stated_answer(echo) is None and final_number(echo) == 3
    assert stated_answer("no idea") is None
