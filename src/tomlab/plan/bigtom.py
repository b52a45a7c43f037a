"""The plan's counts for the BigToM evaluation and the activation extraction.

Rules (``workflow/rules/evaluation.smk``, ``workflow/rules/activations.smk``):

- ``evaluate_baseline`` (one job per model that the evaluation or steering runs): ``tomlab evaluate``.
  Generation asks the completion cache (empty: counted as fresh) once per *distinct* prompt, rendered as
  :meth:`tomlab.backends.lm.TransformersLM.encode` renders it (the chat template when the protocol or
  ``evaluation.chat_template`` asks for it, else the plain prompt with the tokenizer's special tokens),
  and decodes at most ``evaluation.max_new_tokens`` tokens each: a **limit**, a reply may stop earlier.
  Log-likelihood scoring runs every item's prompt with each of its two options
  (:func:`tomlab.backends.likelihood.option_logprobs`): ``2 * items`` sequences of prompt plus option
  tokens, as :func:`tomlab.backends.likelihood.scoring_ids` tokenises them.  A served panel model answers
  by generation only, loads nothing, and its tokens are estimated (no tokenizer of a server).
- ``evaluate_served`` (one job when ``evaluation.served`` is set, made once for all: model ``""``): the
  served model's generation, its prompt tokens estimated at :data:`~tomlab.plan.context.CHARS_PER_TOKEN`.
- ``extract_activations`` (per model and probing task): every probe sample's prompt run once through the
  model's body, every site captured in the same pass; no logits.

The token helpers here (:func:`prompt_tokens`, :func:`pair_tokens`) are shared with
:mod:`tomlab.plan.steering`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab.bigtom.conditions import MAIN_TASK
from tomlab.panel import is_served, model_name
from tomlab.plan.context import CHARS_PER_TOKEN, PlanContext
from tomlab.plan.work import JobWork, Pass

GENERATION, LOG_LIKELIHOOD = "generation", "log-likelihood"


# --- tokens -----------------------------------------------------------------------------------------


def _tokenizer(ctx: PlanContext, model: str) -> Any | None:
    """The model's tokenizer when it is a local panel model with one at hand, else None."""
    return ctx.tokenizer(model) if model in ctx.panel and ctx.local(model) else None


def _estimate(ctx: PlanContext, model: str, texts: Sequence[str]) -> np.ndarray:
    """Tokens of each text at :data:`CHARS_PER_TOKEN` characters a token (the model named as estimated)."""
    ctx.estimated.add(model or "served")
    return np.array([len(t) / CHARS_PER_TOKEN for t in texts], dtype=np.float64)


def chat_of(ctx: PlanContext) -> bool:
    """Whether the evaluation's prompts ask for the chat template: ``evaluation.chat_template``, else the
    items' protocol's choice (as the command lines' ``_chat_template`` decides)."""
    from tomlab.bigtom.evaluation import items_protocol
    from tomlab.bigtom.protocol import uses_chat_template

    return uses_chat_template(items_protocol(ctx.eval_items), ctx.section("evaluation").get("chat_template"))


def _template(tok: Any, chat: bool, model: str) -> bool:
    """Whether prompts go through the chat template: asked, and the tokenizer has one (as the backend says)."""
    from tomlab.backends.models import uses_chat_template

    return uses_chat_template(tok, chat, model)


def prompt_lengths(ctx: PlanContext, model: str, prompts: Sequence[str], chat: bool) -> np.ndarray:
    """Tokens of each prompt as generation feeds it (:meth:`tomlab.backends.lm.TransformersLM.encode`)."""
    from tomlab.backends.models import apply_chat

    tok = _tokenizer(ctx, model)
    if tok is None:
        return _estimate(ctx, model, prompts)
    if _template(tok, chat, model):
        texts = [apply_chat(tok, [{"role": "user", "content": p}]) for p in prompts]
        ids = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
    else:
        ids = tok(list(prompts), add_special_tokens=True)["input_ids"] if prompts else []
    return np.array([len(i) for i in ids], dtype=np.float64)


def prompt_tokens(ctx: PlanContext, model: str, prompts: Sequence[str], chat: bool) -> float:
    """The mean of :func:`prompt_lengths` (0 for no prompt)."""
    lengths = prompt_lengths(ctx, model, prompts, chat)
    return float(lengths.mean()) if len(lengths) else 0.0


