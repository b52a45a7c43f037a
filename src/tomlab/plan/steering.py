"""The plan's counts for steering: rules ``steer``, ``alpha_sweep``, ``mechanism`` and ``free_text`` of
``workflow/rules/steering.smk``, one job per steered model (``steer``: per model and activation site).

Every rule evaluates the items of one task in the conditions the command lines default to
(:data:`tomlab.bigtom.protocol.ORIGINAL_CONDITIONS`) under K interventions at once:

- ``steer``: per target task, every kind of ``steering.directions`` for every (source, target) pair of the
  workflow's ``STEER_PAIRS`` (each task on itself, the main task's directions on the others); the same
  passes at every site.
- ``alpha_sweep``: every kind of ``steering.sweep.directions`` at every alpha, on the main task.
- ``mechanism``: the plain model and every kind of ``steering.directions`` at ``steering.alpha``: the
  next-token log-probabilities of the letters ``a`` and ``b`` after each prompt, then the per-token
  activations of the first ``mechanism.n_stories`` stories' texts for the projection kind (one text a
  pass, the body only).
- ``free_text``: open prompts (:func:`tomlab.bigtom.evaluation.free_text_prompt`) of the first
  ``free_text.n_stories`` stories, plain and under every kind at every alpha.

With ``steering.shared_prefix`` (generation is greedy), one ``branch`` pass per task: each distinct prompt
prefilled once and K interventions decoded from it, at most ``max_new_tokens`` each (a **limit**: a
reply may stop earlier); the two options (or letters) are scored in the same pass from the prefix's KV
cache: a ``score`` pass of ``2 * prompts * K`` rows whose tokens are the continuations' alone.  Without it
(the token-by-token path) every intervention generates on its own through the completion cache, whose
namespace is the intervention's fingerprint: an intervention of strength 0 shares the plain namespace, so
those are counted once; and every intervention scores each item's prompt with each option whole.
The completion cache is counted empty: an earlier job's answers (the baseline's plain ones, an earlier
run's) make a rerun cheaper than the plan says.  A prompt whose branches do not fit the memory plan
runs its interventions in groups, each prefilling the prefix again: not counted.

A ``branch`` pass's ``prompt_tokens`` is the whole prompt, prefilled once; the meter
(:mod:`tomlab.backends.meter`) counts it as the prefix (all but the last token) once per prompt and the
last token once per branch, and a decoding branch pass's ``rows * branches`` sequences as its prompts.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import pandas as pd

from tomlab.bigtom.conditions import MAIN_TASK, steering_pairs
from tomlab.bigtom.evaluation import free_text_prompt
from tomlab.bigtom.protocol import ORIGINAL_CONDITIONS
from tomlab.plan.bigtom import (
    GENERATION,
    LOG_LIKELIHOOD,
    chat_of,
    distinct_prompts,
    generation_pass,
    kept_logits,
    mean_of,
    option_pairs,
    pair_tokens,
    prompt_tokens,
    score_pass,
)
from tomlab.plan.context import PlanContext
from tomlab.plan.work import JobWork, Pass
from tomlab.steering.run import eval_subset

EXPERIMENT = "steering"
#: The continuations whose next-token probabilities the mechanism view reads.
LETTERS = ("a", "b")


def namespace(alpha: float, *key: Hashable) -> Hashable:
    """The completion-cache namespace of an intervention: the plain one at strength 0, else its own."""
    return None if float(alpha) == 0.0 else (*key, float(alpha))


def branch_passes(ctx: PlanContext, model: str, items: pd.DataFrame, k: int, *, modes: Sequence[str], batch: int,
                  max_new_tokens: int, chat: bool) -> list[Pass]:
    """:func:`tomlab.steering.shared.evaluate_interventions`: K interventions branched from each distinct
    prompt's prefix, the options scored in the same pass."""
    distinct = distinct_prompts(items)
    passes = []
    if GENERATION in modes:
        passes.append(Pass("branch", rows=len(distinct), prompt_tokens=prompt_tokens(ctx, model, distinct, chat),
                           new_tokens=max_new_tokens, batch=batch, branches=k,
                           what=f"{len(distinct)} distinct prompts prefilled once, {k} interventions decoded from "
                                f"each, at most {max_new_tokens} new tokens (a limit)"))
    if LOG_LIKELIHOOD in modes:
        first = items.drop_duplicates("prompt")
        prompts, conts = option_pairs(first)
        p, c = pair_tokens(ctx, model, prompts, conts, chat)
        if GENERATION not in modes:
            passes.append(Pass("branch", rows=len(distinct), prompt_tokens=mean_of(p[::2]), batch=batch, branches=k,
                               what=f"{len(distinct)} distinct prompts prefilled once for scoring, {k} interventions"))
        passes.append(Pass("score", rows=len(conts) * k, prompt_tokens=mean_of(c), batch=batch * k,
                           logits=kept_logits(c), context=mean_of(p[::2]),
                           what=f"both options of each prompt under {k} interventions, scored from the shared "
                                "prefix (the options' tokens only)"))
    return passes


