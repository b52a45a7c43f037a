"""Lockstep conversations: many multi-turn exchanges advanced together, each turn batched per model role."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tomlab.backends.lm import Completion, GenerationConfig, LanguageModel, Prompt

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """One prompt to answer: with which generation setting, and by which model (a role name that
    :func:`run_lockstep`'s ``models`` maps to a backend; ``"default"`` unless a caller has several)."""

    prompt: Prompt
    config: GenerationConfig
    model: str = "default"


Conversation = Generator[list[Request], list[Completion], T]


def run_lockstep(conversations: Sequence[Conversation[T]], models: LanguageModel | Mapping[str, LanguageModel],
                 progress: bool = False, desc: str = "prompts") -> list[T]:
    """Drive ``conversations`` to completion; return their results in the same order."""
    from tqdm.auto import tqdm

    backends = {"default": models} if isinstance(models, LanguageModel) else dict(models)
    results: dict[int, T] = {}
    pending: dict[int, list[Request]] = {}
    for i, conv in enumerate(conversations):
        try:
            pending[i] = next(conv)
        except StopIteration as stop:
            results[i] = stop.value
    bar = tqdm(desc=desc, unit="prompt", disable=not progress)
    while pending:
        answers: dict[int, list[Completion | None]] = {i: [None] * len(reqs) for i, reqs in pending.items()}
        groups: dict[tuple[int, GenerationConfig], list[tuple[int, int]]] = {}
        for i, reqs in pending.items():
            for j, req in enumerate(reqs):
                if req.model not in backends:
                    raise KeyError(f"no model configured for role {req.model!r} (have {sorted(backends)})")
                # roles that share a backend share its batches
                groups.setdefault((id(backends[req.model]), req.config), []).append((i, j))
        for (_, config), where in groups.items():
            i0, j0 = where[0]
            out = backends[pending[i0][j0].model].generate([pending[i][j].prompt for i, j in where], config)
            for (i, j), completion in zip(where, out):
                answers[i][j] = completion
            bar.update(len(where))
        step: dict[int, list[Request]] = {}
        for i in pending:
            try:
                step[i] = conversations[i].send(answers[i])  # type: ignore[arg-type]
            except StopIteration as stop:
                results[i] = stop.value
        pending = step
    bar.close()
    return [results[i] for i in range(len(conversations))]


def ask(requests: list[Request]) -> Generator[list[Request], list[Completion], list[Completion]]:
    """``completions = yield from ask([...])`` inside a conversation."""
    completions = yield requests
    if len(completions) != len(requests):
        raise RuntimeError(f"asked {len(requests)} prompts, got {len(completions)} completions")
    return list(completions)


def usage_of(completions: Sequence[Completion]) -> dict[str, int]:
    """Prompt and completion tokens summed over ``completions``."""
    return {"prompt_tokens": sum(c.prompt_tokens for c in completions),
            "completion_tokens": sum(c.completion_tokens for c in completions)}
