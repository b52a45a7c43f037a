"""Reading and scoring arithmetic answers.

A small parser of answer expressions turns a gold string ("1/e", "48%", "1:1", "6 or 12", "$10",
"5 cents") or a reply into values; :func:`score_answer` says whether a reply's answer is one of the
acceptable answers. The rules (pinned in ``tests/test_debate_tasks.py``):

* **Values.** A number (digits with optional thousands commas and decimals, or number words), a
  fraction ``a/b``, the constants ``pi``/``π`` (also ``2pi``, ``pi/2``) and ``e`` (as ``1/e``,
  ``e^-1``, ``exp(-1)``; a bare ``e`` only as a whole answer), each optionally signed and
  optionally a percentage (``48%`` and ``48 percent`` are 0.48). Currency signs and unit words
  around a value are ignored ("$10", "5 cents", "2 hours"). A ratio ``a:b`` (or ``a:b:c``) is its
  own kind, compared by its terms' shares (``a/(a+b)``), so ``1:1`` equals ``50:50`` and ``2:1``
  differs; a ratio never equals a plain number. Its colon has spaces on both sides or on neither
  ("Step 2: 15" is a label and a number, not a ratio).
* **Several values.** Values joined by ``,`` ``;`` ``or`` ``and`` ``&`` (a unit word may sit
  before the joiner: "6 people or 12 people") form one answer. A reply is right only if every gold
  value is matched by one of its values and each of its values matches a gold value (order free):
  for "6 or 12", "12 or 6" is right and "6" alone is wrong.
* **Equality and rounding.** Values are equal when they agree to 1e-9 (relative). A reply written
  with limited precision is also right when it is the exact gold at that precision: with ``d``
  decimal places in the unit it was written in (``33.33%`` has 2, in percent), it must lie within
  half a unit of its last place of the gold (``33.33%`` for 1/3, ``36.8%`` for 1/e, ``9.1%`` for
  1/11). A gold written with limited precision ("0.37", "9.09%") likewise accepts replies within
  half a unit of its own last place. Only values with at least one decimal place and at least two
  significant digits count as rounded: ``0.5`` does not round 0.48, ``2`` does not round 1.5, and
  ``0.48%`` is 0.0048, not 48%.
* **Text answers.** A gold with no value in it ("second") is matched as a word-bounded,
  case-insensitive substring of the reply.

The answer a reply commits to (:func:`reply_values`): the first value (with the values joined to it)
on the line after the reply's last answer marker ("Answer:", "the answer is", "**Answer:**") that is
followed by a value (the first 200 characters of that line are read). Without such a marker, the last number-like expression in the reply, read as a
whole (a ratio ``2:1``, a fraction ``1/3``, a percentage ``48%``, with the values joined to it), so
"The ratio is 2:1" reads 2:1, not 1. Number words count only where a line or reply has no digits,
so "the right one" does not turn a reply that says "5 minutes" into 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["number", "ratio"]


@dataclass(frozen=True)
class Value:
    """One value of an answer.

    ``parts``: a number's value in base units (``48%`` -> ``(0.48,)``), or a ratio's terms as shares
    of their sum (``1:3`` -> ``(0.25, 0.75)``). ``unit``: 100 for a percentage, else 1. ``decimals``:
    decimal places as written, in that unit (``None`` for exact forms: fractions, constants, number
    words, ratios). ``digits``: significant digits as written. ``text``: the expression as written.
    """

    kind: Kind
    parts: tuple[float, ...]
    unit: float = 1.0
    decimals: int | None = None
    digits: int = 0
    text: str = ""

    @property
    def number(self) -> float:
        """The value as one float: a number itself, a ratio ``a:b`` as ``a/b``."""
        if self.kind == "number":
            return self.parts[0]
        return self.parts[0] / self.parts[1] if self.parts[1] else math.inf

    @property
    def rounded(self) -> bool:
        """Written with limited precision: at least one decimal place and two significant digits."""
        return self.kind == "number" and self.decimals is not None and self.decimals >= 1 and self.digits >= 2


# --- the expression grammar -------------------------------------------------------------------------
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?|\.\d+"
_PI = r"(?:π|(?<![a-z])pi\b)"


def _atom(g: str, bare_e: bool) -> str:
    """A numerator (``g="n"``) or denominator (``g="d"``) of a value: ``k pi``, ``e^k``, ``exp(k)``
    or digits; ``bare_e``: a lone ``e`` counts too."""
    power = rf"\be\s*(?:\^|\*\*)\s*[({{]?\s*(?P<{g}sign>[-−+]?)\s*(?P<{g}pow>{_NUM})\s*[)}}]?"
    call = rf"\bexp\s*\(\s*(?P<{g}esign>[-−+]?)\s*(?P<{g}epow>{_NUM})\s*\)"
    bare = rf"|(?P<{g}e>\be\b)" if bare_e else ""
    return (rf"(?:(?P<{g}coef>{_NUM})?\s*\*?\s*(?P<{g}pi>{_PI})|(?P<{g}exp>{power}|{call})"
            rf"|(?P<{g}num>{_NUM}){bare})")


_PERCENT = r"(?P<pct>\s*(?:%|\bper\s?cent\b))?"
# a sign sits right before the value (or its currency sign); a ratio's colon has spaces on both sides
# or on neither ("Step 2: 15" is not a ratio)
_EXPR_RE = re.compile(
    r"(?<![\w.^/])(?P<sign>[-−+])?(?:[$€£¥]\s?)?(?:"
    rf"(?P<ratio>(?:{_NUM})(?:(?::|\s+:\s+)(?:{_NUM}))+)(?!\d)"
    rf"|{_atom('n', False)}(?:\s*/\s*{_atom('d', True)})?{_PERCENT}"
    r")"
)

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORD = "|".join(sorted({*_UNITS, *_TENS, *_SCALES}, key=len, reverse=True))
_WORDS_RE = re.compile(rf"(?P<sign>\bminus\s+)?\b(?P<words>(?:{_NUMBER_WORD})"
                       rf"(?:[\s-]+(?:and[\s-]+)?(?:{_NUMBER_WORD}))*)\b{_PERCENT}")

# between two values of one answer: an optional unit word, then a joiner
_JOINER_RE = re.compile(r"\s*(?:\*\*)?\s*(?:[a-z]+\s*)?(?:,\s*(?:or|and)\b|,|;|&|\bor\b|\band\b)\s*(?:\*\*)?\s*")
_MARKER_RE = re.compile(r"\banswers?\b\s*(?:\*\*|__)?\s*(?::|=|\b(?:is|are)\b\s*:?|\b(?:would|should|will) be\b)")
_LINE = 200  # how much of a marker's line is read: an answer line is short
_DIGIT_RE = re.compile(r"\d|π|(?<![a-z])pi\b|\be\s*(?:\^|\*\*)|\bexp\s*\(")


def words_to_number(text: str) -> int | None:
    """``"twenty-one"`` -> 21, ``"one hundred and five"`` -> 105; ``None`` if it is not a number."""
    total = current = 0
    seen = False
    for word in re.split(r"[\s-]+", text.lower().strip()):
        if word == "and" or not word:
            continue
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total += (current or 1) * _SCALES[word]
            current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _written(num: str) -> tuple[float, int, int]:
    """A digit string's value, decimal places and significant digits."""
    plain = num.replace(",", "")
    decimals = len(plain.split(".", 1)[1]) if "." in plain else 0
    digits = len(plain.replace(".", "").lstrip("0")) or 1
    return float(plain), decimals, digits