def stepwise_passes(ctx: PlanContext, model: str, items: pd.DataFrame, spaces: Sequence[Hashable], *,
                    modes: Sequence[str], batch: int, max_new_tokens: int, chat: bool) -> list[Pass]:
    """:func:`tomlab.steering.run.evaluate_steered` once per intervention: generation once per cache
    namespace, the options scored whole under every intervention."""
    passes = []
    if GENERATION in modes:
        n = len(set(spaces))
        passes.append(generation_pass(ctx, model, distinct_prompts(items), chat=chat, new_tokens=max_new_tokens,
                                      batch=batch, copies=n,
                                      what=f"generation under {n} interventions (distinct cache namespaces), one "
                                           f"after another, at most {max_new_tokens} new tokens (a limit)"))
    if LOG_LIKELIHOOD in modes:
        prompts, conts = option_pairs(items)
        passes.append(score_pass(ctx, model, prompts, conts, chat=chat, batch=batch, copies=len(spaces),
                                 what=f"both options of each item under {len(spaces)} interventions, whole"))
    return passes


def steered_passes(ctx: PlanContext, model: str, items: pd.DataFrame, spaces: Sequence[Hashable], *,
                   max_new_tokens: int | None = None, modes: Sequence[str] | None = None) -> list[Pass]:
    """The passes of :func:`tomlab.steering.run.evaluate_many` on ``items``, one intervention per entry of
    ``spaces`` (its cache namespace), with the evaluation's batch, decode limit, modes and template."""
    ev = ctx.section("evaluation")
    kw = {"modes": list(ev["modes"]) if modes is None else modes, "batch": int(ev["batch_size"]),
          "max_new_tokens": int(ev["max_new_tokens"]) if max_new_tokens is None else max_new_tokens,
          "chat": chat_of(ctx)}
    if ctx.section(EXPERIMENT)["shared_prefix"]:
        return branch_passes(ctx, model, items, len(spaces), **kw)
    return stepwise_passes(ctx, model, items, spaces, **kw)


def _subset(ctx: PlanContext, task: str, what: str) -> pd.DataFrame:
    return eval_subset(ctx.eval_items, task, ORIGINAL_CONDITIONS, what)


def steer(ctx: PlanContext, model: str) -> list[JobWork]:
    """One job per activation site, each with the same passes (the site changes where, not what)."""
    st = ctx.section(EXPERIMENT)
    kinds = list(st["directions"])
    pairs = steering_pairs(list(ctx.section("probing")["tasks"]))
    passes: list[Pass] = []
    for target in dict.fromkeys(t for _, t in pairs):
        spaces = [namespace(st["alpha"], kind, source) for kind in kinds for source, t in pairs if t == target]
        passes += steered_passes(ctx, model, _subset(ctx, target, "evaluation"), spaces)
    return [JobWork(EXPERIMENT, "steer", f"{model}/{site}", model, loads=1, passes=tuple(passes))
            for site in ctx.section("activations")["sites"]]


