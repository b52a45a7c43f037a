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
* **Exponents.** A number is read with its exponent, whole: ``1e5``, ``1.5e-3``, ``3 × 10^8``, ``2^10``,
  ``2 ** 10`` (``**`` with spaces on both sides or on neither: a closing bold mark is no power), and
  chains right to left (``2^3^2`` is 512); a mantissa's decimal places count after the shift
  (``3.68e-1`` has three, ``1.5e3`` none). A value no float holds (``1e999999``, ``10**10**10``,
  ``2^1024``, a 400-digit number, ``e^1000``, ``1e-999999``), or a number whose ``^`` is not followed by
  a number read as its exponent (``2^(1/2)``, ``2^x``), is **unreadable**: an answer holding one is no
  answer, never read as another number (its first digits, its base, a clamped value). So is a value
  that runs into the end of an answer line's read window.
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
# Every pattern here runs in time linear in its input (issue 26): no two quantifiers over whitespace meet
# (``\s*\*?\s*`` is written ``\s*+(?:\*\s*+)?``), a quantifier that the next token cannot continue is
# possessive (``*+``), a number is an atomic group, a thousands-separated number reads at most
# ``_GROUPS`` groups before it is taken whole, and :data:`_EXPR_RE` does not retry a search at each
# character of a whitespace run (a start inside a run fails whenever the start before it failed).
_GROUPS = 120  # more thousands groups than this (360+ digits) are beyond a float: read whole, unreadable
_NUM = (rf"(?>(?:\d{{1,3}}(?:,\d{{3}}){{1,{_GROUPS}}}+(?![\d,])|\d{{1,3}}(?:,\d{{3}}){{{_GROUPS + 1},}}+|\d+)"
        r"(?:\.\d+)?|\.\d+)")
_PI = r"(?:π|(?<![a-z])pi\b)"
# one exponent of a power: ``^3``, ``^-1``, ``^(2)``, ``**3`` (``**`` with spaces on both sides or on neither,
# so a closing bold mark, "**2** 3", is not a power)
_STEP = (rf"(?:\s*+\^\s*+|\*\*|\s++\*\*\s++)(?:[({{]\s*+[-−+]?\s*+{_NUM}\s*+[)}}]|(?:[-−+]\s*+)?{_NUM})")
_STEP_RE = re.compile(rf"(?:\^|\*\*)\s*(?:[({{]\s*)?(?P<sign>[-−+]?)\s*(?P<num>{_NUM})")
_TIMES = r"(?:×|x|\*|·|⋅|\\times)"


def _atom(g: str, bare_e: bool) -> str:
    """A numerator (``g="n"``) or denominator (``g="d"``) of a value: ``k pi``, ``e^k``, ``exp(k)``
    or a number (with an exponent: ``1e5``, ``3 × 10^8``, ``2^10``); ``bare_e``: a lone ``e`` counts too.
    A number followed by a ``^`` (or ``**``) that is not read as its exponent is marked ``{g}bad``."""
    power = (rf"\be\s*+(?:\^|\*\*)\s*+(?:[({{]\s*+)?(?:(?P<{g}sign>[-−+])\s*+)?(?P<{g}pow>{_NUM})"
             rf"\s*+[)}}]?")
    call = rf"\bexp\s*+\(\s*+(?:(?P<{g}esign>[-−+])\s*+)?(?P<{g}epow>{_NUM})\s*+\)"
    bare = rf"|(?P<{g}e>\be\b)" if bare_e else ""
    number = (rf"(?P<{g}num>{_NUM})(?:(?P<{g}sci>e[-+−]?\d++)|(?P<{g}times>\s*+{_TIMES}\s*+10(?={_STEP}))?"
              rf"(?P<{g}raise>(?:{_STEP})++))?(?:(?=\s*+\^|\*\*[\d({{+\-−])(?P<{g}bad>)|)")
    return (rf"(?:(?P<{g}coef>{_NUM})?\s*+(?:\*\s*+)?(?P<{g}pi>{_PI})|(?P<{g}exp>{power}|{call})"
            rf"|{number}{bare})")


