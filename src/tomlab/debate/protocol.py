"""Multi-agent debate (Liang et al.) and the single-agent baselines, as lockstep conversations."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tomlab.backends.lm import Completion, GenerationConfig
from tomlab.backends.lockstep import Conversation, Request, ask, usage_of
from tomlab.debate.answers import answer_key, final_number, reply_values
from tomlab.schema import vocabulary

TitForTat = Literal["none", "moderate", "always"]


METHODS: tuple[str, ...] = vocabulary("debate_method")
SIDES = ("affirmative", "negative")


TIT_FOR_TAT: dict[str, str] = {
    "none": "Say what you honestly think the answer is. If the other side is right, you may agree.",
    "moderate": ("Your job is to test the other side's answer: look for a real flaw in it and, if you find "
                 "one, argue for a different answer. Concede only what is clearly correct."),
    "always": ("You must disagree with the other side's answer, whatever it is, and argue for a different "
               "answer."),
}


ANSWER_FORMAT = "End with a line of the form 'Answer: <number>'."


def translation_question(source: str, source_language: str, target_language: str) -> str:
    """The question a translation item asks, in the item's own language pair."""
    return f"Translate this {source_language} sentence into {target_language}: {source}"


def translation_format(target_language: str) -> str:
    """How every speaker on a translation item must end (the ``answer_format`` of its debate)."""
    return f"End with a line of the form 'Translation: <your {target_language} translation>'."


@dataclass(frozen=True)
class DebateConfig:
    n_debaters: int = 2
    rounds: int = 3
    tit_for_tat: TitForTat = "moderate"
    adaptive_break: bool = True
    max_new_tokens: int = 160
    judge_max_new_tokens: int = 96
    temperature: float = 0.0
    chat_template: bool = True
    answer_format: str = ANSWER_FORMAT  # how every speaker must end (a number, a translation, ...)

    def __post_init__(self) -> None:
        if self.n_debaters < 2:
            raise ValueError("debate.n_debaters must be at least 2 (an affirmative and a negative side)")
        if self.rounds < 1:
            raise ValueError("debate.rounds must be at least 1")
        if self.tit_for_tat not in TIT_FOR_TAT:
            raise ValueError(f"debate.tit_for_tat must be one of {sorted(TIT_FOR_TAT)}, got {self.tit_for_tat!r}")

    def generation(self, judge: bool = False) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.judge_max_new_tokens if judge else self.max_new_tokens,
                                temperature=self.temperature, chat_template=self.chat_template)


def debater_name(i: int) -> str:
    return SIDES[0] if i == 0 else (SIDES[1] if i == 1 else f"negative {i}")


def debater_role(i: int) -> str:
    """The model role of debater ``i`` (``models`` may map each to a different backend)."""
    return "affirmative" if i == 0 else "negative"


@dataclass(frozen=True)
class JudgeReading:
    ok: bool  # a JSON object (or its key-value pairs) could be read
    data: dict[str, Any]
    error: str = ""


# a key: value pair; no search starts inside a word (it would fail there as it failed one character
# before), so a long word is read once, not once per character
_KV = re.compile(r"""(?!(?<=\w)\w)["']?(\w+)["']?\s*:\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^,}\n]+)""")


def _float_as_written(text: str) -> float | str:
    """A JSON number with a fraction or exponent: its float, or its text where no float holds it
    (``1e999999`` stays "1e999999", never infinity)."""
    value = float(text)
    return value if math.isfinite(value) else text


def _objects(text: str) -> list[str]:
    """Balanced ``{...}`` spans of ``text``, outermost first, respecting double-quoted strings."""
    spans, depth, start, in_str, esc = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start:i + 1])
    return spans


def parse_judge(text: str) -> JudgeReading:
    """Read a judge's JSON reply robustly: the first ``{...}`` that parses as a JSON object (code
    fences and chatter around it are ignored); failing that, ``key: value`` pairs inside braces.
    Nothing is ever evaluated as code. Keys are lower-cased."""
    text = str(text)
    for span in _objects(text):
        try:
            obj = json.loads(span, parse_float=_float_as_written)
        except (ValueError, RecursionError):  # not JSON, too deep, or an integer too long for Python to read
            continue
        if isinstance(obj, dict):
            return JudgeReading(True, {str(k).lower(): v for k, v in obj.items()})
    for span in _objects(text) or ([text[text.index("{"):]] if "{" in text else []):
        pairs = {k.lower(): v.strip().strip("'\"").strip() for k, v in _KV.findall(span)}
        if pairs:
            return JudgeReading(True, pairs, "not valid JSON; read as key: value pairs")
    return JudgeReading(False, {}, "no JSON object in the reply")


def _side(value: Any) -> str | None:
    text = str(value or "").strip().lower()
    for side in SIDES:
        if text.startswith(side[:3]):
            return side
    return None


