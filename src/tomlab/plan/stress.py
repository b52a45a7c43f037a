"""The stress tests' model jobs, counted (``workflow/rules/stress.smk``, experiment ``stress``).

Three rules load a model, once per stress-tested model (``stress.panel``):

- ``stress_extract`` (one job per shift: every perturbation, then ``generated``): ``tomlab extract`` of the
  shift's probe samples at the first capture site, one forward pass of the body per sample
  (:func:`tomlab.backends.activations.extract_activations`), ``activations.batch_size`` at a time;
- ``stress_minds_extract``: the same on the several-minds stories' probe samples;
- ``stress_behaviour``: ``tomlab stress-behaviour`` answers the stress items (original, perturbed, the
  names draws and the several-minds items) plain and steered, two interventions (the plain model is the
  intervention at strength zero) in the evaluation's modes: with ``steering.shared_prefix`` each distinct
  prompt is prefilled once and both interventions branch from it
  (:func:`tomlab.steering.shared.evaluate_interventions`), else one
  :func:`tomlab.steering.run.evaluate_steered` per intervention behind the completion cache.

The story sets these rules read are built into ``ctx._scratch / "stress"`` with the library calls of the
upstream rules' commands (``stress-shift``, ``generate-stories``, ``bigtom-conditions``, ``split``,
``stress-samples``, ``stress-minds``, ``stress-items``), so the rows are exact.  Token counts are the
model's tokenizer's where it is at hand (prompts rendered as the backend renders them: the chat template
or plain text with the tokenizer's special tokens), else :data:`~tomlab.plan.context.CHARS_PER_TOKEN`
characters a token (the model is then named in ``ctx.estimated``).

Limits rather than counts: decoded tokens are ``max_new_tokens`` per sequence (a reply stops earlier at an
end-of-sequence token); the plan assumes an empty completion cache (a rerun's hits ask nothing).

:func:`answer_passes` and :func:`extract_pass` are shared with :mod:`tomlab.plan.bench`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomlab.bigtom.conditions import MAIN_TASK
from tomlab.plan.context import CHARS_PER_TOKEN, PlanContext
from tomlab.plan.work import JobWork, Pass

EXPERIMENT = "stress"
#: The interventions stress-behaviour answers under: the plain model (strength zero), then the direction.
BEHAVIOUR_INTERVENTIONS = 2


# --- tokens as the backend sees them ----------------------------------------------------------------

class CharTokenizer:
    """A stand-in tokenizer where the model's is not at hand: ``CHARS_PER_TOKEN`` characters a token, no
    special tokens and no chat template (prompts counted as plain text)."""

    chat_template = None
    name_or_path = "an estimate"

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [0] * max(1, round(len(text) / CHARS_PER_TOKEN))}


def tokenizer_of(ctx: PlanContext, model: str) -> Any:
    """The model's tokenizer, or a :class:`CharTokenizer` (and the model named in ``ctx.estimated``)."""
    tok = ctx.tokenizer(model)
    if tok is None:
        ctx.estimated.add(model)
        return CharTokenizer()
    return tok


def _template(tok: Any, chat: bool) -> bool:
    """Whether prompts go through the chat template (asked, and the tokenizer has one), as
    :func:`tomlab.backends.models.uses_chat_template` decides without its warning."""
    from tomlab.backends.models import has_chat_template

    return bool(chat) and has_chat_template(tok)


def generation_ids(tok: Any, prompts: Sequence[str], chat: bool) -> list[list[int]]:
    """Each prompt's token ids as :meth:`tomlab.backends.lm.TransformersLM.encode` feeds it."""
    from tomlab.backends.models import apply_chat

    template = _template(tok, chat)
    texts = [apply_chat(tok, [{"role": "user", "content": p}]) if template else p for p in prompts]
    return [list(tok(t, add_special_tokens=not template)["input_ids"]) for t in texts]