def pair_tokens(ctx: PlanContext, model: str, prompts: Sequence[str], continuations: Sequence[str],
                chat: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each (prompt, continuation)'s prompt tokens and continuation tokens as log-likelihood scoring
    tokenises them (:func:`tomlab.backends.likelihood.scoring_ids`)."""
    from tomlab.backends.likelihood import scoring_ids

    tok = _tokenizer(ctx, model)
    if tok is None:
        sep = " "  # a plain prompt is followed by a space before its continuation
        return _estimate(ctx, model, prompts), _estimate(ctx, model, [sep + c for c in continuations])
    chat = _template(tok, chat, model)
    pairs = [scoring_ids(tok, p, c, chat) for p, c in zip(prompts, continuations)]
    return (np.array([len(p) for p, _ in pairs], dtype=np.float64),
            np.array([len(c) for _, c in pairs], dtype=np.float64))


def mean_of(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def kept_logits(conts: np.ndarray) -> int:
    """Positions whose logits a scoring row keeps: the longest continuation and the one before it."""
    return int(math.ceil(conts.max())) + 1 if len(conts) else 1


def option_pairs(items: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Every item's prompt twice, with its option a then its option b (the order
    :func:`tomlab.backends.likelihood.option_logprobs` scores them in)."""
    prompts: list[str] = []
    conts: list[str] = []
    for prompt, a, b in zip(items["prompt"], items["option_a"], items["option_b"]):
        prompts += [str(prompt), str(prompt)]
        conts += [str(a), str(b)]
    return prompts, conts


def distinct_prompts(items: pd.DataFrame) -> list[str]:
    """The items' prompts, each once (the completion cache answers a repeated one)."""
    return list(dict.fromkeys(str(p) for p in items["prompt"]))


# --- passes ---------------------------------------------------------------------------------------


def generation_pass(ctx: PlanContext, model: str, prompts: Sequence[str], *, chat: bool, new_tokens: int,
                    batch: int, copies: int = 1, what: str = "") -> Pass:
    """The prompts generated ``copies`` times (once per completion-cache namespace), ``new_tokens`` each
    at most."""
    return Pass("generate", rows=len(prompts) * copies, prompt_tokens=prompt_tokens(ctx, model, prompts, chat),
                new_tokens=new_tokens, batch=batch,
                what=what or f"generation: {len(prompts)} distinct prompts, at most {new_tokens} new tokens each "
                              "(a limit: a reply may stop earlier)")


def score_pass(ctx: PlanContext, model: str, prompts: Sequence[str], conts: Sequence[str], *, chat: bool,
               batch: int, copies: int = 1, what: str = "") -> Pass:
    """Each (prompt, continuation) run forward whole, ``copies`` times (once per intervention)."""
    p, c = pair_tokens(ctx, model, prompts, conts, chat)
    return Pass("score", rows=len(prompts) * copies, prompt_tokens=mean_of(p + c), batch=batch, logits=kept_logits(c),
                what=what or "log-likelihood: prompt and option, each option of each item")


def answer_passes(ctx: PlanContext, model: str, items: pd.DataFrame, *, modes: Sequence[str], batch: int,
                  max_new_tokens: int, chat: bool) -> list[Pass]:
    """What :func:`tomlab.bigtom.evaluation.evaluate_items` asks: generation, then option scoring."""
    passes = []
    if GENERATION in modes:
        passes.append(generation_pass(ctx, model, distinct_prompts(items), chat=chat, new_tokens=max_new_tokens,
                                      batch=batch))
    if LOG_LIKELIHOOD in modes:
        prompts, conts = option_pairs(items)
        passes.append(score_pass(ctx, model, prompts, conts, chat=chat, batch=batch))
    return passes


# --- the rules --------------------------------------------------------------------------------------


def baseline_models(ctx: PlanContext) -> list[str]:
    """The models ``evaluate_baseline`` runs: those the evaluation or the steering runs (steering compares
    with the baseline), in panel order."""
    wanted = set(ctx.models_of("evaluation")) | set(ctx.models_of("steering"))
    return [m for m in ctx.panel if m in wanted]


def evaluate_baseline(ctx: PlanContext, model: str) -> JobWork:
    ev = ctx.section("evaluation")
    served = not ctx.local(model)
    modes = [GENERATION] if served else list(ev["modes"])
    passes = answer_passes(ctx, model, ctx.eval_items, modes=modes, batch=int(ev["batch_size"]),
                           max_new_tokens=int(ev["max_new_tokens"]), chat=chat_of(ctx))
    return JobWork("evaluation", "evaluate_baseline", model, model, loads=0 if served else 1, passes=tuple(passes))


def evaluate_served(ctx: PlanContext) -> list[JobWork]:
    """The served evaluation, when ``evaluation.served`` names a server (made once for all: model ``""``)."""
    ev = ctx.section("evaluation")
    spec = ev.get("served")
    if not spec or not is_served(spec):
        return []
    prompts = distinct_prompts(ctx.eval_items)
    new = int(ev["max_new_tokens"])
    tokens = _estimate(ctx, model_name(spec), prompts)
    generate = Pass("generate", rows=len(prompts), prompt_tokens=mean_of(tokens), new_tokens=new,
                    batch=int(spec.get("concurrency") or 0),  # requests in flight: the server batches
                    what=f"served generation: {len(prompts)} distinct prompts, at most {new} new tokens each "
                         "(a limit), prompt tokens estimated")
    return [JobWork("evaluation", "evaluate_served", "", "", loads=0, passes=(generate,))]


def extraction_tasks(ctx: PlanContext) -> dict[str, list[str]]:
    """Model -> the probing tasks whose activations the workflow extracts: every task for a steered model
    (its directions and Table 2 need them), the main task for a probed or stress-tested one."""
    tasks = list(ctx.section("probing")["tasks"])
    steered = set(ctx.models_of("steering"))
    main = set(ctx.models_of("probing")) | set(ctx.models_of("stress"))
    return {m: (tasks if m in steered else [t for t in tasks if t == MAIN_TASK])
            for m in ctx.panel if m in steered or m in main}


def extract_activations(ctx: PlanContext, model: str, task: str) -> JobWork:
    act = ctx.section("activations")
    prompts = [str(p) for p in ctx.probe_samples(task)["prompt"]]
    sites = list(act["sites"])
    scored = Pass("score", rows=len(prompts), prompt_tokens=ctx.tokens(model, prompts), batch=int(act["batch_size"]),
                  logits=0, what=f"activations at the last token of every probe sample, sites {', '.join(sites)} "
                                 "captured in one pass (the body only, no logits)")
    return JobWork("activations", "extract_activations", f"{model}/{task}", model, loads=1, passes=(scored,))


def jobs(ctx: PlanContext) -> list[JobWork]:
    """Every job of ``evaluate_baseline``, ``evaluate_served`` and ``extract_activations``."""
    out = [evaluate_baseline(ctx, m) for m in baseline_models(ctx)]
    out += evaluate_served(ctx)
    out += [extract_activations(ctx, m, t) for m, tasks in extraction_tasks(ctx).items() for t in tasks]
    return out
