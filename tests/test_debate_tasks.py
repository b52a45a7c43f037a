"""Counter-intuitive arithmetic: the template generator checked by independent arithmetic, the
original-format loader, and the answer parser and its scoring rules (every case class of the
counter-intuitive set's gold answers); translation files and their language pair."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomlab.debate.answers import (
    extract_values,
    final_number,
    parse_answer,
    reply_values,
    score_answer,
    words_to_number,
)
from tomlab.debate.tables import score_rows
from tomlab.debate.tasks import (
    EXAMPLE_PAIR,
    FAMILIES,
    example_translations,
    generate_arithmetic,
    load_arithmetic_json,
    load_translation,
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
        assert isinstance(r.intuitive, list) and r.intuitive
        assert not math.isclose(float(r.intuitive[0]), truth, abs_tol=1e-9)  # the trap is a different number
        assert score_answer(f"The answer is {r.answer}.", r.answers)
        assert not score_answer(f"The answer is {r.intuitive[0]}.", r.answers)
        assert score_answer(f"The answer is {r.intuitive[0]}.", r.intuitive)


def test_a_percentage_question_takes_the_number_with_or_without_its_sign():
    row = generate_arithmetic(1, seed=0, families=["percent"]).iloc[0]
    change = row["answer"]
    assert list(row["answers"]) == [change, f"{change}%"] and list(row["intuitive"]) == ["0", "0%"]
    assert score_answer(f"Answer: {change}%", row["answers"]) and score_answer(f"Answer: {change}", row["answers"])
    assert score_answer(f"Answer: {float(change) / 100:g}", row["answers"])  # -0.04 is -4%
    assert not score_answer(f"Answer: {float(change) / 10:g}", row["answers"])


def test_instances_are_fresh_per_seed_and_reproducible():
    a, b, c = generate_arithmetic(50, seed=1), generate_arithmetic(50, seed=1), generate_arithmetic(50, seed=2)
    assert a.equals(b) and not a["question"].equals(c["question"])
    assert a["question"].nunique() > 40
    with pytest.raises(ValueError, match="unknown"):
        generate_arithmetic(3, families=["nonsense"])


def test_loader_reads_the_original_format(tmp_path):
    path = tmp_path / "ci.json"
    path.write_text(json.dumps([  # the original's field names; this fixture's content is made up
        {"question": "A pen and a cap cost $1.20 ...", "answer": ["0.1", "10 cents"], "explanation": "x",
         "incorrect answer": ["0.2", "20 cents"], "incorrect explanation": "y"},
        {"question": "Q2", "answer": "7", "incorrect answer": "8"},
        {"question": "Q3", "answers": ["1:1"], "intuitive": ["2:1"], "id": "mine"},
        {"question": "Q4", "answer": ["6 or 12"]},
    ]))
    rows = load_arithmetic_json(path)
    assert list(rows["answers"].iloc[0]) == ["0.1", "10 cents"] and list(rows["intuitive"].iloc[0]) == ["0.2", "20 cents"]
    assert rows["answers"].iloc[1] == ["7"] and rows["intuitive"].iloc[1] == ["8"]  # one string: a list of one
    assert rows["id"].iloc[2] == "mine" and rows["intuitive"].iloc[2] == ["2:1"] and rows["intuitive"].iloc[3] == []
    for entry, field in (({"question": "no answer"}, "answers"), ({"answer": ["3"]}, "question")):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps([{"question": "fine", "answer": "1"}, entry]))
        with pytest.raises(ValueError, match=rf"bad.json: entry 1 is missing field '{field}'"):
            load_arithmetic_json(bad)
    empty = tmp_path / "empty.json"
    empty.write_text('[{"question": "Q", "answer": []}]')
    with pytest.raises(ValueError, match="empty.json: entry 0 has an empty answer"):
        load_arithmetic_json(empty)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        load_arithmetic_json(broken)


def test_number_normalisation():
    assert words_to_number("twenty-one") == 21 and words_to_number("one hundred and five") == 105
    assert words_to_number("two thousand three hundred") == 2300 and words_to_number("banana") is None
    assert [v.number for v in extract_values("It costs $1,250.50, i.e. 5% more, or 1/4 of it")] == [1250.5, 0.05, 0.25]
    assert [v.number for v in extract_values("three more")] == [3.0]  # words where there are no digits
    assert final_number("First I thought 10, but the answer is 5 cents.") == 5
    assert final_number("x = 47 days") == 47 and final_number("no idea") is None
    assert final_number("So: forty-seven") == 47
    assert score_answer("The final answer is **1,000** widgets", ["1000"])
    assert score_answer("It changes by -4%", ["-4%"]) and not score_answer("It changes by 4%", ["-4%"])
    assert score_answer("about five minutes", ["5"]) and not score_answer("", ["5"])
    assert score_answer("It is the second place", ["second"])  # a word answer matches as text
    assert not score_answer("It is the secondary place", ["second"])


# (reply, acceptable answers, right?): every kind of gold answer the counter-intuitive set uses
SCORING_CASES = [
    # symbolic constants
    ("Answer: 1/e", ["1/e"], True), ("Answer: e^-1", ["1/e"], True), ("Answer: exp(-1)", ["1/e"], True),
    ("Answer: 0.3679", ["1/e"], True), ("Answer: 36.8%", ["1/e"], True), ("Answer: 0.37", ["1/e"], True),
    ("Answer: 37%", ["1/e"], False), ("Answer: 0.4", ["1/e"], False), ("Answer: 1/3", ["1/e"], False),
    ("Answer: pi", ["pi"], True), ("Answer: π", ["pi"], True), ("Answer: 3.14", ["pi"], True),
    ("Answer: 3.1416", ["pi"], True), ("Answer: 3", ["pi"], False), ("Answer: 3.15", ["pi"], False),
    ("Answer: 2pi", ["2π"], True), ("Answer: pi/2", ["1.5708"], True), ("Answer: e", ["e"], True),
    # fractions
    ("Answer: 3/4", ["3/4"], True), ("Answer: 0.75", ["3/4"], True), ("Answer: 75%", ["3/4"], True),
    ("Answer: 6/8", ["3/4"], True), ("Answer: 0.7", ["3/4"], False), ("Answer: 4/3", ["3/4"], False),
    ("Answer: 3", ["3/4"], False),
    # percentages: 48% is 0.48; 0.48% is not
    ("Answer: 48%", ["48%"], True), ("Answer: 0.48", ["48%"], True), ("Answer: 48 percent", ["48%"], True),
    ("Answer: 12/25", ["48%"], True), ("Answer: 0.48%", ["48%"], False), ("Answer: 48", ["48%"], False),
    ("Answer: 49%", ["48%"], False), ("Answer: 48.2%", ["48%"], False),
    # ratios: 1:1 equals 50:50; 2:1 differs; a ratio is not a number
    ("Answer: 1:1", ["1:1"], True), ("Answer: 50:50", ["1:1"], True), ("Answer: 3 : 3", ["1:1"], True),
    ("Answer: 2:1", ["1:1"], False), ("Answer: 1", ["1:1"], False), ("Answer: 1:2", ["2:1"], False),
    ("Answer: 4:2", ["2:1"], True), ("Answer: 1:2:3", ["2:4:6"], True), ("Answer: 1:2:3", ["1:2"], False),
    # several values: every one, in any order, and no others
    ("Answer: 6 or 12", ["6 or 12"], True), ("Answer: 12 or 6", ["6 or 12"], True),
    ("Answer: 6, 12", ["6 or 12"], True), ("Answer: 6 people or 12 people", ["6 or 12"], True),
    ("Answer: 6", ["6 or 12"], False), ("Answer: 12", ["6 or 12"], False),
    ("Answer: 6, 12 or 18", ["6 or 12"], False), ("Answer: 6 or 12", ["6"], False),
    # rounding: a reply at its own precision equals the exact value
    ("Answer: 33.33%", ["1/3"], True), ("Answer: 33.3%", ["1/3"], True), ("Answer: 0.3333", ["1/3"], True),
    ("Answer: 9.1%", ["1/11"], True), ("Answer: 9.09%", ["1/11"], True), ("Answer: 0.0909", ["1/11"], True),
    ("Answer: 33.4%", ["1/3"], False), ("Answer: 33%", ["1/3"], False), ("Answer: 0.3", ["1/3"], False),
    ("Answer: 9%", ["1/11"], False), ("Answer: 9.2%", ["1/11"], False), ("Answer: 0.09", ["1/11"], False),
    # a rounded gold accepts replies within its own precision
    ("Answer: 0.3679", ["0.37"], True), ("Answer: 1/e", ["0.37"], True), ("Answer: 0.365", ["0.37"], True),
    ("Answer: 0.36", ["0.37"], False), ("Answer: 0.38", ["0.37"], False), ("Answer: 9.0909%", ["9.09%"], True),
    ("Answer: 1/11", ["9.09%"], True), ("Answer: 9.1%", ["9.09%"], True), ("Answer: 9.2%", ["9.09%"], False),
    ("Answer: 68.8%", ["0.6875"], True), ("Answer: 2/3", ["0.67"], True), ("Answer: 0.7", ["0.67"], False),
    # ... but an integer or a one-digit value is no rounding of a different number
    ("Answer: 2", ["1.5"], False), ("Answer: 2.0", ["1.5"], False), ("Answer: 1.5", ["2"], False),
    ("Answer: 0.5", ["0.48"], False), ("Answer: 0.48", ["0.5"], False), ("Answer: 15", ["14.6"], False),
    # plain numbers with units and currency
    ("Answer: $10", ["10"], True), ("Answer: 10 dollars", ["$10"], True), ("Answer: $10.00", ["$10"], True),
    ("Answer: 5 cents", ["5 cents"], True), ("Answer: 5", ["5 cents"], True), ("Answer: $0.05", ["0.05", "5 cents"], True),
    ("Answer: 2 hours", ["2 hours"], True), ("Answer: 3 hours", ["2 hours"], False), ("Answer: 0.5", ["0.5"], True),
    ("Answer: 1/2", ["0.5"], True), ("Answer: 50%", ["0.5"], True), ("Answer: -4%", ["-4%"], True),
    ("Answer: 4%", ["-4%"], False), ("Answer: twelve", ["12"], True), ("Answer: 1,000", ["1000"], True),
    # any acceptable form will do
    ("Answer: 90%", ["0.75", "75%", "3/4"], False), ("Answer: 75%", ["0.9", "0.75"], True),
]


@pytest.mark.parametrize(("reply", "answers", "right"), SCORING_CASES)
def test_scoring_case(reply, answers, right):
    assert score_answer(reply, answers) is right


def test_the_answer_is_the_value_after_the_last_answer_marker():
    assert score_answer("Answer: 2\nOn reflection, Answer: 1.5", ["1.5"])
    assert not score_answer("Answer: 1.5\nNo wait. Answer: 2", ["1.5"])
    assert score_answer("**Answer:** 36.8%", ["1/e"]) and score_answer("The final answer is 1/e.", ["1/e"])
    assert score_answer("Answer:\n$1,250", ["1250"])  # the value may sit on the next line
    # a marker with no value after it does not hide the value of an earlier one
    assert reply_values("Answer: 7\nEnd with a line of the form 'Answer: <number>'.")[0].number == 7


def test_without_a_marker_the_last_expression_is_read_whole():
    # traps: the last number-like expression is a ratio, a fraction, a percentage, a constant
    assert score_answer("The ratio is 2:1", ["2:1"]) and not score_answer("The ratio is 2:1", ["1"])
    assert not score_answer("The ratio is 2:1", ["1:1"])
    assert score_answer("So the probability is 1/3.", ["1/3"]) and not score_answer("So the probability is 1/3.", ["3"])
    assert score_answer("The chance is 48%.", ["0.48"]) and not score_answer("The chance is 48%.", ["48"])
    assert score_answer("It tends to 1/e.", ["0.3679"])
    assert score_answer("First 6 people, then 12 people; so 6 or 12.", ["6 or 12"])
    assert [v.text for v in reply_values("Step 2: 15 minutes")] == ["15"]  # "2: 15" is a label, not a ratio
    # number words count only where a reply has no digits ("the right one" is not 1)
    assert final_number("It takes 5 minutes, which is the right one.") == 5
    assert final_number("I think it is twelve.") == 12


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789.,:/%$-+ e^()piπorandAnswer:\n*x")), max_size=80))
def test_reading_a_reply_never_raises(text):
    assert isinstance(reply_values(text), tuple)
    assert isinstance(score_answer(text, ["1/e", "6 or 12", "1:1", "48%", "second"]), bool)
    assert isinstance(score_answer(text + " Answer: e^999 or 9" + "9" * 400 + ":1", ["1"]), bool)


def test_parse_answer_keeps_kind_and_precision():
    (v,) = parse_answer("33.33%")
    assert v.kind == "number" and v.unit == 100 and v.decimals == 2 and abs(v.number - 0.3333) < 1e-12 and v.rounded
    (r,) = parse_answer("50:50")
    assert r.kind == "ratio" and r.parts == (0.5, 0.5) and r.number == 1.0
    assert [x.number for x in parse_answer("6 or 12")] == [6, 12] and parse_answer("second") == ()
    (fraction,) = parse_answer("1/3")
    assert fraction.decimals is None and not fraction.rounded


def test_intuitive_answers_are_a_list_and_any_match_counts():
    tasks = pd.DataFrame({"id": ["a", "b", "c"], "family": "original", "answers": [["0.75", "75%", "3/4"], ["2"], ["5"]],
                          "intuitive": [["0.9", "90%", "9/10"], "1", None]})  # a list, an old single string, none
    answers = pd.DataFrame({"question_id": ["a", "a", "a", "b", "c"], "method": "cot",
                            "final_answer": ["Answer: 9/10", "Answer: 3/4", "Answer: 0.5", "Answer: 1", "Answer: 4"]})
    scored = score_rows(answers, tasks)
    assert list(scored["correct"]) == [False, True, False, False, False]
    assert list(scored["gave_intuitive"]) == [True, False, False, True, False]


def _stated(text: str) -> float | None:
    """The number a reply commits to after an answer marker (``reply_values(..., stated_only=True)``)."""
    values = reply_values(text, stated_only=True)
    return values[0].number if values else None


def test_stated_answer_needs_an_answer_line():
    assert _stated("Answer: 12") == 12 and _stated("so the answer is twelve.") == 12
    assert _stated("Answer:\n$1,250") == 1250
    assert _stated("I said 5 first.\nAnswer: 7\nRound 3: your turn") == 7
    # an echoed instruction or round header is not an answer, though final_number would read one
    echo = "End with a line of the form 'Answer: <number>'.\n\nRound 3: your turn, negative."
    assert _stated(echo) is None and final_number(echo) == 3
    assert _stated("no idea") is None
    assert _stated("The ratio is 2:1") is None and _stated("Answer: 2:1") == 2.0


# --- numbers never read as another number (issue 26, item 10b) -------------------------------------
# A value is read whole (an exponent with it) or, where no float holds it, refused: the answer holding
# it is unreadable (no answer). It is never read as its first digits, its base or a clamped value.
BEYOND_A_FLOAT = ["Answer: 1e999999", "Answer: 10**10**10", "Answer: 2^1024", "Answer: 1e-999999",
                  "Answer: " + "9" * 400, "so it is 1," + ",".join(["000"] * 130), "Answer: e^1000",
                  "Answer: e^-1000", "Answer: " + "9" * 400 + ":1", "Answer: 1/" + "9" * 400, "Answer: 3 or 1e999",
                  "so it is 1e999999", "so it is 10**10**10", "Answer: 2^(1/2)", "Answer: 2^x"]


@pytest.mark.parametrize("reply", BEYOND_A_FLOAT)
def test_a_number_no_float_holds_is_no_answer(reply):
    assert reply_values(reply) == () and final_number(reply) is None
    assert not score_answer(reply, ["1"]) and not score_answer(reply, ["10"]) and not score_answer(reply, ["2"])


@pytest.mark.parametrize(("reply", "value"), [
    ("Answer: 1e5", 1e5), ("Answer: 1.5e-3", 0.0015), ("Answer: 6.02e23", 6.02e23), ("Answer: 1e308", 1e308),
    ("Answer: 2^1000", 2.0 ** 1000), ("Answer: 2^10", 1024), ("Answer: 2 ^ 10", 1024), ("Answer: 10**3", 1000),
    ("Answer: 2 ** 10", 1024), ("Answer: 2^-1", 0.5), ("Answer: 10^(-3)", 0.001), ("Answer: 2^3^2", 512),
    ("Answer: 3 × 10^8", 3e8), ("Answer: 2.5 x 10^-3", 0.0025), ("Answer: 1/2^10", 2.0 ** -10),
    ("Answer: e^700", math.exp(700)), ("x is 1e5", 1e5), ("so it is 1," + ",".join(["000"] * 100), 1e300),
])
def test_a_number_with_an_exponent_is_read_whole(reply, value):
    assert math.isclose(final_number(reply), value, rel_tol=1e-12)


def test_exponents_keep_the_scoring_rules_and_bold_marks():
    assert score_answer("Answer: 1e5", ["100000"]) and score_answer("Answer: 2^10", ["1024"])
    assert score_answer("Answer: 3.68e-1", ["1/e"])  # 0.368: three decimal places, as written
    assert not score_answer("Answer: 3e-1", ["1/e"])  # one significant digit is no rounding
    assert final_number("The answer is **2** 3 apples") == 2  # a closing bold mark is not a power
    assert final_number("The answer is **42**.") == 42 and final_number("**Answer:** 7**") == 7


def test_a_value_cut_by_the_answer_line_window_is_unreadable():
    # only the first 200 characters of an answer line are read; a number running past them is not
    # read as its first 200 digits
    assert reply_values("Answer: " + "1" * 300) == ()
    assert reply_values("Answer: 0." + "0" * 300 + "1") == ()
    assert final_number("Answer: 7 " + "x" * 300) == 7  # a value well inside the window is read


# --- translation files and their language pair ----------------------------------------------------
ITEMS = [("我们打车去机场吧。", "Let's take a taxi to the airport.", "Let's hit a car to the airport."),
         ("她把钥匙落在办公室了。", "She left her keys at the office.", "She fell her keys in the office.")]


def _write(path, rows, fmt):
    if fmt == "json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    else:
        pd.DataFrame(rows).to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "tsv"])
@pytest.mark.parametrize("names", [("source", "reference", "wrong_reference"),
                                   ("source", "correct reference", "incorrect reference")])
def test_translation_files_in_every_format_and_with_the_originals_names(tmp_path, fmt, names):
    path = tmp_path / f"mt.{fmt}"
    _write(path, [dict(zip(names, item)) for item in ITEMS], fmt)
    rows = load_translation(path, "Chinese", "English")
    assert list(rows["source"]) == [s for s, _, _ in ITEMS] and list(rows["reference"]) == [r for _, r, _ in ITEMS]
    assert list(rows["wrong_reference"]) == [w for _, _, w in ITEMS] and list(rows["id"]) == ["mt-0", "mt-1"]
    assert set(rows["source_language"]) == {"Chinese"} and set(rows["target_language"]) == {"English"}


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "tsv"])
def test_translation_errors_name_the_file_and_the_missing_field(tmp_path, fmt):
    path = tmp_path / f"broken.{fmt}"
    _write(path, [{"source": s, "correct reference": r} for s, r, _ in ITEMS], fmt)
    with pytest.raises(ValueError, match=rf"broken\.{fmt}.*missing field 'wrong_reference'.*'incorrect reference'"):
        load_translation(path, "Chinese", "English")


def test_translation_errors_on_empty_fields_duplicates_and_unknown_types(tmp_path):
    empty = tmp_path / "empty.json"
    _write(empty, [{"source": "你好", "reference": "Hello", "wrong_reference": ""}], "json")
    with pytest.raises(ValueError, match="empty.json: entry 1 has an empty 'wrong_reference'"):
        load_translation(empty, "Chinese", "English")
    twice = tmp_path / "twice.jsonl"
    _write(twice, [{"source": "你好", "reference": "Hello", "correct reference": "Hi", "wrong_reference": "You good"}],
           "jsonl")
    with pytest.raises(ValueError, match="twice.jsonl: line 1 has field 'reference' twice"):
        load_translation(twice, "Chinese", "English")
    with pytest.raises(ValueError, match=r"odd.txt: unknown translation file type '.txt'"):
        load_translation(tmp_path / "odd.txt", "Chinese", "English")
    not_a_list = tmp_path / "scalar.json"
    not_a_list.write_text("3")
    with pytest.raises(ValueError, match="scalar.json: expected a JSON array of objects"):
        load_translation(not_a_list, "Chinese", "English")


def test_a_files_own_language_columns_win_and_one_object_is_one_item(tmp_path):
    path = tmp_path / "one.json"
    _write(path, {"source": "Bonjour", "correct reference": "Hello", "incorrect reference": "Good day",
                  "source_language": "French", "base translation": "ignored"}, "json")
    (row,) = load_translation(path, "Chinese", "English").itertuples()
    assert (row.source_language, row.target_language) == ("French", "English")


def test_the_built_in_examples_are_chinese_to_english():
    rows = example_translations()
    assert EXAMPLE_PAIR == ("Chinese", "English") and len(rows) >= 5
    assert set(rows["source_language"]) == {"Chinese"} and set(rows["target_language"]) == {"English"}
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in s) for s in rows["source"])
    assert (rows["reference"] != rows["wrong_reference"]).all()


# --- ids of the task files (issue 26, item 8): one item per id, generated ids never clash, no empty set ----------
def test_an_arithmetic_file_with_a_repeated_id_is_refused_naming_the_ids_and_entries(tmp_path):
    path = tmp_path / "ciar.json"
    path.write_text(json.dumps([{"id": "q1", "question": "A", "answer": "1"}, {"id": "q2", "question": "B", "answer": "2"},
                                {"id": "q1", "question": "C", "answer": "3"}]))
    with pytest.raises(ValueError, match=r"ciar\.json: duplicate id\(s\): 'q1' \(entry 0, entry 2\)"):
        load_arithmetic_json(path)


def test_an_empty_arithmetic_file_is_refused(tmp_path):
    path = tmp_path / "none.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match=r"none\.json: no questions"):
        load_arithmetic_json(path)
    with pytest.raises(ValueError, match="at least one instance"):
        generate_arithmetic(0)


def test_generated_arithmetic_ids_skip_the_ids_given_explicitly(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([{"question": "A", "answer": "1"}, {"id": "original-0", "question": "B", "answer": "2"},
                                {"question": "C", "answer": "3", "id": None}]))
    ids = list(load_arithmetic_json(path)["id"])
    assert ids[1] == "original-0" and len(set(ids)) == 3 and ids[2] == "original-2"


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_translation_ids_given_twice_are_refused_naming_the_items(tmp_path, fmt):
    path = tmp_path / f"twice.{fmt}"
    rows = [{"id": i, "source": s, "reference": r, "wrong_reference": w} for i, (s, r, w) in zip(("a", "a"), ITEMS)]
    _write(path, rows, fmt)
    label = {"json": "entry 1, entry 2", "jsonl": "line 1, line 2", "csv": "row 1, row 2"}[fmt]
    with pytest.raises(ValueError, match=rf"twice\.{fmt}: duplicate id\(s\): 'a' \({label}\)"):
        load_translation(path, "Chinese", "English")


def test_a_jsonl_line_without_an_id_never_takes_an_id_given_to_another(tmp_path):
    path = tmp_path / "mt.jsonl"
    (s0, r0, w0), (s1, r1, w1) = ITEMS
    path.write_text(json.dumps({"source": s0, "reference": r0, "wrong_reference": w0}, ensure_ascii=False) + "\n\n"
                    + json.dumps({"id": "mt-0", "source": s1, "reference": r1, "wrong_reference": w1},
                                 ensure_ascii=False) + "\n", encoding="utf-8")
    ids = list(load_translation(path, "Chinese", "English")["id"])
    assert ids[1] == "mt-0" and ids[0] != "mt-0" and len(set(ids)) == 2
    # and errors name the file's own line (the blank line 2 counts)
    path.write_text(path.read_text(encoding="utf-8").replace(w1, ""), encoding="utf-8")
    with pytest.raises(ValueError, match=r"mt\.jsonl: line 3 has an empty 'wrong_reference'"):
        load_translation(path, "Chinese", "English")


def test_fill_ids_never_repeats_an_id():
    from tomlab.debate.tasks import fill_ids

    assert fill_ids([None, "x-0", None, "x-2-2", "x-2"], "x") == ["x-0-2", "x-0", "x-2-3", "x-2-2", "x-2"]
    assert fill_ids([None, None], "x") == ["x-0", "x-1"]