def scoring_pairs(tok: Any, prompts: Sequence[str], options: Sequence[tuple[str, str]],
                  chat: bool) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Each prompt's scoring ids and its two options' continuation ids, as
    :func:`tomlab.backends.likelihood.scoring_ids` tokenises them."""
    from tomlab.backends.likelihood import scoring_ids

    template = _template(tok, chat)
    ids: list[list[int]] = []
    conts: list[list[list[int]]] = [[], []]
    for prompt, pair in zip(prompts, options):
        for j, option in enumerate(pair):
            prompt_ids, cont = scoring_ids(tok, prompt, option, template)
            if j == 0:
                ids.append(prompt_ids)
            conts[j].append(cont)
    return ids, conts


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def extract_pass(ctx: PlanContext, model: str, prompts: Sequence[str], batch_size: int, what: str) -> Pass:
    """One forward pass of the model's body per prompt, no logits kept (activation extraction)."""
    return Pass("score", rows=len(prompts), prompt_tokens=ctx.tokens(model, list(prompts)), batch=int(batch_size),
                logits=0, what=what)


# --- answering evaluation items ----------------------------------------------------------------------

@dataclass(frozen=True)
class Answering:
    """How a command answers evaluation items (its ``--batch-size``, ``--max-new-tokens``, ``--modes``,
    ``--chat-template``, ``--shared-prefix`` flags, and whether a completion cache stands in front)."""

    batch_size: int
    max_new_tokens: int
    modes: tuple[str, ...]
    chat: bool | None = None
    shared_prefix: bool = True
    cached: bool = False


def answering(ctx: PlanContext, *, cached: bool) -> Answering:
    """The evaluation's settings as the rules pass them (``steering.shared_prefix`` for the steered ones)."""
    ev = ctx.section("evaluation")
    return Answering(batch_size=int(ev["batch_size"]), max_new_tokens=int(ev["max_new_tokens"]),
                     modes=tuple(ev["modes"]), chat=ev.get("chat_template"),
                     shared_prefix=bool(ctx.section("steering")["shared_prefix"]), cached=cached)


def items_chat(items: pd.DataFrame, chat: bool | None) -> bool:
    """The chat-template choice a command makes for ``items`` (its flag, else the items' protocol's)."""
    from tomlab.bigtom.evaluation import items_protocol
    from tomlab.bigtom.protocol import uses_chat_template

    return uses_chat_template(items_protocol(items), chat)


def answer_passes(ctx: PlanContext, model: str, items: pd.DataFrame, interventions: int, how: Answering,
                  label: str) -> list[Pass]:
    """The passes of answering ``items`` under ``interventions`` interventions of one site.

    Shared prefixes: each distinct prompt prefilled once, every intervention decoded from it (``branch``),
    the two options scored as continuations on the same prefix (``score``, continuation tokens only); a
    second prefix pass when the scoring ids are not the generation's (or nothing is generated).  The
    token-by-token path: each intervention generates every prompt (each distinct one behind a completion
    cache) and scores both options after every item's prompt (whole sequences).
    """
    prompts = [str(p) for p in items["prompt"]]
    if not prompts or interventions < 1:
        return []
    tok = tokenizer_of(ctx, model)
    chat = items_chat(items, how.chat)
    if how.shared_prefix:
        return _branch_passes(tok, items, prompts, chat, interventions, how, label)
    return _stepwise_passes(tok, items, prompts, chat, interventions, how, label)


def _branch_passes(tok: Any, items: pd.DataFrame, prompts: list[str], chat: bool, k: int, how: Answering,
                   label: str) -> list[Pass]:
    distinct = list(dict.fromkeys(prompts))
    generation, likelihood = "generation" in how.modes, "log-likelihood" in how.modes
    passes: list[Pass] = []
    gen_ids = generation_ids(tok, distinct, chat) if generation else []
    if generation:
        passes.append(Pass("branch", rows=len(distinct), prompt_tokens=_mean([len(i) for i in gen_ids]),
                           new_tokens=how.max_new_tokens, batch=how.batch_size, branches=k,
                           what=f"{label}: each distinct prompt prefilled once, {k} interventions decoded from it "
                                f"(max_new_tokens, a limit)"))
    if likelihood:
        first = {p: r for r, p in reversed(list(enumerate(prompts)))}
        options = [(str(items["option_a"].iloc[first[p]]), str(items["option_b"].iloc[first[p]])) for p in distinct]
        ids, conts = scoring_pairs(tok, distinct, options, chat)
        if not (generation and ids == gen_ids):
            passes.append(Pass("branch", rows=len(distinct), prompt_tokens=_mean([len(i) for i in ids]), new_tokens=0,
                               batch=how.batch_size, branches=k,
                               what=f"{label}: the scoring branches' shared prefix (nothing decoded)"))
        lengths = [len(c) for per_set in conts for c in per_set]
        passes.append(Pass("score", rows=len(lengths) * k, prompt_tokens=_mean(lengths), batch=how.batch_size * k,
                           logits=max(lengths) + 1, context=_mean([len(i) for i in ids]),
                           what=f"{label}: both options scored after the shared prefix under {k} interventions "
                                f"(continuation tokens)"))
    return passes