def _answer_text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return "" if value is None else json.dumps(value)
    return str(value).strip()


@dataclass
class DebateResult:
    question_id: str
    final_answer: str = ""
    final_source: str = "none"  # "discriminative" | "extractive" | "none"
    preference: str | None = None  # the side the judge preferred, if it said
    rounds_run: int = 0
    stopped_early: bool = False
    turns: list[dict[str, Any]] = field(default_factory=list)
    judge: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def round_answers(self) -> list[list[float | None]]:
        """Per round, the number each debater ended its turn with."""
        rounds: dict[int, list[float | None]] = {}
        for t in self.turns:
            rounds.setdefault(t["round"], []).append(final_number(t["text"]))
        return [rounds[r] for r in sorted(rounds)]


def _transcript(turns: Sequence[Mapping[str, Any]]) -> str:
    return "\n\n".join(f"[Round {t['round']}, {t['speaker']}]\n{t['text'].strip()}" for t in turns) or "(nothing yet)"


def _count(result: DebateResult, completions: Sequence[Completion]) -> None:
    used = usage_of(completions)
    result.prompt_tokens += used["prompt_tokens"]
    result.completion_tokens += used["completion_tokens"]


def debate(question_id: str, question: str, cfg: DebateConfig) -> Conversation[DebateResult]:
    """One debate as a conversation (see :func:`tomlab.lockstep.run_lockstep`)."""
    result = DebateResult(question_id=question_id)
    for rnd in range(1, cfg.rounds + 1):
        for i in range(cfg.n_debaters):
            if i == 0:
                duty = ("Give your answer and your reasoning in a few sentences; from round 2 on, reply to the other "
                        "side's objections and change your answer if they convinced you.")
            else:
                duty = TIT_FOR_TAT[cfg.tit_for_tat]
            # The meta prompt (topic, debaters, rounds, judge) sets the scene; the speaker's duty and the
            # answer format come last, after the question and the transcript, where small models still
            # follow them (with the duty in the system turn, SmolLM2-135M echoed the transcript instead).
            meta = (f"You are the {debater_name(i)} side in a debate between {cfg.n_debaters} debaters about a "
                    f"question. They speak in turn, for at most {cfg.rounds} rounds, and a judge decides when a "
                    "correct answer has been found.")
            prompt = [{"role": "system", "content": meta},
                      {"role": "user", "content": f"Question: {question}\n\nThe debate so far:\n\n"
                                                  f"{_transcript(result.turns)}\n\nRound {rnd}, your turn as the "
                                                  f"{debater_name(i)} side. {duty} {cfg.answer_format}"}]
            (c,) = yield from ask([Request(prompt, cfg.generation(), model=debater_role(i))])
            _count(result, [c])
            result.turns.append({"round": rnd, "debater": i, "speaker": debater_name(i), "text": c.text})
        result.rounds_run = rnd
        if cfg.adaptive_break:
            decided = yield from _discriminate(question, result, cfg, rnd)
            if decided:
                result.stopped_early = rnd < cfg.rounds
                return result
    yield from _extract(question, result, cfg)  # only at the round limit
    return result


DISCRIMINATIVE = (("You are the judge of a debate. Decide whether one side has already given a correct answer to "
                   "the question."),
                  ("Reply with only a JSON object with the keys \"preference\" (\"affirmative\", \"negative\" or "
                   "\"none\" if neither side is convincingly right yet), \"answer\" (the answer you accept, or \"\") "
                   "and \"reason\" (one sentence)."))


EXTRACTIVE = (("You are the judge of a debate that has reached its round limit. Read it and give the final answer "
               "to the question."),
              ("Reply with only a JSON object with the keys \"answer\" (the final answer), \"preference\" (the side "
               "closer to it: \"affirmative\" or \"negative\") and \"reason\" (one sentence)."))


def _judge(question: str, result: DebateResult, cfg: DebateConfig, rnd: int, mode: str) -> Any:
    """Ask the judge in ``mode`` ("discriminative" or "extractive"); record its reply, parsed or
    not, and return ``(side, answer)`` ("" when it gave none)."""
    system, instruction = DISCRIMINATIVE if mode == "discriminative" else EXTRACTIVE
    heading = "The debate so far" if mode == "discriminative" else "The debate"
    prompt = [{"role": "system", "content": system},
              {"role": "user", "content": f"Question: {question}\n\n{heading}:\n\n{_transcript(result.turns)}\n\n"
                                          f"{instruction}"}]
    (c,) = yield from ask([Request(prompt, cfg.generation(judge=True), model="judge")])
    _count(result, [c])
    reading = parse_judge(c.text)
    side = _side(reading.data.get("preference")) if reading.ok else None
    answer = _answer_text(reading.data.get("answer")) if reading.ok else ""
    result.judge.append({"round": rnd, "mode": mode, "raw": c.text, "parsed": reading.ok,
                         "error": reading.error, "preference": side, "answer": answer})
    return side, answer