_PERCENT = r"(?P<pct>\s*+(?:%|\bper\s?cent\b))?"
# a sign sits right before the value (or its currency sign); a ratio's colon has spaces on both sides
# or on neither ("Step 2: 15" is not a ratio); no search starts at a whitespace character whose
# predecessor is whitespace that was itself a start (it would fail there as it failed one before)
_EXPR_RE = re.compile(
    r"(?<![\w.^/])(?!(?<=\s)(?<![\w.^/]\s)\s)(?P<sign>[-−+])?(?:[$€£¥]\s?)?(?:"
    rf"(?P<ratio>{_NUM}(?:(?::|\s++:\s++){_NUM})+)(?!\d)"
    rf"|{_atom('n', False)}(?:\s*+/\s*+{_atom('d', True)})?{_PERCENT}"
    r")"
)

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORD = "|".join(sorted({*_UNITS, *_TENS, *_SCALES}, key=len, reverse=True))
_WORDS_RE = re.compile(rf"(?P<sign>\bminus\s++)?\b(?P<words>(?:{_NUMBER_WORD})"
                       rf"(?:[\s-]++(?:and[\s-]++)?(?:{_NUMBER_WORD}))*)\b{_PERCENT}")

# between two values of one answer: an optional unit word, then a joiner
_JOINER_RE = re.compile(r"\s*+(?:\*\*\s*+)?(?:[a-z]+\s*+)?(?:,\s*+(?:or|and)\b|,|;|&|\bor\b|\band\b)\s*+(?:\*\*\s*+)?")
_MARKER_RE = re.compile(r"\banswers?\b\s*+(?:(?:\*\*|__)\s*+)?(?::|=|\b(?:is|are)\b\s*:?|\b(?:would|should|will) be\b)")
_LINE = 200  # how much of a marker's line is read: an answer line is short
_DIGIT_RE = re.compile(r"\d|π|(?<![a-z])pi\b|\be\s*(?:\^|\*\*)|\bexp\s*\(")


#: A value no float can hold (``1e999999``, ``10**10**10``, ``2^1024``, a 400-digit number, ``e^-1000``)
#: or a number whose exponent is not read (``2^(1/2)``): an answer holding one is unreadable (no answer),
#: never read as another number.
_UNREADABLE = Value("number", (math.nan,), text="(unreadable)")
_WORDS_CAP = 10**400  # a number in words beyond any float is held at this (it reads as unreadable)

Precision = tuple[int, int] | None  # decimal places and significant digits as written; None: an exact form


def words_to_number(text: str) -> int | None:
    """``"twenty-one"`` -> 21, ``"one hundred and five"`` -> 105; ``None`` if it is not a number
    (one beyond ``10**400``, far past any float, is held at ``10**400``)."""
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
            current = min((current or 1) * 100, _WORDS_CAP)
        elif word in _SCALES:
            total = min(total + (current or 1) * _SCALES[word], _WORDS_CAP)
            current = 0
        else:
            return None
        seen = True
    return min(total + current, _WORDS_CAP) if seen else None


def _in_range(x: float, is_zero: bool) -> float:
    """``x``, or NaN where it left the float range: not finite, or 0 though the expression is not."""
    return x if math.isfinite(x) and (x != 0 or is_zero) else math.nan


def _written(num: str) -> tuple[float, int, int]:
    """A digit string's value (NaN beyond the float range), decimal places and significant digits."""
    plain = num.replace(",", "")
    decimals = len(plain.split(".", 1)[1]) if "." in plain else 0
    significant = plain.replace(".", "").lstrip("0")
    return _in_range(float(plain), not significant), decimals, len(significant) or 1


def _power(base: float, exponent: float) -> float:
    """``base ** exponent``, NaN when either is NaN or the power leaves the float range."""
    if math.isnan(base) or math.isnan(exponent):
        return math.nan
    try:
        return _in_range(math.pow(base, exponent), base == 0)
    except (OverflowError, ValueError, ZeroDivisionError):
        return math.nan


