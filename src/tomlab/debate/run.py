"""Running one method (a single-agent baseline or the debate) over a task's items, as lockstep
conversations, into the tables the debate rules write."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from tomlab.backends.lm import GenerationConfig, LanguageModel
from tomlab.backends.lockstep import run_lockstep
from tomlab.debate.protocol import (
    SIDES,
    DebateConfig,
    chain_of_thought,
    debate,
    direct,
    self_consistency,
    self_reflection,
    translation_format,
    translation_question,
)
from tomlab.debate.tasks import final_translation
from tomlab.schema import default as schema_default
from tomlab.schema import vocabulary

#: The model roles of a debate; the baselines use the ``default`` model.
ROLES: tuple[str, ...] = (*SIDES, "judge")
TASKS: tuple[str, ...] = vocabulary("debate_task")
TURN_COLUMNS = ["question_id", "method", "round", "debater", "speaker", "text"]
JUDGE_COLUMNS = ["question_id", "method", "round", "mode", "raw", "parsed", "error", "preference", "answer"]


def _pair(row: Any) -> tuple[str, str]:
    """A translation item's (source, target) language; an error naming the item when it has none."""
    source, target = getattr(row, "source_language", None), getattr(row, "target_language", None)
    if not source or not target:
        raise ValueError(f"translation item {getattr(row, 'id', '?')!r} has no source_language/target_language: "
                         "build the items again with `tomlab debate-tasks --task translation`")
    return str(source), str(target)


def question(task: str, row: Any) -> str:
    """The question a task's item asks (a translation item in its own language pair)."""
    if task == "translation":
        return translation_question(row.source, *_pair(row))
    return str(row.question)


def answer_format(task: str, row: Any) -> dict[str, str]:
    """The ``answer_format`` keyword for an item's conversation: the translation format in the item's
    target language; none (the numeric default) for arithmetic."""
    return {"answer_format": translation_format(_pair(row)[1])} if task == "translation" else {}


@dataclass
class MethodRun:
    """One method's results over a task: answers, debate turns, judge readings, and the raw results."""

    answers: pd.DataFrame
    turns: pd.DataFrame
    judge: pd.DataFrame
    results: list[Any] = field(repr=False)
    usage: dict[str, dict[str, int]]


def _setting(settings: Mapping[str, Any], key: str) -> Any:
    return settings[key] if key in settings else schema_default(f"debate.{key}")


def conversations(task: str, method: str, rows: pd.DataFrame, settings: Mapping[str, Any]) -> list[Any]:
    """One conversation per item for ``method``, with the config's debate ``settings`` (missing keys
    take the schema's defaults)."""
    gen = GenerationConfig(max_new_tokens=_setting(settings, "max_new_tokens"),
                           chat_template=_setting(settings, "chat_template"))
    items = [(r.id, question(task, r), answer_format(task, r)) for r in rows.itertuples()]
    if method in ("debate", "debate_forced"):
        known = set(DebateConfig.__dataclass_fields__) - {"adaptive_break", "answer_format"}
        cfg = DebateConfig(adaptive_break=method == "debate", **{k: v for k, v in settings.items() if k in known})
        return [debate(qid, q, replace(cfg, **fmt)) for qid, q, fmt in items]
    if method == "direct":
        return [direct(qid, q, gen, **fmt) for qid, q, fmt in items]
    if method == "cot":
        return [chain_of_thought(qid, q, gen, **fmt) for qid, q, fmt in items]
    if method == "self_consistency":
        vote = (lambda texts: texts[0]) if task == "translation" else None  # no vote over free text
        return [self_consistency(qid, q, gen, k=_setting(settings, "sc_samples"),
                                 temperature=_setting(settings, "sc_temperature"), vote=vote, **fmt)
                for qid, q, fmt in items]
    if method == "self_reflection":
        return [self_reflection(qid, q, gen, iterations=_setting(settings, "reflection_iterations"), **fmt)
                for qid, q, fmt in items]
    raise ValueError(f"unknown debate method {method!r}")


def run_method(task: str, method: str, rows: pd.DataFrame, models: Mapping[str, LanguageModel],
               settings: Mapping[str, Any], *, progress: bool = True) -> MethodRun:
    """Answer every item of ``rows`` with ``method``; ``models`` has a backend per role and ``default``."""
    convs = conversations(task, method, rows, settings)
    results = run_lockstep(convs, dict(models) if method.startswith("debate") else models["default"],
                           progress=progress, desc=f"{task} {method}")
    answers, turns, judge = [], [], []
    for res in results:
        final = res.final_answer
        answers.append({"question_id": res.question_id, "method": method, "final_answer": final,
                        "translation": final_translation(final) if task == "translation" else "",
                        "prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                        "preference": getattr(res, "preference", None), "rounds_run": getattr(res, "rounds_run", 0),
                        "final_source": getattr(res, "final_source", "")})
        for t in getattr(res, "turns", []):
            turns.append({"question_id": res.question_id, "method": method, **t})
        for j in getattr(res, "judge", []):
            judge.append({"question_id": res.question_id, "method": method, **j})
    shared: dict[int, tuple[str, LanguageModel]] = {}
    for role, lm in models.items():  # roles sharing a backend share its usage: report it once
        shared.setdefault(id(lm), (role, lm))
    return MethodRun(answers=pd.DataFrame(answers), turns=pd.DataFrame(turns, columns=TURN_COLUMNS),
                     judge=pd.DataFrame(judge, columns=JUDGE_COLUMNS), results=list(results),
                     usage={role: lm.usage.as_dict() for role, lm in shared.values()})
