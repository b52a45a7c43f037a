"""Steered evaluation with shared prefixes: every intervention on the same items in one pass over their
prompts (:class:`tomlab.backends.branching.Branches`), with the answers, scores and completion cache of
the token-by-token path (:func:`tomlab.steering.run.evaluate_steered`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab.backends.branching import Branches, branched_completions
from tomlab.backends.lm import GenerationConfig
from tomlab.backends.models import LoadedModel
from tomlab.steering.intervention import Intervention


def _check(interventions: Sequence[Intervention]) -> None:
    if not interventions:
        raise ValueError("give at least one intervention")
    sites = {iv.site for iv in interventions}
    if len(sites) > 1:
        raise ValueError(f"the interventions evaluated together share one site; got {sorted(sites)}")


def generate_interventions(lm: LoadedModel, generator: Any, interventions: Sequence[Intervention], prompts: Sequence[str],
                           config: GenerationConfig, cache_dir: Any, batch_size: int, progress: bool,
                           scoring: tuple[list[list[int]], list[list[list[int]]]] | None = None,
                           ) -> tuple[list[dict[str, str]], dict[str, int], np.ndarray | None]:
    """Each intervention's completion of every distinct prompt, as the backend's shared-prefix branches
    give them (:func:`tomlab.backends.branching.branched_completions`: the completion cache under each
    intervention's namespace, then one prefix pass for what it misses, batched by the memory plan).

    ``scoring``, the distinct prompts' token ids and continuations (:func:`_tokenise_pairs`), lets the
    same pass also score the continuations when every prompt is generated afresh; the scores (K, 2, N)
    are returned then, else None.
    """
    found, counters, scores = branched_completions(
        lm, generator, [iv.hook(lm) for iv in interventions], [iv.fingerprint for iv in interventions], prompts,
        config, cache_dir=cache_dir, batch_size=batch_size, progress=progress, scoring=scoring)
    return [{p: c.text for p, c in hits.items()} for hits in found], counters, scores


def _branches(lm: LoadedModel, interventions: Sequence[Intervention], batch_size: int, progress: bool) -> Branches:
    return Branches(lm, [iv.hook(lm) for iv in interventions], batch_size=batch_size, progress=progress)


def _tokenise_pairs(lm: LoadedModel, prompts: Sequence[str], pairs: Sequence[tuple[str, str]],
                    chat_template: bool) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Each prompt's token ids and its two continuations', tokenised as
    :func:`tomlab.backends.likelihood.continuation_logprobs` does."""
    from tomlab.backends.likelihood import scoring_ids

    ids: list[list[int]] = []
    conts: list[list[list[int]]] = [[], []]
    for prompt, pair in zip(prompts, pairs):
        for j, continuation in enumerate(pair):
            prompt_ids, cont = scoring_ids(lm.tokenizer, prompt, continuation, chat_template)
            if j == 0:
                ids.append(prompt_ids)
            elif prompt_ids != ids[-1]:
                raise RuntimeError(f"the two continuations {pair} tokenise the prompt differently")
            conts[j].append(cont)
    return ids, conts


def evaluate_interventions(
    lm: LoadedModel,
    items: pd.DataFrame,
    generator: Any,
    config: GenerationConfig,
    interventions: Sequence[Intervention],
    *,
    cache_dir: str | Any | None = None,
    modes: Sequence[str] = ("generation", "log-likelihood"),
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[list[pd.DataFrame], dict[str, int]]:
    """:func:`tomlab.steering.run.evaluate_steered` for several interventions at once.

    Returns one scored frame per intervention (with ``alpha`` and ``site``), in order, and the cache
    counters summed over them.  Generation is greedy (``config.temperature == 0``).
    """
    from tomlab.backends.likelihood import option_columns
    from tomlab.bigtom.evaluation import MODES, items_parser, score_generation

    _check(interventions)
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {list(MODES)}; got {list(modes)}")
    prompts = [str(p) for p in items["prompt"]]
    distinct = list(dict.fromkeys(prompts))
    scoring = None
    if "log-likelihood" in modes:
        first = {p: r for r, p in reversed(list(enumerate(prompts)))}
        options = [(str(items["option_a"].iloc[first[p]]), str(items["option_b"].iloc[first[p]])) for p in distinct]
        scoring = _tokenise_pairs(lm, distinct, options, bool(config.chat_template))
    counters = {"cache_hits": 0, "cache_misses": 0}
    texts: list[dict[str, str]] = [{} for _ in interventions]
    per_distinct = None
    if "generation" in modes:
        texts, counters, per_distinct = generate_interventions(lm, generator, interventions, prompts, config,
                                                               cache_dir, batch_size, progress, scoring)
    scores = lengths = None
    if scoring is not None:
        conts = scoring[1]
        if per_distinct is None:  # generation came from the cache, or was not asked: score on its own
            _, per_distinct = _branches(lm, interventions, batch_size, progress).run(scoring[0], None, conts)
        where = {p: i for i, p in enumerate(distinct)}
        rows = [where[p] for p in prompts]
        scores = per_distinct[:, :, rows]
        lengths = np.array([[len(conts[j][where[p]]) for p in prompts] for j in range(2)])
    frames = []
    for k, iv in enumerate(interventions):
        scored = items.copy()
        if "generation" in modes:
            scored = score_generation(scored, lambda ps, k=k: [texts[k][p] for p in ps], parser=items_parser(items))
        if scores is not None and lengths is not None:
            scored = option_columns(scored, scores[k, 0], scores[k, 1], lengths[0], lengths[1])
        frames.append(scored.assign(alpha=iv.alpha, site=iv.site))
    return frames, counters


def letter_probs_interventions(lm: LoadedModel, items: pd.DataFrame, interventions: Sequence[Intervention], *,
                               batch_size: int = 8, chat_template: bool = True,
                               progress: bool = True) -> list[pd.DataFrame]:
    """:func:`tomlab.backends.likelihood.letter_probs` under each intervention, prefixes shared."""
    from tomlab.backends.likelihood import letter_columns

    _check(interventions)
    prompts = [str(p) for p in items["prompt"]]
    ids, conts = _tokenise_pairs(lm, prompts, [("a", "b")] * len(prompts), chat_template)
    _, scores = _branches(lm, interventions, batch_size, progress).run(ids, None, conts)
    return [letter_columns(items, scores[k, 0], scores[k, 1]) for k in range(len(interventions))]