def _exponent(chain: str) -> float:
    """The value of an exponent chain ``^a^b`` (right-associative: ``10**10**10`` is 10^(10^10))."""
    steps = [_written(m.group("num"))[0] * (-1.0 if m.group("sign") in ("-", "−") else 1.0)
             for m in _STEP_RE.finditer(chain)]
    value = steps[-1]
    for step in reversed(steps[:-1]):
        value = _power(step, value)
    return value


def _shifted(precision: tuple[int, int], shift: float) -> Precision:
    """The precision of a mantissa written with ``precision`` times ``10^shift`` (None unless the
    shift is a whole number)."""
    if math.isnan(shift) or shift != int(shift) or abs(shift) > 10_000:
        return None
    return max(0, precision[0] - int(shift)), precision[1]


def _number_value(m: re.Match[str], g: str) -> tuple[float, Precision]:
    """A written number of atom ``g``, with its exponent (``1e5``, ``3 × 10^8``, ``2^10``) if any."""
    num = m.group(f"{g}num")
    mantissa, decimals, digits = _written(num)
    sci, chain = m.group(f"{g}sci"), m.group(f"{g}raise")
    if m.group(f"{g}bad") is not None:
        return math.nan, None
    if sci:
        shift = sci[1:].replace("−", "-")
        value = _in_range(float(num.replace(",", "") + "e" + shift), mantissa == 0)
        return (value, _shifted((decimals, digits), float(shift) if len(shift) < 8 else math.nan))
    if chain:
        exponent = _exponent(chain)
        if m.group(f"{g}times") is not None:
            value = _in_range(mantissa * _power(10.0, exponent), mantissa == 0)
            return value, _shifted((decimals, digits), exponent)
        return _power(mantissa, exponent), None
    return mantissa, (decimals, digits)


def _exp(exponent: float) -> float:
    """``e ** exponent``, NaN beyond the float range (``e^1000``, ``e^-1000``)."""
    try:
        return _in_range(math.exp(exponent), False)
    except OverflowError:
        return math.nan


def _atom_value(m: re.Match[str], g: str) -> tuple[float, Precision] | None:
    """The value of atom ``g`` in ``m`` and its precision as written (None for exact forms); None when
    the atom is absent."""
    if m.group(f"{g}num") is not None:
        return _number_value(m, g)
    if m.group(f"{g}pi") is not None:
        coef = _written(m.group(f"{g}coef"))[0] if m.group(f"{g}coef") else 1.0
        return _in_range(coef * math.pi, coef == 0), None
    if m.group(f"{g}exp") is not None:
        sign, power = (m.group(f"{g}sign"), m.group(f"{g}pow")) if m.group(f"{g}pow") else (m.group(f"{g}esign"),
                                                                                           m.group(f"{g}epow"))
        return _exp(_written(power)[0] * (-1 if sign in ("-", "−") else 1)), None
    if g == "d" and m.group("de") is not None:
        return math.e, None
    return None


def _ratio_value(m: re.Match[str], text: str) -> Value | None:
    terms = [_written(t.strip())[0] for t in m.group("ratio").split(":")]
    total = sum(terms)
    if any(math.isnan(t) for t in terms) or math.isinf(total):
        return _UNREADABLE
    if total <= 0:
        return None
    shares = tuple(_in_range(t / total, t == 0) for t in terms)
    return _UNREADABLE if any(math.isnan(s) for s in shares) else Value("ratio", shares, text=text)


