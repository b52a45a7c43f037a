"""Log-likelihood of continuations under a local model (optionally under an intervention), and the
next-token probabilities of answer letters."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from tomlab.backends import meter
from tomlab.backends.memory import memory_batches
from tomlab.backends.models import LoadedModel, uses_chat_template


def _ids(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def _continuation_ids(
    tokenizer: Any, prompt: str, continuation: str, *, add_special_tokens: bool = True
) -> tuple[list[int], int]:
    """Token ids of prompt + continuation and the number of prompt tokens at their start.

    The joint text is tokenised at once when the prompt's own tokens are a prefix of the joint
    tokens (and the continuation adds at least one token); otherwise (a token merging across the
    boundary) the continuation is tokenised on its own, without special tokens, and appended.
    """
    prompt_ids = _ids(tokenizer, prompt, add_special_tokens)
    joint = _ids(tokenizer, prompt + continuation, add_special_tokens)
    n = len(prompt_ids)
    if len(joint) > n and joint[:n] == prompt_ids:
        return joint, n
    cont = _ids(tokenizer, continuation, False)
    if not cont:
        raise ValueError(f"continuation {continuation!r} tokenises to nothing")
    return prompt_ids + cont, n


def _forward_kwargs(model: torch.nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def scoring_ids(tok: Any, prompt: str, continuation: str, chat_template: bool) -> tuple[list[int], list[int]]:
    """The prompt's and the continuation's token ids as :func:`continuation_logprobs` scores them."""
    text, sep, special = _render_for_scoring(tok, prompt, chat_template)
    ids, n_prompt = _continuation_ids(tok, text, sep + str(continuation), add_special_tokens=special)
    return ids[:n_prompt], ids[n_prompt:]


def _render_for_scoring(tok: Any, prompt: str, chat_template: bool) -> tuple[str, str, bool]:
    """(text the model sees, separator before a continuation, whether to add special tokens)."""
    if uses_chat_template(tok, chat_template, str(getattr(tok, "name_or_path", "") or "the model")):
        text = tok.apply_chat_template(
            [{"role": "user", "content": str(prompt)}], add_generation_prompt=True, tokenize=False
        )
        return text, "", False
    return str(prompt), " ", True


@torch.inference_mode()
def continuation_logprobs(
    lm: LoadedModel,
    prompts: Sequence[str],
    continuations: Sequence[str],
    *,
    batch_size: int = 8,
    chat_template: bool = False,
    progress: bool = True,
    intervention: Any = None,
    desc: str = "log-probs",
) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probability of each continuation after its prompt, and its number of tokens.

    A plain prompt is followed by ``" " + continuation`` and tokenised with the tokenizer's
    special tokens; with ``chat_template`` the prompt is rendered as one user turn (generation
    prompt added) and the continuation follows directly.  Sequences run in batches of
    ``batch_size`` (grouped by length), left padded, with positions that skip the padding; one
    forward pass per batch.  ``intervention``: an *active* :class:`tomlab.backends.hooks.HeadIntervention`,
    told for each batch to shift every position from the last prompt token on (the positions
    that predict the continuation), as token-by-token generation would.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    tok = lm.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad token nor an eos token")
    sequences: list[tuple[list[int], int]] = []  # (ids, number of prompt tokens)
    rendered: dict[str, tuple[str, str, bool]] = {}
    for prompt, continuation in zip(prompts, continuations):
        if prompt not in rendered:
            rendered[prompt] = _render_for_scoring(tok, prompt, chat_template)
        text, sep, special = rendered[prompt]
        ids, n_prompt = _continuation_ids(tok, text, sep + str(continuation), add_special_tokens=special)
        if n_prompt < 1:
            raise ValueError(f"prompt tokenises to nothing: {text[:80]!r}")
        sequences.append((ids, n_prompt))

    accepted = _forward_kwargs(lm.model)
    scores = np.full(len(sequences), np.nan, dtype=np.float64)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    longest_cont = max((len(ids) - n for ids, n in sequences), default=0) + 1
    batches = memory_batches(lm, order, [len(ids) for ids, _ in sequences], batch_size, logits=longest_cont)
    for batch in tqdm(batches, desc=desc, disable=not progress):
        width = max(len(sequences[i][0]) for i in batch)
        n_cont = [len(sequences[i][0]) - sequences[i][1] for i in batch]
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids = sequences[i][0]
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids):] = 1
        input_ids, mask = input_ids.to(lm.device), mask.to(lm.device)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
            "use_cache": False,
        }
        keep = max(n_cont) + 1  # the continuation tokens are predicted from the last `keep` positions
        if "logits_to_keep" in accepted:
            kwargs["logits_to_keep"] = keep
        if intervention is not None:
            intervention.set_edit_from([width - c - 1 for c in n_cont])
        try:
            logits = lm.model(**kwargs).logits
        finally:
            if intervention is not None:
                intervention.set_edit_from(None)
        logits = logits[:, -keep:, :]
        for row, i in enumerate(batch):
            c = n_cont[row]
            pred = logits[row, keep - 1 - c: keep - 1, :].float().log_softmax(-1)
            target = input_ids[row, width - c:]
            scores[i] = float(pred.gather(-1, target.unsqueeze(-1)).sum())
    lengths = np.array([len(ids) - n for ids, n in sequences], dtype=np.int64)
    meter.record(scored_sequences=len(sequences), scored_tokens=sum(len(ids) for ids, _ in sequences))
    return scores, lengths


def option_logprobs(
    lm: LoadedModel,
    items: pd.DataFrame,
    *,
    batch_size: int = 8,
    chat_template: bool = False,
    progress: bool = True,
    intervention: Any = None,
) -> pd.DataFrame:
    """Score each item by the log-likelihood of its two options as continuations of the prompt.

    The continuation of an option is its text alone, after a space (``prompt + " " + option``)
    for a plain prompt, or right after the assistant header (no space) when ``chat_template`` is
    set and the prompt is rendered as one user turn with
    ``tokenizer.apply_chat_template(..., add_generation_prompt=True, tokenize=False)``.  The option
    text rather than ``" a) <option>"`` is scored so the model's preference between the letters
    does not enter the comparison.  See :func:`continuation_logprobs` (which also explains
    ``intervention``).

    ``logp_a`` / ``logp_b`` are the *summed* log-probabilities of the continuation tokens (no
    length normalisation; ``n_tokens_a`` / ``n_tokens_b`` give the lengths).  ``ll_pred`` is the
    option with the higher sum (``"a"`` on an exact tie) and ``ll_correct`` is
    ``ll_pred == answer_letter``.  Returns a copy of ``items`` with those columns added.
    """
    prompts: list[str] = []
    continuations: list[str] = []
    for prompt, option_a, option_b in zip(items["prompt"], items["option_a"], items["option_b"]):
        prompts += [str(prompt), str(prompt)]
        continuations += [str(option_a), str(option_b)]
    scores, lengths = continuation_logprobs(
        lm, prompts, continuations, batch_size=batch_size, chat_template=chat_template,
        progress=progress, intervention=intervention, desc="option log-probs",
    )
    return option_columns(items, scores[0::2], scores[1::2], lengths[0::2], lengths[1::2])


def option_columns(items: pd.DataFrame, logp_a: np.ndarray, logp_b: np.ndarray, n_a: np.ndarray,
                   n_b: np.ndarray) -> pd.DataFrame:
    """``items`` with the option scores of :func:`option_logprobs` and the prediction they make."""
    out = items.copy()
    out["logp_a"] = np.asarray(logp_a, dtype=np.float64)
    out["logp_b"] = np.asarray(logp_b, dtype=np.float64)
    out["n_tokens_a"] = np.asarray(n_a, dtype=np.int64)
    out["n_tokens_b"] = np.asarray(n_b, dtype=np.int64)
    out["ll_pred"] = np.where(out["logp_b"].to_numpy() > out["logp_a"].to_numpy(), "b", "a")
    out["ll_correct"] = out["ll_pred"] == out["answer_letter"]
    return out


def letter_probs(
    lm: LoadedModel,
    items: pd.DataFrame,
    *,
    batch_size: int = 8,
    chat_template: bool = False,
    progress: bool = True,
    intervention: Any = None,
) -> pd.DataFrame:
    """The probability the model gives to answering ``a`` and ``b`` right after each prompt.

    ``p_a`` / ``p_b`` are the probabilities of the continuations ``"a"`` and ``"b"`` (after a
    space for plain prompts); ``p_correct`` / ``p_wrong`` the same for the item's correct and wrong
    letter.  These are the next-token probabilities of the two options that the generation
    protocol parses (the mechanism view, Figure 7 of Zhu, Zhang & Wang).
    """
    prompts = [str(p) for p in items["prompt"] for _ in range(2)]
    letters = ["a", "b"] * len(items)
    scores, _ = continuation_logprobs(
        lm, prompts, letters, batch_size=batch_size, chat_template=chat_template,
        progress=progress, intervention=intervention, desc="letter probs",
    )
    return letter_columns(items, scores[0::2], scores[1::2])


def letter_columns(items: pd.DataFrame, logp_a: np.ndarray, logp_b: np.ndarray) -> pd.DataFrame:
    """``items`` with the letter probabilities of :func:`letter_probs` from the letters' log-probabilities."""
    out = items.copy()
    out["p_a"] = np.exp(np.asarray(logp_a, dtype=np.float64))
    out["p_b"] = np.exp(np.asarray(logp_b, dtype=np.float64))
    is_b = (out["answer_letter"] == "b").to_numpy()
    out["p_correct"] = np.where(is_b, out["p_b"], out["p_a"])
    out["p_wrong"] = np.where(is_b, out["p_a"], out["p_b"])
    return out
