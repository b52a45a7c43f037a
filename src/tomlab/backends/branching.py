"""Many interventions on the same prompts, sharing what they cannot change.

An additive intervention shifts the last prompt token and every token after it, never an earlier
one, and attention only looks back: the keys and values of a prompt's first ``n - 1`` tokens are the
same under every intervention.  :class:`Branches` runs each batch of prompts up to (not including)
its last token once, keeps that KV cache, and branches every intervention from it: the rows of one
forward pass are (prompt, intervention) pairs, each row shifted by its own intervention
(:class:`RowShifts`).  Greedy completions and continuation log-probabilities come out as the
token-by-token path (:class:`tomlab.backends.lm.TransformersLM` under a
:class:`tomlab.backends.hooks.HeadIntervention`) computes them, up to floating-point rounding of the
different batch shapes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tomlab.backends import meter
from tomlab.backends.decoding import left_pad
from tomlab.backends.hooks import HeadIntervention, RowShifts
from tomlab.backends.lm import CachedLM, Completion, GenerationConfig, eos_ids, finish_completions
from tomlab.backends.memory import plan_batches, plan_of
from tomlab.backends.models import LoadedModel


class Branches:
    """Greedy completions and continuation log-probabilities of prompts (token ids) under several
    interventions, each prompt's prefix computed once.

    ``interventions`` are :class:`HeadIntervention` objects of one site (not entered; ``alpha == 0``
    gives the plain model).  Up to ``batch_size`` prompts share a prefix pass; their branches run as
    ``prompts * len(interventions)`` rows, as many prompts as the model's memory plan
    (:mod:`tomlab.backends.memory`) lets one pass hold; where not even one prompt's branches fit, the
    interventions run in groups.  ``peak_rows`` and ``peak_cache_bytes`` tell the largest pass.
    """

    def __init__(self, lm: LoadedModel, interventions: Sequence[HeadIntervention], *, batch_size: int = 8,
                 progress: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.lm = lm
        self.interventions = list(interventions)
        self.shifts = RowShifts(lm, self.interventions)
        self.batch_size = int(batch_size)
        self.progress = progress
        tok = lm.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad token nor an eos token")
        self.pad = int(pad)
        self.peak_rows = 0  # the largest pass so far: its rows and its KV cache's bytes
        self.peak_cache_bytes = 0

    @property
    def k(self) -> int:
        return len(self.interventions)

    # the shared prefix ---------------------------------------------------------------------------

    def _prefix(self, prompts: Sequence[Sequence[int]]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Run every prompt but its last token (left padded); return the cache expanded to one row per
        (prompt, intervention), the prefix mask of those rows and each row's prefix length."""
        for ids in prompts:
            if len(ids) < 2:
                raise ValueError("a prompt needs at least two tokens to share its prefix")
        ids, mask = left_pad([p[:-1] for p in prompts], self.pad, self.lm.device)
        self.shifts.enabled = False
        out = self.lm.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                            use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        cache.batch_repeat_interleave(self.k)
        mask = mask.repeat_interleave(self.k, dim=0)
        return cache, mask, mask.sum(-1)

    def _step(self, cache: Any, prefix_mask: torch.Tensor, tokens: torch.Tensor, start: torch.Tensor,
              so_far: torch.Tensor | None, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One shifted forward of ``tokens`` (rows, T) after the cache; returns the last ``keep`` logits
        and the mask so far."""
        ones = torch.ones(tokens.shape, dtype=torch.long, device=tokens.device)
        grown = ones if so_far is None else torch.cat([so_far, ones], dim=1)
        mask = torch.cat([prefix_mask, grown], dim=1)
        done = grown.shape[1] - tokens.shape[1]
        positions = start[:, None] + done + torch.arange(tokens.shape[1], device=tokens.device)[None, :]
        self.shifts.enabled = True
        try:
            out = self.lm.model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                                past_key_values=cache, use_cache=True, logits_to_keep=keep)
        finally:
            self.shifts.enabled = False
        return out.logits, grown

    # what callers ask --------------------------------------------------------------------------

    @torch.inference_mode()
    def run(self, prompts: Sequence[Sequence[int]], config: GenerationConfig | None = None,
            continuations: Sequence[Sequence[Sequence[int]]] = ()) -> tuple[list[list[Completion]], np.ndarray]:
        """Completions and continuation scores of every prompt under every intervention.

        ``prompts`` are token ids; ``config`` (greedy only; None: no generation) sets the new tokens
        and stop strings; ``continuations[j][i]`` are the token ids of prompt i's j-th continuation,
        scored after the prompt as :func:`tomlab.backends.likelihood.continuation_logprobs` scores
        them.  Returns ``completions[k][i]`` and ``scores`` of shape (K, len(continuations), N): summed
        log-probabilities.
        """
        if config is not None and not config.greedy:
            raise ValueError("shared-prefix branches decode greedily; sample on the token-by-token path")
        for j, conts in enumerate(continuations):
            if len(conts) != len(prompts):
                raise ValueError(f"continuation set {j} has {len(conts)} entries for {len(prompts)} prompts")
            if any(len(c) == 0 for c in conts):
                raise ValueError(f"continuation set {j} has an empty continuation")
        n = len(prompts)
        lengths = [len(p) for p in prompts]
        cont = max((len(c) for conts in continuations for c in conts), default=0)
        extra = max(cont, int(config.max_new_tokens) if config is not None else 0)
        plan = plan_of(self.lm)
        budget = plan.budget(self.lm)

        def fit(m: int) -> int:  # rows of a prompt of length m that fit one pass
            return plan.max_rows(self.lm, m + extra, cont + 1, budget)

        fits = [fit(m) for m in lengths]
        big = [i for i in range(n) if fits[i] < self.k]  # prompts whose branches alone do not fit one pass
        if big:
            return self._split(prompts, config, continuations, big, max(1, min(fits[i] for i in big)))
        completions: list[list[Completion | None]] = [[None] * n for _ in range(self.k)]
        scores = np.full((self.k, len(continuations), n), np.nan)
        eos = eos_ids(self.lm.model, self.lm.tokenizer)
        order = sorted(range(n), key=lambda i: -lengths[i])
        batches = plan_batches(order, lengths, self.batch_size, fit, per_item=self.k)
        with self.shifts:
            for batch in tqdm(batches, desc="branches", disable=not self.progress):
                cache, prefix_mask, start = self._prefix([prompts[i] for i in batch])
                width = cache.get_seq_length()
                last = torch.tensor([prompts[i][-1] for i in batch], dtype=torch.long,
                                    device=self.lm.device).repeat_interleave(self.k)
                for j, conts in enumerate(continuations):
                    scores[:, j, batch] = self._score(cache, prefix_mask, start, last,
                                                      [conts[i] for i in batch]).reshape(len(batch), self.k).T
                    self._note(cache, prefix_mask.shape[0])
                    _crop(cache, width)
                if config is not None:
                    new = self._decode(cache, prefix_mask, start, last, config, eos)
                    self._note(cache, prefix_mask.shape[0])
                    _crop(cache, width)
                    for row, gen in enumerate(new):
                        i, k = batch[row // self.k], row % self.k
                        completions[k][i] = finish_completions(self.lm.tokenizer, [prompts[i]], [gen], eos,
                                                               config)[0]
                # the prefix is computed once per prompt; each branch adds its last prompt token
                meter.record(prompt_tokens=sum(len(prompts[i]) - 1 for i in batch))
        done = [[c for c in row if c is not None] for row in completions] if config is not None else []
        for row in done:
            meter.record(prompts=len(row), prompt_tokens=len(row),
                         completion_tokens=sum(c.completion_tokens for c in row))
        return done, scores

    def _split(self, prompts: Sequence[Sequence[int]], config: GenerationConfig | None,
               continuations: Sequence[Sequence[Sequence[int]]], big: Sequence[int], size: int,
               ) -> tuple[list[list[Completion]], np.ndarray]:
        """:meth:`run` with the ``big`` prompts' interventions in groups of ``size``, the others as usual,
        joined back in the prompts' order."""
        n, chosen = len(prompts), set(big)
        parts = [([i for i in range(n) if i not in chosen], False), (list(big), True)]
        completions: list[list[Completion | None]] = [[None] * n for _ in range(self.k)]
        scores = np.full((self.k, len(continuations), n), np.nan)
        for idx, grouped in parts:
            if not idx:
                continue
            sub_prompts = [prompts[i] for i in idx]
            sub_conts = [[conts[i] for i in idx] for conts in continuations]
            if grouped:
                done, part = self._in_groups(sub_prompts, config, sub_conts, size)
            else:
                done, part = self.run(sub_prompts, config, sub_conts)
            for k, row in enumerate(done):
                for pos, c in enumerate(row):
                    completions[k][idx[pos]] = c
            scores[:, :, idx] = part
        out = [[c for c in row if c is not None] for row in completions] if config is not None else []
        return out, scores

    def _in_groups(self, prompts: Sequence[Sequence[int]], config: GenerationConfig | None,
                   continuations: Sequence[Sequence[Sequence[int]]], size: int,
                   ) -> tuple[list[list[Completion]], np.ndarray]:
        """:meth:`run` over the interventions ``size`` at a time (one prompt per pass), joined in order."""
        done: list[list[Completion]] = []
        parts = []
        for first in range(0, self.k, size):
            group = Branches(self.lm, self.interventions[first:first + size], batch_size=1, progress=self.progress)
            got, part = group.run(prompts, config, continuations)
            done += got
            parts.append(part)
            self.peak_rows = max(self.peak_rows, group.peak_rows)
            self.peak_cache_bytes = max(self.peak_cache_bytes, group.peak_cache_bytes)
        return done, np.concatenate(parts, axis=0)

    def _note(self, cache: Any, rows: int) -> None:
        """Keep the largest pass (rows, and the bytes its KV cache held at its longest)."""
        self.peak_rows = max(self.peak_rows, rows)
        self.peak_cache_bytes = max(self.peak_cache_bytes, cache_bytes(cache))

    def _score(self, cache: Any, prefix_mask: torch.Tensor, start: torch.Tensor, last: torch.Tensor,
               conts: Sequence[Sequence[int]]) -> np.ndarray:
        """Summed log-probabilities of each row's continuation (rows prompt-major, as the cache)."""
        per_row = [list(c) for c in conts for _ in range(self.k)]
        width = max(len(c) for c in per_row)
        tokens = torch.full((len(per_row), width + 1), self.pad, dtype=torch.long)
        tokens[:, 0] = last.cpu()
        for row, c in enumerate(per_row):
            tokens[row, 1:1 + len(c)] = torch.tensor(c, dtype=torch.long)
        tokens = tokens.to(self.lm.device)
        logits, _ = self._step(cache, prefix_mask, tokens, start, None, keep=width + 1)
        out = np.empty(len(per_row))
        for row, c in enumerate(per_row):
            pred = logits[row, :len(c), :].float().log_softmax(-1)
            target = tokens[row, 1:1 + len(c)]
            out[row] = float(pred.gather(-1, target.unsqueeze(-1)).sum())
        meter.record(scored_sequences=len(per_row), scored_tokens=sum(len(c) for c in per_row))
        return out

    def _decode(self, cache: Any, prefix_mask: torch.Tensor, start: torch.Tensor, last: torch.Tensor,
                config: GenerationConfig, eos: set[int]) -> list[list[int]]:
        """Greedy tokens after each row's prompt, until an end-of-sequence token or ``max_new_tokens``."""
        rows = last.shape[0]
        eos_t = torch.tensor(sorted(eos), dtype=torch.long, device=last.device) if eos else None
        finished = torch.zeros(rows, dtype=torch.bool, device=last.device)
        tokens, so_far, out = last[:, None], None, []
        for _ in range(int(config.max_new_tokens)):
            logits, so_far = self._step(cache, prefix_mask, tokens, start, so_far, keep=1)
            nxt = logits[:, -1, :].argmax(-1)
            nxt = torch.where(finished, torch.full_like(nxt, self.pad), nxt)
            out.append(nxt)
            if eos_t is not None:
                finished |= torch.isin(nxt, eos_t)
            if bool(finished.all()) or (config.stop and _all_stopped(self.lm.tokenizer, out, config.stop)):
                break
            tokens = nxt[:, None]
        return torch.stack(out, dim=1).tolist() if out else [[] for _ in range(rows)]


def branched_completions(
    lm: LoadedModel,
    generator: Any,
    interventions: Sequence[HeadIntervention],
    namespaces: Sequence[str],
    prompts: Sequence[str],
    config: GenerationConfig,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    progress: bool = True,
    scoring: tuple[list[list[int]], list[list[list[int]]]] | None = None,
) -> tuple[list[dict[str, Completion]], dict[str, int], np.ndarray | None]:
    """Each intervention's greedy completion of every distinct prompt: from the completion cache (one
    namespace per intervention, as :class:`tomlab.backends.lm.CachedLM` keys them) where it has one,
    else from shared-prefix :class:`Branches` under the model's memory plan, stored in the cache.

    ``generator`` renders and tokenises the prompts (its ``encode``) and names the cache entries.
    ``scoring``, the distinct prompts' token ids and their continuations, lets the same prefix pass score
    the continuations when every prompt is generated afresh; its scores (K, sets, N) are returned then,
    else None.  Returns the completions per intervention, and the cache counters as
    :meth:`CachedLM.generate` would count them over ``prompts``.
    """
    if len(namespaces) != len(interventions):
        raise ValueError(f"{len(namespaces)} cache namespaces for {len(interventions)} interventions")
    distinct = list(dict.fromkeys(prompts))
    caches = [CachedLM(generator, cache_dir, namespace=ns) if cache_dir else None for ns in namespaces]
    found: list[dict[str, Completion]] = []
    for cache in caches:
        hits: dict[str, Completion] = {}
        for p in distinct if cache is not None else []:
            c = cache.lookup(p, config)
            if c is not None:
                hits[p] = c
        found.append(hits)
    missing = [p for p in distinct if any(p not in hits for hits in found)]
    hits_before = sum(1 for hits in found for p in prompts if p in hits)
    counters = {"cache_hits": hits_before, "cache_misses": len(prompts) * len(caches) - hits_before}
    meter.record(cache_hits=hits_before)
    scores = None
    if missing:
        ids = [list(generator.encode(p, config)) for p in missing]
        branches = Branches(lm, interventions, batch_size=batch_size, progress=progress)
        if scoring is not None and len(missing) == len(distinct) and ids == scoring[0]:
            fresh, scores = branches.run(ids, config, scoring[1])
        else:
            fresh, _ = branches.run(ids, config)
        for k, cache in enumerate(caches):
            for p, c in zip(missing, fresh[k]):
                if p in found[k]:
                    continue
                found[k][p] = c
                if cache is not None:
                    cache.remember(p, config, c)
    return found, counters, scores


def cache_bytes(cache: Any) -> int:
    """Bytes a KV cache's keys and values take (every layer)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def _crop(cache: Any, width: int) -> None:
    """Drop what the branches appended to the cache, back to the shared prefix's ``width`` tokens."""
    extra = cache.get_seq_length() - width
    if extra > 0:
        cache.crop(-extra)


def _all_stopped(tokenizer: Any, out: list[torch.Tensor], stop: Sequence[str]) -> bool:
    """Whether every row's text so far holds a stop string (decoding can end early)."""
    texts = tokenizer.batch_decode(torch.stack(out, dim=1).tolist(), skip_special_tokens=True)
    return all(any(s and s in t for s in stop) for t in texts)


def prefix_groups(ids: Sequence[Sequence[int]]) -> Iterator[tuple[tuple[int, ...], list[int]]]:
    """Indices of equal token sequences (the first occurrence's ids with every index that has them)."""
    seen: dict[tuple[int, ...], list[int]] = {}
    for i, seq in enumerate(ids):
        seen.setdefault(tuple(seq), []).append(i)
    yield from seen.items()