def _match_value(m: re.Match[str]) -> Value | None:
    """The value one match of the expression grammar stands for: None for a zero denominator (no
    value), :data:`_UNREADABLE` for one beyond the float range."""
    negative = m.group("sign") in ("-", "−")
    text = m.group(0).strip()
    if m.group("ratio"):
        return _ratio_value(m, text)
    numerator = _atom_value(m, "n")
    if numerator is None:
        return None
    value, precision = numerator
    denominator = _atom_value(m, "d")
    if denominator is not None:
        if denominator[0] == 0:
            return None
        value, precision = _in_range(value / denominator[0], value == 0), None
    unit = 100.0 if m.group("pct") else 1.0
    value = _in_range(value / unit, value == 0)
    if math.isnan(value):
        return _UNREADABLE
    decimals, digits = precision if precision is not None else (None, 0)
    sign = -1.0 if negative else 1.0
    return Value("number", (sign * value,), unit, decimals, digits, text)


def _word_value(m: re.Match[str]) -> Value | None:
    value = words_to_number(m.group("words"))
    if value is None:
        return None
    try:
        number = float(value)
    except OverflowError:
        return _UNREADABLE
    unit = 100.0 if m.group("pct") else 1.0
    sign = -1.0 if m.group("sign") else 1.0
    return Value("number", (sign * number / unit,), unit, None, 0, m.group(0).strip())


def _found(text: str) -> list[tuple[int, int, Value]]:
    """Every value in ``text`` with its span, in order: digit expressions, or, where ``text`` has
    none, number words (a value beyond the float range as :data:`_UNREADABLE`)."""
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
    """Every readable value in ``text``, in order (see the module's rules)."""
    return [v for _, _, v in _found(text) if v is not _UNREADABLE]


def _groups(text: str, open_end: bool = False) -> list[tuple[Value, ...]]:
    """The values of ``text`` gathered into answers: values joined by a joiner share one answer.
    ``open_end``: ``text`` is cut from a longer one, so a value reaching its end is unreadable."""
    lowered = str(text).lower()
    groups: list[list[Value]] = []
    last_end = -1
    for start, end, v in _found(lowered):
        v = _UNREADABLE if open_end and end == len(lowered) else v
        if groups and _JOINER_RE.fullmatch(lowered[last_end:start]):
            groups[-1].append(v)
        else:
            groups.append([v])
        last_end = end
    return [tuple(g) for g in groups]


def _readable(group: tuple[Value, ...]) -> tuple[Value, ...]:
    """An answer as read: empty (no answer) when one of its values is unreadable."""
    return () if any(v is _UNREADABLE for v in group) else group


def parse_answer(text: str) -> tuple[Value, ...]:
    """A gold answer string as values: every value in it ("6 or 12" -> two values); a lone ``e`` is
    Euler's number. Empty when it has none (a text answer such as "second") or one is unreadable."""
    stripped = str(text).strip().lower()
    if stripped == "e":
        return (Value("number", (math.e,), text="e"),)
    return _readable(tuple(v for _, _, v in _found(stripped)))


def _after_marker(line: str) -> tuple[Value, ...]:
    """The answer on a marker's line (its first ``_LINE`` characters): the first group, or a lone
    ``e``. A value that runs into the cut of a longer line is unreadable (it may go on past it)."""
    cut = len(line) > _LINE
    line = line[:_LINE]
    if re.fullmatch(r"[\s*_`$]*e[\s*_`.]*", line):
        return (Value("number", (math.e,), text="e"),)
    groups = _groups(line, open_end=cut)
    return groups[0] if groups else ()


def reply_values(text: str, stated_only: bool = False) -> tuple[Value, ...]:
    """The answer a reply commits to (see the module's rules): after its last answer marker that a
    value follows, on that marker's line; else (unless ``stated_only``) the last number-like
    expression in the reply with the values joined to it. Empty when there is none, or when that
    answer holds an unreadable value."""
    lowered = str(text).lower()
    for m in reversed(list(_MARKER_RE.finditer(lowered))):
        rest = lowered[m.end():m.end() + 2 * _LINE].lstrip(" \t\n:*=_`")
        found = _after_marker(rest.split("\n", 1)[0])
        if found:
            return _readable(found)
    if stated_only:
        return ()
    groups = _groups(lowered)
    return _readable(groups[-1]) if groups else ()


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
