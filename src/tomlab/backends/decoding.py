"""Local decoding loops that the batched generation of :mod:`tomlab.backends.lm` shares: sampling in
batches with one random generator per row (so a sample does not depend on its batch-mates)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def _draw(logits: torch.Tensor, config: Any, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token per row (``config``: a :class:`tomlab.backends.lm.GenerationConfig`): temperature, then nucleus (top-p) filtering, then a draw from the row's generator."""
    probs = (logits.float() / float(config.temperature)).softmax(-1)
    if config.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass of the more likely tokens
        sorted_p = sorted_p.masked_fill(before >= config.top_p, 0.0)  # the most likely token always stays
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.cat([torch.multinomial(row, 1, generator=gen) for row, gen in zip(probs, generators)])


def left_pad(batch: Sequence[Sequence[int]], pad: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``batch`` left-padded with ``pad`` to one width, and the attention mask (1 on real tokens)."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        if ids:
            input_ids[row, width - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
            attention[row, width - len(ids):] = 1
    return input_ids.to(device), attention.to(device)


def sample_loop(model: Any, batch: list[list[int]], pad: int, config: Any, eos: set[int],
                seeds: Sequence[int], device: torch.device) -> list[list[int]]:
    """Sampled tokens after each (left-padded) prompt of ``batch``, row ``i`` drawing from a generator seeded
    with ``seeds[i]``; a finished row (end-of-sequence token) is padded until every row has finished."""
    input_ids, attention = left_pad(batch, pad, device)
    generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]
    out = model(input_ids=input_ids, attention_mask=attention,
                position_ids=(attention.cumsum(-1) - 1).clamp(min=0), use_cache=True)
    cache, logits = out.past_key_values, out.logits[:, -1, :]
    eos_t = torch.tensor(sorted(eos), dtype=torch.long, device=device) if eos else None
    finished = torch.zeros(len(batch), dtype=torch.bool, device=device)
    new: list[torch.Tensor] = []
    for _ in range(int(config.max_new_tokens)):
        nxt = torch.where(finished, torch.full((len(batch),), pad, device=device), _draw(logits, config, generators))
        new.append(nxt)
        if eos_t is not None:
            finished |= torch.isin(nxt, eos_t)
        if bool(finished.all()):
            break
        attention = torch.cat([attention, torch.ones((len(batch), 1), dtype=torch.long, device=device)], dim=1)
        out = model(input_ids=nxt[:, None], attention_mask=attention, position_ids=attention.sum(-1, keepdim=True) - 1,
                    past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1, :]
    return torch.stack(new, dim=1).tolist()
