"""Running the model under an intervention: steered evaluation, steering across task pairs, the
alpha sweep, mechanism views (letter probabilities, per-token projections) and free text.

Each experiment is one function taking the loaded model and its inputs and returning tables; the
command line only parses flags, loads the inputs and writes what comes back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab.backends.build import generator
from tomlab.backends.models import LoadedModel
from tomlab.steering.directions import DirectionSet
from tomlab.steering.intervention import Intervention, steered_generator


def eval_subset(items: pd.DataFrame, task: str, conditions: Sequence[str], what: str) -> pd.DataFrame:
    """The rows of ``items`` for ``task`` and ``conditions`` (an error naming ``what`` when there are none)."""
    sub = items[(items["task"] == task) & items["condition"].isin(list(conditions))]
    if sub.empty:
        raise ValueError(f"the items have no {what} rows for task {task!r} and conditions {list(conditions)}")
    return sub.reset_index(drop=True)


def _pick(sets: Mapping[str, DirectionSet], kind: str, where: str) -> DirectionSet:
    if kind not in sets:
        raise ValueError(f"{where} has no direction kind {kind!r} (it has {sorted(sets)})")
    return sets[kind]


def evaluate_steered(
    lm: LoadedModel,
    items: pd.DataFrame,
    generator: Any,
    config: Any,
    intervention: Intervention,
    *,
    cache_dir: str | Any | None = None,
    modes: Sequence[str] = ("generation", "log-likelihood"),
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Score ``items`` with ``intervention`` active (see :func:`tomlab.bigtom.evaluation.evaluate_items`).

    ``generator`` is the plain :class:`tomlab.backends.lm.TransformersLM` over ``lm``; completions
    are cached under ``cache_dir`` in the namespace ``intervention.fingerprint``, so an unchanged
    rerun generates nothing.  Returns the scored items (with ``alpha`` and ``site`` columns) and
    the cache counters.
    """
    from tomlab.backends.lm import CachedLM
    from tomlab.bigtom.evaluation import evaluate_items

    lm_cached = steered_generator(generator, cache_dir, intervention)
    with intervention.hook(lm) as hook:
        scored = evaluate_items(lm, items, lm_cached, config, modes=modes, batch_size=batch_size,
                                intervention=hook, progress=progress)
    counters = ({"cache_hits": lm_cached.hits, "cache_misses": lm_cached.misses}
                if isinstance(lm_cached, CachedLM) else {})
    return scored.assign(alpha=intervention.alpha, site=intervention.site), counters


def evaluate_many(
    lm: LoadedModel,
    items: pd.DataFrame,
    generator: Any,
    config: Any,
    interventions: Sequence[Intervention],
    *,
    shared_prefix: bool = True,
    cache_dir: str | Any | None = None,
    modes: Sequence[str] = ("generation", "log-likelihood"),
    batch_size: int = 8,
) -> tuple[list[pd.DataFrame], dict[str, int]]:
    """Score ``items`` under each intervention: with ``shared_prefix``, every intervention branches
    from one pass over the prompts (:func:`tomlab.steering.shared.evaluate_interventions`); without,
    one :func:`evaluate_steered` after another (the token-by-token path).  Same frames either way."""
    if shared_prefix and config.greedy:
        from tomlab.steering.shared import evaluate_interventions

        return evaluate_interventions(lm, items, generator, config, interventions, cache_dir=cache_dir,
                                      modes=modes, batch_size=batch_size)
    frames, counters = [], {"cache_hits": 0, "cache_misses": 0}
    for intervention in interventions:
        scored, count = evaluate_steered(lm, items, generator, config, intervention, cache_dir=cache_dir,
                                         modes=modes, batch_size=batch_size)
        frames.append(scored)
        for key in counters:
            counters[key] += count.get(key, 0)
    return frames, counters