def _atom_value(m: re.Match[str], g: str) -> tuple[float, bool] | None:
    """The value of atom ``g`` in ``m`` and whether it is a plain digit string; None when absent."""
    if m.group(f"{g}num") is not None:
        return _written(m.group(f"{g}num"))[0], True
    if m.group(f"{g}pi") is not None:
        coef = m.group(f"{g}coef")
        return (_written(coef)[0] if coef else 1.0) * math.pi, False
    if m.group(f"{g}exp") is not None:
        sign, power = (m.group(f"{g}sign"), m.group(f"{g}pow")) if m.group(f"{g}pow") else (m.group(f"{g}esign"),
                                                                                           m.group(f"{g}epow"))
        exponent = _written(power)[0] * (-1 if sign in ("-", "−") else 1)
        return math.exp(min(exponent, 700.0)), False  # e^1000 is read as a huge number, not an overflow
    if g == "d" and m.group("de") is not None:
        return math.e, False
    return None


def _match_value(m: re.Match[str]) -> Value | None:
    """The value one match of the expression grammar stands for (None for a zero denominator)."""
    negative = m.group("sign") in ("-", "−")
    text = m.group(0).strip()
    if m.group("ratio"):
        terms = [_written(t.strip())[0] for t in m.group("ratio").split(":")]
        total = sum(terms)
        if total <= 0:
            return None
        return Value("ratio", tuple(t / total for t in terms), text=text)
    numerator = _atom_value(m, "n")
    if numerator is None:
        return None
    value, plain = numerator
    denominator = _atom_value(m, "d")
    if denominator is not None:
        if denominator[0] == 0:
            return None
        value, plain = value / denominator[0], False
    unit = 100.0 if m.group("pct") else 1.0
    decimals = digits = 0
    if plain:
        _, decimals, digits = _written(m.group("nnum"))
    sign = -1.0 if negative else 1.0
    return Value("number", (sign * value / unit,), unit, decimals if plain else None, digits if plain else 0, text)


def _word_value(m: re.Match[str]) -> Value | None:
    value = words_to_number(m.group("words"))
    if value is None:
        return None
    unit = 100.0 if m.group("pct") else 1.0
    sign = -1.0 if m.group("sign") else 1.0
    return Value("number", (sign * value / unit,), unit, None, 0, m.group(0).strip())