def _stepwise_passes(tok: Any, items: pd.DataFrame, prompts: list[str], chat: bool, k: int, how: Answering,
                     label: str) -> list[Pass]:
    passes: list[Pass] = []
    if "generation" in how.modes:
        asked = list(dict.fromkeys(prompts)) if how.cached else prompts
        ids = generation_ids(tok, asked, chat)
        passes.append(Pass("generate", rows=len(asked) * k, prompt_tokens=_mean([len(i) for i in ids]),
                           new_tokens=how.max_new_tokens, batch=how.batch_size,
                           what=f"{label}: {k} interventions, each generating every "
                                f"{'distinct prompt' if how.cached else 'item'} (max_new_tokens, a limit)"))
    if "log-likelihood" in how.modes:
        seen: dict[tuple[str, str, str], tuple[int, int, int]] = {}
        lengths: list[int] = []
        longest = 0
        for p, a, b in zip(prompts, items["option_a"].astype(str), items["option_b"].astype(str)):
            if (p, a, b) not in seen:
                ids, conts = scoring_pairs(tok, [p], [(a, b)], chat)
                seen[p, a, b] = (len(ids[0]), len(conts[0][0]), len(conts[1][0]))
            n, ca, cb = seen[p, a, b]
            lengths += [n + ca, n + cb]
            longest = max(longest, ca, cb)
        passes.append(Pass("score", rows=len(lengths) * k, prompt_tokens=_mean(lengths), batch=how.batch_size,
                           logits=longest + 1,
                           what=f"{label}: {k} interventions, each scoring both options after every item's prompt"))
    return passes


# --- the story sets the stress rules read -------------------------------------------------------------

def _root(ctx: PlanContext) -> Path:
    return ctx._scratch / EXPERIMENT


def shifts(ctx: PlanContext) -> list[str]:
    """The shifts stress_extract runs on: every perturbation, then the generated stories (SHIFTS)."""
    return [*ctx.section("stress")["perturbations"], "generated"]


def behaviour_sets(ctx: PlanContext) -> list[str]:
    """The perturbed item sets of stress_items (BEHAVIOUR_SETS): the names draws replace ``names``."""
    stress = ctx.section("stress")
    symbolic = [f"names@{i}" for i in range(int(stress["behaviour"]["instantiations"]))]
    return [p for p in stress["perturbations"] if p != "names" or not symbolic] + symbolic


def shift_raw(ctx: PlanContext, shift: str) -> Path:
    """The raw stories of a shift (stress_perturb, stress_symbolic or stress_generated), written once."""
    from tomlab import io
    from tomlab.bigtom.raw import write_raw
    from tomlab.bigtom.stories import write_generated
    from tomlab.stress.perturb import perturb_frame
    from tomlab.stress.transfer import origin_table

    stress = ctx.section("stress")
    out = _root(ctx) / shift / "raw_stories.csv"
    if out.is_file():
        return out
    if shift == "generated":
        write_generated(out, n=int(stress["generated"]["n"]), seed=int(stress["generated"]["seed"]))
        return out
    kind, seed = ("names", int(shift.removeprefix("names@"))) if shift.startswith("names@") else (shift, stress["seed"])
    shifted, _ = perturb_frame(ctx.raw, kind, seed=int(seed))
    if shifted.empty:
        raise ValueError(f"config key 'stress.perturbations': {kind!r} applies to none of the {len(ctx.raw)} stories")
    io.write_parquet(out.parent / "origin.parquet", origin_table(len(ctx.raw), shifted["story_id"].tolist()))
    write_raw(shifted, out)
    return out


def shift_origin(ctx: PlanContext, shift: str) -> pd.DataFrame:
    """Where each original story went in a perturbed shift (its origin table)."""
    shift_raw(ctx, shift)
    return pd.read_parquet(_root(ctx) / shift / "origin.parquet")