def token_projections(lm: LoadedModel, prompt: str, intervention: Intervention) -> pd.DataFrame:
    """Per token of ``prompt``: each head of ``intervention`` projected on its direction, at its site.

    One row per (position, head) with ``position``, ``token``, ``layer``, ``head``, ``projection``
    (the dot product with the unit direction) and ``z`` (projection divided by the head's sigma, so
    heads are comparable: an intervention of strength alpha moves ``z`` by alpha).
    """
    from tomlab.backends.activations import token_activations

    acts, tokens = token_activations(lm, prompt, site=intervention.site)
    theta, sig = intervention.directions, intervention.sigma
    rows = []
    for layer, head in intervention.heads:
        proj = acts[:, layer, head, :].astype(np.float64) @ theta[layer, head]
        scale = sig[layer, head] if sig[layer, head] > 0 else np.nan
        for pos, (tok, value) in enumerate(zip(tokens, proj)):
            rows.append({"position": pos, "token": tok, "layer": layer, "head": head,
                         "projection": float(value), "z": float(value / scale)})
    return pd.DataFrame(rows)


def steer_pairs(
    lm: LoadedModel,
    items: pd.DataFrame,
    directions: Mapping[str, Mapping[str, DirectionSet]],
    activations: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    kinds: Sequence[str] | str,
    config: Any,
    *,
    site: str,
    alpha: float,
    conditions: Sequence[str],
    completion_cache: str | Any | None = None,
    modes: Sequence[str] = ("generation", "log-likelihood"),
    batch_size: int = 8,
    shared_prefix: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Evaluate under each kind of intervention for each ``(source, target)`` task pair.

    The directions and heads are ``directions[source][kind]``, sigma their spread over
    ``activations[target]`` (the target task's probe activations), the items those of ``target``
    in ``conditions``.  Every intervention on one target's items is evaluated together (shared
    prefixes, see :func:`evaluate_many`).  Returns the scored items of every kind and pair (columns
    ``source_task``, ``direction``, ``top_k``, ``alpha`` and ``site`` added) and ``{"usage",
    "cache_hits", "cache_misses"}`` summed over them.
    """
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for source, target in pairs:
        if source not in directions or target not in activations:
            raise ValueError(f"the pair {source}:{target} needs directions for {source!r} and activations "
                             f"for {target!r}")
        for kind in kinds:
            _pick(directions[source], kind, f"the direction set of {source!r}")
    plain = generator(lm, batch_size)
    by_target: dict[str, list[tuple[str, str, Intervention, int]]] = {}
    for kind in kinds:
        for source, target in pairs:
            entry = directions[source][kind]
            intervention = entry.intervention(site, entry.spread(activations[target]), alpha)
            by_target.setdefault(target, []).append((kind, source, intervention, len(entry.heads)))
    frames: dict[tuple[str, str, str], pd.DataFrame] = {}
    counters = {"cache_hits": 0, "cache_misses": 0}
    for target, runs in by_target.items():
        subset = eval_subset(items, target, conditions, "evaluation")
        scored, count = evaluate_many(lm, subset, plain, config, [iv for _, _, iv, _ in runs],
                                      shared_prefix=shared_prefix, cache_dir=completion_cache, modes=modes,
                                      batch_size=batch_size)
        for (kind, source, _, top_k), frame in zip(runs, scored):
            frames[(kind, source, target)] = frame.assign(source_task=source, direction=kind, top_k=top_k)
        for key in counters:
            counters[key] += count.get(key, 0)
    ordered = [frames[(kind, source, target)] for kind in kinds for source, target in pairs]  # kinds, then pairs
    return pd.concat(ordered, ignore_index=True), {"usage": plain.usage.as_dict(), **counters}


def alpha_sweep(
    lm: LoadedModel,
    items: pd.DataFrame,
    sets: Mapping[str, DirectionSet],
    kinds: Sequence[str],
    alphas: Sequence[float],
    acts: np.ndarray,
    config: Any,
    *,
    task: str,
    site: str,
    conditions: Sequence[str],
    completion_cache: str | Any | None = None,
    modes: Sequence[str] = ("generation", "log-likelihood"),
    batch_size: int = 8,
    n_boot: int = 1000,
    seed: int = 0,
    shared_prefix: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Accuracy against intervention strength: every kind at every alpha on ``task``'s items.

    Sigma is each kind's spread over ``acts``.  Returns the scored items (with ``direction``,
    ``alpha`` and ``site``), the accuracy table by direction, alpha, task, condition and mode
    (bootstrap ``n_boot``, ``seed``) and ``{"usage"}``.
    """
    from tomlab.bigtom.evaluation import mode_tables

    chosen = {kind: _pick(sets, kind, "the direction set") for kind in kinds}
    sub = eval_subset(items, task, conditions, "sweep")
    plain = generator(lm, batch_size)
    runs = []
    for kind, entry in chosen.items():
        base = entry.intervention(site, entry.spread(acts), 0.0)
        runs += [(kind, base.with_alpha(alpha)) for alpha in alphas]
    frames, _ = evaluate_many(lm, sub, plain, config, [iv for _, iv in runs], shared_prefix=shared_prefix,
                              cache_dir=completion_cache, modes=modes, batch_size=batch_size)
    scored = pd.concat([frame.assign(direction=kind) for (kind, _), frame in zip(runs, frames)], ignore_index=True)
    table = mode_tables(scored, by=("direction", "alpha", "task", "condition"), n_boot=n_boot, seed=seed)
    return scored, table, {"usage": plain.usage.as_dict()}


def mechanism(
    lm: LoadedModel,
    items: pd.DataFrame,
    sets: Mapping[str, DirectionSet],
    kinds: Sequence[str],
    acts: np.ndarray,
    *,
    task: str,
    site: str,
    alpha: float,
    conditions: Sequence[str],
    projection_kind: str,
    n_stories: int = 2,
    batch_size: int = 8,
    chat_template: bool = True,
    shared_prefix: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The mechanism views of each kind of intervention on ``task``'s items.

    Returns the letter probabilities (the items' ``p_correct`` / ``p_wrong`` without and with the
    intervention, and their change) and, for ``projection_kind``, the per-token projections of
    the first ``n_stories`` stories' texts on the directions (:func:`token_projections`).
    """
    from tomlab.backends.likelihood import letter_probs

    chosen = {kind: _pick(sets, kind, "the direction set") for kind in kinds}
    if projection_kind not in chosen:
        raise ValueError(f"the projection kind {projection_kind!r} is not among the kinds {list(kinds)}")
    sub = eval_subset(items, task, conditions, "mechanism")
    interventions = {kind: entry.intervention(site, entry.spread(acts), alpha) for kind, entry in chosen.items()}
    if shared_prefix:
        from tomlab.steering.shared import letter_probs_interventions

        first = next(iter(interventions.values()))
        plain, *rest = letter_probs_interventions(lm, sub, [first.with_alpha(0.0), *interventions.values()],
                                                  batch_size=batch_size, chat_template=chat_template)
        shared = dict(zip(interventions, rest))
    else:
        plain = letter_probs(lm, sub, batch_size=batch_size, chat_template=chat_template)
    letters, projections = [], []
    for kind, intervention in interventions.items():
        if shared_prefix:
            steered = shared[kind]
        else:
            with intervention.hook(lm) as hook:
                steered = letter_probs(lm, sub, batch_size=batch_size, chat_template=chat_template,
                                       intervention=hook)
        letters.append(plain[["item_id", "story_id", "task", "condition", "answer_letter"]].assign(
            direction=kind, alpha=alpha, site=site,
            p_correct_plain=plain["p_correct"].to_numpy(), p_wrong_plain=plain["p_wrong"].to_numpy(),
            p_correct_steered=steered["p_correct"].to_numpy(), p_wrong_steered=steered["p_wrong"].to_numpy(),
            delta_correct=steered["p_correct"].to_numpy() - plain["p_correct"].to_numpy(),
            delta_wrong=steered["p_wrong"].to_numpy() - plain["p_wrong"].to_numpy(),
        ))
        if kind == projection_kind:
            for story_id in sorted(sub["story_id"].unique())[:n_stories]:
                for row in sub[sub["story_id"] == story_id].itertuples():
                    text = f"Story: {row.story}\nQuestion: {row.question}"
                    proj = token_projections(lm, text, intervention)
                    projections.append(proj.assign(story_id=int(story_id), condition=row.condition, direction=kind))
    if not projections:
        raise ValueError(f"no story to project on the {projection_kind!r} directions (n_stories={n_stories})")
    return pd.concat(letters, ignore_index=True), pd.concat(projections, ignore_index=True)


def free_text(
    lm: LoadedModel,
    items: pd.DataFrame,
    sets: Mapping[str, DirectionSet],
    kinds: Sequence[str],
    alphas: Sequence[float],
    acts: np.ndarray,
    config: Any,
    *,
    task: str,
    site: str,
    conditions: Sequence[str],
    n_stories: int = 3,
    batch_size: int = 8,
    completion_cache: str | Any | None = None,
    shared_prefix: bool = True,
) -> pd.DataFrame:
    """Open answers to the first ``n_stories`` stories of ``task``, plain and under every kind at every alpha.

    One row per (setting, item) with ``story_id``, ``task``, ``condition``, ``direction``
    (``"none"`` for the plain model), ``alpha``, ``site``, ``prompt``, ``completion``, ``correct``
    and ``wrong``.  ``config`` is the :class:`tomlab.backends.lm.GenerationConfig`.
    """
    from tomlab.bigtom.evaluation import free_text_prompt

    chosen = {kind: _pick(sets, kind, "the direction set") for kind in kinds}
    sub = eval_subset(items, task, conditions, "free-text")
    keep = sorted(sub["story_id"].unique())[:n_stories]
    sub = sub[sub["story_id"].isin(keep)].reset_index(drop=True)
    prompts = [free_text_prompt(s, q) for s, q in zip(sub["story"], sub["question"])]
    plain = generator(lm, batch_size)
    settings: list[tuple[str, float, Intervention | None]] = [("none", 0.0, None)]
    for kind, entry in chosen.items():
        base = entry.intervention(site, entry.spread(acts), 0.0)
        settings += [(kind, float(alpha), base.with_alpha(alpha)) for alpha in alphas]
    steered_ones = [iv for _, _, iv in settings if iv is not None]
    if shared_prefix and config.greedy and steered_ones:
        from tomlab.steering.shared import generate_interventions

        # the plain model is the first kind at strength zero (it shares the plain cache namespace)
        ivs = [steered_ones[0].with_alpha(0.0) if iv is None else iv for _, _, iv in settings]
        texts, _, _ = generate_interventions(lm, plain, ivs, prompts, config, completion_cache, batch_size, True)
        completions = [[text[p] for p in prompts] for text in texts]
    else:
        completions = []
        for _, _, intervention in settings:
            steered = steered_generator(plain, completion_cache, intervention)
            with contextlib.nullcontext() if intervention is None else intervention.hook(lm):
                completions.append([c.text for c in steered.generate(prompts, config)])
    rows = []
    for (kind, alpha, _), texts_k in zip(settings, completions):
        for row, prompt, completion in zip(sub.itertuples(), prompts, texts_k):
            rows.append({"story_id": int(row.story_id), "task": row.task, "condition": row.condition,
                         "direction": kind, "alpha": alpha, "site": site, "prompt": prompt,
                         "completion": completion, "correct": row.correct, "wrong": row.wrong})
    return pd.DataFrame(rows)