def _discriminate(question: str, result: DebateResult, cfg: DebateConfig, rnd: int) -> Any:
    """After a round: stop the debate if the judge names a side and an accepted answer."""
    side, answer = yield from _judge(question, result, cfg, rnd, "discriminative")
    if side is not None and answer:
        result.final_answer, result.final_source, result.preference = answer, "discriminative", side
        return True
    return False


def _extract(question: str, result: DebateResult, cfg: DebateConfig) -> Any:
    """At the round limit: the judge's extracted answer is the debate's answer."""
    side, answer = yield from _judge(question, result, cfg, result.rounds_run, "extractive")
    if answer:
        result.final_answer, result.final_source, result.preference = answer, "extractive", side


@dataclass
class BaselineResult:
    question_id: str
    method: str
    final_answer: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _one(question: str, instruction: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{question}\n\n{instruction}"}]


def _baseline(question_id: str, method: str, completions: Sequence[Completion], final: str,
              steps: list[dict[str, Any]]) -> BaselineResult:
    return BaselineResult(question_id, method, final, steps, **usage_of(completions))


def direct(question_id: str, question: str, gen: GenerationConfig,
           answer_format: str = ANSWER_FORMAT) -> Conversation[BaselineResult]:
    (c,) = yield from ask([Request(_one(question, f"Answer directly, without explanation. {answer_format}"), gen)])
    return _baseline(question_id, "direct", [c], c.text, [{"kind": "answer", "text": c.text}])


def chain_of_thought(question_id: str, question: str, gen: GenerationConfig,
                     answer_format: str = ANSWER_FORMAT) -> Conversation[BaselineResult]:
    (c,) = yield from ask([Request(_one(question, f"Let's think step by step. {answer_format}"), gen)])
    return _baseline(question_id, "cot", [c], c.text, [{"kind": "reasoning", "text": c.text}])


def majority(answers: Sequence[str]) -> str:
    """The most common answer among ``answers`` (read as :func:`tomlab.debate.answers.reply_values`;
    equal values in different forms, "0.5" and "50%", count as one; ties: the earliest), as
    ``"Answer: <its first wording>"``; the first answer's text when none has a value."""
    read = [reply_values(a) for a in answers]
    counted = Counter(answer_key(v) for v in read if v)
    if not counted:
        return answers[0] if answers else ""
    best = max(counted.values())
    winner = next(v for v in read if v and counted[answer_key(v)] == best)
    return "Answer: " + " or ".join(v.text for v in winner)


def self_consistency(question_id: str, question: str, gen: GenerationConfig, k: int = 5,
                     temperature: float = 0.7, answer_format: str = ANSWER_FORMAT,
                     vote: Any = None) -> Conversation[BaselineResult]:
    """``k`` chain-of-thought samples (seeds 0..k-1) and a majority vote over their answers
    (``vote``: a function from the sample texts to the chosen one; default :func:`majority`)."""
    reqs = [Request(_one(question, f"Let's think step by step. {answer_format}"),
                    GenerationConfig(max_new_tokens=gen.max_new_tokens, temperature=temperature, seed=s,
                                     chat_template=gen.chat_template)) for s in range(k)]
    cs = yield from ask(reqs)
    texts = [c.text for c in cs]
    return _baseline(question_id, "self_consistency", cs, (vote or majority)(texts),
                     [{"kind": "sample", "text": t} for t in texts])


def self_reflection(question_id: str, question: str, gen: GenerationConfig, iterations: int = 1,
                    answer_format: str = ANSWER_FORMAT) -> Conversation[BaselineResult]:
    """Answer, then (``iterations`` times) criticise the answer and revise it."""
    (c,) = yield from ask([Request(_one(question, f"Let's think step by step. {answer_format}"), gen)])
    used, steps, answer = [c], [{"kind": "answer", "text": c.text}], c.text
    for _ in range(iterations):
        history = _one(question, f"Let's think step by step. {answer_format}") + [{"role": "assistant", "content": answer}]
        (fb,) = yield from ask([Request(history + [{"role": "user", "content": "Check your answer above for mistakes "
                                                    "and list any you find."}], gen)])
        (rev,) = yield from ask([Request(history + [{"role": "user", "content":
                                                     f"Feedback on your answer:\n{fb.text}\n\nGive your final "
                                                     f"answer now. {answer_format}"}], gen)])
        used += [fb, rev]
        steps += [{"kind": "feedback", "text": fb.text}, {"kind": "revision", "text": rev.text}]
        answer = rev.text
    return _baseline(question_id, "self_reflection", used, answer, steps)