def alpha_sweep(ctx: PlanContext, model: str) -> JobWork:
    sweep = ctx.section(EXPERIMENT)["sweep"]
    spaces = [namespace(a, kind) for kind in dict.fromkeys(sweep["directions"]) for a in sweep["alphas"]]
    passes = steered_passes(ctx, model, _subset(ctx, MAIN_TASK, "sweep"), spaces)
    return JobWork(EXPERIMENT, "alpha_sweep", model, model, loads=1, passes=tuple(passes))


def _first_stories(items: pd.DataFrame, n: int) -> pd.DataFrame:
    keep = sorted(items["story_id"].unique())[:n]
    return items[items["story_id"].isin(keep)].reset_index(drop=True)


def mechanism(ctx: PlanContext, model: str) -> JobWork:
    st = ctx.section(EXPERIMENT)
    kinds = list(dict.fromkeys(st["directions"]))
    sub = _subset(ctx, MAIN_TASK, "mechanism")
    k = len(kinds) + 1  # the plain model (strength 0), then every kind
    batch, chat = int(ctx.section("evaluation")["batch_size"]), chat_of(ctx)
    prompts = [str(p) for p in sub["prompt"] for _ in LETTERS]
    conts = list(LETTERS) * len(sub)
    p, c = pair_tokens(ctx, model, prompts, conts, chat)
    if st["shared_prefix"]:
        passes = [Pass("branch", rows=len(sub), prompt_tokens=mean_of(p[::2]), batch=batch, branches=k,
                       what=f"each item's prompt prefilled once, {k} interventions (the plain model first)"),
                  Pass("score", rows=len(conts) * k, prompt_tokens=mean_of(c), batch=batch * k,
                       logits=kept_logits(c), context=mean_of(p[::2]),
                       what=f"the letters a and b after each prompt under {k} interventions, from the shared prefix")]
    else:
        passes = [Pass("score", rows=len(conts) * k, prompt_tokens=mean_of(p + c), batch=batch,
                       logits=kept_logits(c),
                       what=f"the letters a and b after each prompt under {k} interventions (the plain model first)")]
    if st["mechanism"]["projection_direction"] in kinds:  # else the command refuses before any pass
        shown = _first_stories(sub, int(st["mechanism"]["n_stories"]))
        # the text tomlab.steering.run.mechanism projects (written there inline, with no function of its own)
        texts = [f"Story: {s}\nQuestion: {q}" for s, q in zip(shown["story"], shown["question"])]
        passes.append(Pass("score", rows=len(texts), prompt_tokens=ctx.tokens(model, texts), batch=1, logits=0,
                           what="per-token activations of the shown stories' texts, one a pass"))
    return JobWork(EXPERIMENT, "mechanism", model, model, loads=1, passes=tuple(passes))


def free_text(ctx: PlanContext, model: str) -> JobWork:
    ft = ctx.section(EXPERIMENT)["free_text"]
    sub = _first_stories(_subset(ctx, MAIN_TASK, "free-text"), int(ft["n_stories"]))
    prompts = sub.assign(prompt=[free_text_prompt(s, q) for s, q in zip(sub["story"], sub["question"])])
    spaces = [None] + [namespace(a, kind) for kind in dict.fromkeys(ft["directions"]) for a in ft["alphas"]]
    passes = steered_passes(ctx, model, prompts, spaces, max_new_tokens=int(ft["max_new_tokens"]),
                            modes=[GENERATION])
    return JobWork(EXPERIMENT, "free_text", model, model, loads=1, passes=tuple(passes))


def jobs(ctx: PlanContext) -> list[JobWork]:
    """Every job of ``steer`` (per model and site), ``alpha_sweep``, ``mechanism`` and ``free_text``."""
    out: list[JobWork] = []
    for model in ctx.models_of(EXPERIMENT):
        out += steer(ctx, model)
        out += [alpha_sweep(ctx, model), mechanism(ctx, model), free_text(ctx, model)]
    return out