def shift_conditions(ctx: PlanContext, shift: str) -> Path:
    """A shift's condition folder (stress_conditions)."""
    from tomlab.bigtom.conditions import conditions_from_csv

    out = _root(ctx) / shift / "conditions"
    if not out.is_dir():
        conditions_from_csv(shift_raw(ctx, shift), out)
    return out


def stress_is_val(ctx: PlanContext) -> np.ndarray:
    """The stress tests' own split of the main task's probe samples (stress_split)."""
    from tomlab.probing.probes import split_train_val

    stress = ctx.section("stress")
    return split_train_val(ctx.probe_samples(MAIN_TASK), val_fraction=float(ctx.section("split")["val_fraction"]),
                           mode=str(stress["split"]), seed=int(stress["seed"]))


def shift_samples(ctx: PlanContext, shift: str) -> pd.DataFrame:
    """A shift's probe samples (stress_samples): a perturbation's paired with the original validation samples."""
    from tomlab.stress.transfer import shifted_samples

    statements = str(ctx.section("probing")["statements"])
    conditions = str(shift_conditions(ctx, shift))
    if shift == "generated":
        return shifted_samples(conditions, task=MAIN_TASK, statements=statements)
    return shifted_samples(conditions, task=MAIN_TASK, statements=statements, original=ctx.probe_samples(MAIN_TASK),
                           is_val=stress_is_val(ctx), origin=shift_origin(ctx, shift))


def minds(ctx: PlanContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The several-minds stories' probe samples and evaluation items (stress_minds)."""
    from tomlab.stress.minds import generate_minds, minds_items, minds_probe_samples

    stress, ev = ctx.section("stress"), ctx.section("evaluation")
    stories = generate_minds(int(stress["minds"]["n"]), int(stress["seed"]))
    items = minds_items(stories.head(int(stress["minds"]["eval_stories"])), protocol=str(ev["protocol"]),
                        seed=int(ev["seed"]), parser=ev.get("parser"))
    return minds_probe_samples(stories), items


def behaviour_items(ctx: PlanContext, minds_items: pd.DataFrame | None = None) -> pd.DataFrame:
    """The items stress-behaviour answers (stress_items)."""
    from tomlab.bigtom.conditions import split_stories
    from tomlab.stress.behaviour import stress_items

    ev, stress = ctx.section("evaluation"), ctx.section("stress")
    eval_ids, _ = split_stories(len(ctx.raw), float(ctx.section("split")["eval_fraction"]))
    sets = {s: (str(shift_conditions(ctx, s)), shift_origin(ctx, s)) for s in behaviour_sets(ctx)}
    if minds_items is None:
        minds_items = minds(ctx)[1]
    return stress_items(str(ctx.conditions_dir), eval_ids[: int(stress["behaviour"]["max_stories"])], sets,
                        minds=minds_items, protocol=str(ev["protocol"]), seed=int(ev["seed"]), parser=ev.get("parser"))


# --- the jobs -----------------------------------------------------------------------------------------

def jobs(ctx: PlanContext) -> list[JobWork]:
    """Every model job of stress.smk: stress_extract per (model, shift), stress_minds_extract and
    stress_behaviour per model."""
    models = ctx.models_of(EXPERIMENT)
    if not models:
        return []
    batch = int(ctx.section("activations")["batch_size"])
    samples = {s: shift_samples(ctx, s)["prompt"].astype(str).tolist() for s in shifts(ctx)}
    minds_samples, minds_items = minds(ctx)
    items = behaviour_items(ctx, minds_items)
    how = answering(ctx, cached=True)  # the rule passes the completion cache
    out: list[JobWork] = []
    for model in models:
        for shift, prompts in samples.items():
            out.append(JobWork(EXPERIMENT, "stress_extract", f"{model}/{shift}", model, 1,
                               (extract_pass(ctx, model, prompts, batch, f"{shift} probe samples, one body pass each"),)))
        out.append(JobWork(EXPERIMENT, "stress_minds_extract", model, model, 1,
                           (extract_pass(ctx, model, minds_samples["prompt"].astype(str).tolist(), batch,
                                         "several-minds probe samples, one body pass each"),)))
        passes = answer_passes(ctx, model, items, BEHAVIOUR_INTERVENTIONS, how, "stress items, plain and steered")
        out.append(JobWork(EXPERIMENT, "stress_behaviour", model, model, 1, tuple(passes)))
    return out