def _found(text: str) -> list[tuple[int, int, Value]]:
    """Every value in ``text`` with its span, in order: digit expressions, or, where ``text`` has
    none, number words."""
    lowered = str(text).lower()
    out = []
    if _DIGIT_RE.search(lowered):
        for m in _EXPR_RE.finditer(lowered):
            v = _match_value(m)
            if v is not None:
                out.append((m.start(), m.end(), v))
    else:
        for m in _WORDS_RE.finditer(lowered):
            v = _word_value(m)
            if v is not None:
                out.append((m.start(), m.end(), v))
    return out


def extract_values(text: str) -> list[Value]:
    """Every value in ``text``, in order (see the module's rules)."""
    return [v for _, _, v in _found(text)]


def _groups(text: str) -> list[tuple[Value, ...]]:
    """The values of ``text`` gathered into answers: values joined by a joiner share one answer."""
    lowered = str(text).lower()
    groups: list[list[Value]] = []
    last_end = -1
    for start, end, v in _found(lowered):
        if groups and _JOINER_RE.fullmatch(lowered[last_end:start]):
            groups[-1].append(v)
        else:
            groups.append([v])
        last_end = end
    return [tuple(g) for g in groups]


def parse_answer(text: str) -> tuple[Value, ...]:
    """A gold answer string as values: every value in it ("6 or 12" -> two values); a lone ``e`` is
    Euler's number. Empty when it has none (a text answer such as "second")."""
    stripped = str(text).strip().lower()
    if stripped == "e":
        return (Value("number", (math.e,), text="e"),)
    return tuple(extract_values(stripped))


def _after_marker(line: str) -> tuple[Value, ...]:
    """The answer on a marker's line: the first group, or a lone ``e``."""
    if re.fullmatch(r"[\s*_`$]*e[\s*_`.]*", line):
        return (Value("number", (math.e,), text="e"),)
    groups = _groups(line)
    return groups[0] if groups else ()


def reply_values(text: str, stated_only: bool = False) -> tuple[Value, ...]:
    """The answer a reply commits to (see the module's rules): after its last answer marker that a
    value follows, on that marker's line; else (unless ``stated_only``) the last number-like
    expression in the reply with the values joined to it. Empty when there is none."""
    lowered = str(text).lower()
    for m in reversed(list(_MARKER_RE.finditer(lowered))):
        rest = lowered[m.end():m.end() + 2 * _LINE].lstrip(" \t\n:*=_`")
        found = _after_marker(rest.split("\n", 1)[0][:_LINE])
        if found:
            return found
    if stated_only:
        return ()
    groups = _groups(lowered)
    return groups[-1] if groups else ()


def final_number(text: str) -> float | None:
    """The first value of the answer a reply commits to (:func:`reply_values`) as one float."""
    values = reply_values(text)
    return values[0].number if values else None


def answer_key(values: Sequence[Value]) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """A hashable form of an answer for votes and agreement: equal values give equal keys (order of
    several values ignored; no rounding latitude)."""
    return tuple(sorted((v.kind, tuple(round(p, 9) for p in v.parts)) for v in values))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _within(reply: float, gold: float, unit: float, decimals: int) -> bool:
    """Whether ``reply`` lies within half a unit of the ``decimals``-th place of ``gold`` (in ``unit``)."""
    half = 0.5 * 10.0 ** -decimals
    return abs(reply * unit - gold * unit) <= half * (1 + 1e-9) + 1e-12


def values_match(reply: Value, gold: Value) -> bool:
    """Whether one reply value is one gold value (see the module's rules on kinds and rounding)."""
    if reply.kind != gold.kind or len(reply.parts) != len(gold.parts):
        return False
    if reply.kind == "ratio":
        return all(_close(r, g) for r, g in zip(reply.parts, gold.parts))
    r, g = reply.parts[0], gold.parts[0]
    if _close(r, g):
        return True
    if reply.rounded and _within(r, g, reply.unit, reply.decimals or 0):
        return True
    return gold.rounded and _within(r, g, gold.unit, gold.decimals or 0)


def answers_match(reply: Sequence[Value], gold: Sequence[Value]) -> bool:
    """Every gold value is matched by a reply value and every reply value matches a gold value."""
    if not reply or not gold:
        return False
    return (all(any(values_match(r, g) for r in reply) for g in gold)
            and all(any(values_match(r, g) for g in gold) for r in reply))


def score_answer(reply: str, answers: Sequence[str]) -> bool:
    """Whether ``reply``'s answer (:func:`reply_values`) is one of ``answers``, the acceptable forms
    of the gold answer ("0.75", "75%", "3/4"). A form with no value in it is matched as text."""
    values = reply_values(reply)
    lowered = str(reply).lower()
    for answer in answers:
        gold = parse_answer(str(answer))
        if gold:
            if answers_match(values, gold):
                return True
        else:
            word = str(answer).strip().lower()
            if word and re.search(rf"(?<!\w){re.escape(word)}(?!\w)", lowered):
                return True
    return False
