"""Probe samples and per-head activations at the last token.

The samples follow Zhu, Zhang & Wang (2024): for each story, the true-belief and the false-belief
version of a task's condition (init 0), each with both candidate answers, turned into the prompt
``Story: {story}\\nBelief: {statement}`` where the statement is the answer without its leading
"<Name> believes (that)".  That is the forward-belief task the paper probes; the same is built for
backward belief (the story ends with the protagonist's action) and for forward action (the statement
is the action itself, after ``Action:``), so that probes and steering directions exist for every
task (cross-task generalisation). Labels:

* ``protagonist``: the statement is what the protagonist believes (the condition's correct answer);
* ``oracle``: the statement is true of the world (the answer of an aware protagonist);
* ``joint`` = 2 * oracle + protagonist (so 1 is "protagonist true, oracle false": TpFo).

Two capture sites per layer and head:

* ``attn_out``: the attention block's output after the output projection, cut into n_heads slices of
  head_dim (what the original code stores);
* ``head_z``: the input of the output projection, per head (the heads' own outputs, as in ITI).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from tomlab.data import read_condition
from tomlab.models import LoadedModel

SITES: tuple[str, ...] = ("attn_out", "head_z")
PROBE_TASKS: tuple[str, ...] = ("forward_belief", "forward_action", "backward_belief")
# task -> the label that introduces the statement in the probe prompt
_STATEMENT_LABEL: dict[str, str] = {"forward_belief": "Belief", "forward_action": "Action", "backward_belief": "Belief"}
# BigToM's answers open with "<Name> believes (that)"; one real row (story 30) says "knows" instead.
_BELIEVER = re.compile(r"^.*?\b(?:believes|knows|thinks)\b\s+(?:that\s+)?", flags=re.IGNORECASE)


def strip_believer(answer: str) -> str:
    """``"Noor believes that the jar is empty."`` -> ``"the jar is empty."``.

    "knows" and "thinks" are accepted in place of "believes"; anything else raises ValueError.
    """
    text = answer.strip()
    stripped, n = _BELIEVER.subn("", text, count=1)
    if n == 0:
        raise ValueError(f"belief answer has no 'believes', 'knows' or 'thinks': {answer!r}")
    return stripped


def make_prompt(story: str, statement: str, label: str = "Belief") -> str:
    return f"Story: {story}\n{label}: {statement}"


def probe_conditions(task: str) -> tuple[str, str]:
    """The init-0 true-belief and false-belief condition folders of a task."""
    if task not in PROBE_TASKS:
        raise ValueError(f"unknown task {task!r}; known: {list(PROBE_TASKS)}")
    return (f"0_{task}_true_belief", f"0_{task}_false_belief")


def _statement(task: str, answer: str) -> str:
    return strip_believer(answer) if _STATEMENT_LABEL[task] == "Belief" else answer.strip()


def split_stories(n_stories: int, eval_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Story indices kept for evaluation (the first part) and used for probing (the rest).

    With 200 BigToM stories and the default 0.5 this is the original's 0-99 / 100-199.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    n_eval = int(n_stories * eval_fraction)
    return np.arange(n_eval), np.arange(n_eval, n_stories)


def build_probe_samples(
    conditions_dir: str | Path,
    *,
    task: str = "forward_belief",
    eval_fraction: float = 0.5,
    max_stories: int | None = None,
) -> pd.DataFrame:
    """The four probing samples of each story in the probe split of ``task``, in story order.

    "aware" is the answer of a protagonist who saw the change (the true-belief condition's correct
    answer); the oracle label marks it, the protagonist label marks the condition's correct answer.
    """
    root = Path(conditions_dir)
    tb_dir, fb_dir = probe_conditions(task)
    tb = read_condition(root / tb_dir / "stories.csv")
    fb = read_condition(root / fb_dir / "stories.csv")
    if len(tb) != len(fb):
        raise ValueError(f"{root}: true-belief and false-belief files differ in length ({len(tb)} vs {len(fb)})")
    _, probe_ids = split_stories(len(tb), eval_fraction)
    if max_stories is not None:
        probe_ids = probe_ids[:max_stories]
    rows: list[dict[str, Any]] = []
    for story_id in probe_ids:
        t, f = tb.iloc[story_id], fb.iloc[story_id]
        aware, unaware = t["correct"], t["wrong"]  # true belief: the aware answer is correct
        if (f["correct"], f["wrong"]) != (unaware, aware):
            raise ValueError(f"{root}: story {story_id}: false-belief answers are not the true-belief ones swapped")
        for condition, row in (("true_belief", t), ("false_belief", f)):
            for answer, text in (("aware", aware), ("not_aware", unaware)):
                oracle = int(answer == "aware")
                protagonist = int(text == row["correct"])
                statement = _statement(task, text)
                rows.append(
                    {
                        "sample_id": len(rows),
                        "task": task,
                        "story_id": int(story_id),
                        "condition": condition,
                        "answer": answer,
                        "story": row["story"],
                        "statement": statement,
                        "prompt": make_prompt(row["story"], statement, _STATEMENT_LABEL[task]),
                        "oracle": oracle,
                        "protagonist": protagonist,
                        "joint": 2 * oracle + protagonist,
                    }
                )
    if not rows:
        raise ValueError(f"{root}: the probe split is empty (eval_fraction={eval_fraction}, {len(tb)} stories)")
    return pd.DataFrame(rows)


class HeadCapture:
    """Forward hooks on every layer's output projection capturing the last position (or all of them).

    Use as a context manager: hooks are registered on entry and always removed on exit.
    After each forward pass, ``take()`` returns ``{site: tensor (batch, layers, heads, head_dim)}``;
    with ``positions="all"`` it returns ``{site: tensor (batch, seq, layers, heads, head_dim)}``.
    """

    def __init__(self, lm: LoadedModel, sites: Sequence[str] = SITES, positions: str = "last") -> None:
        unknown = set(sites) - set(SITES)
        if unknown:
            raise ValueError(f"unknown capture site(s) {sorted(unknown)}; known: {list(SITES)}")
        if positions not in ("last", "all"):
            raise ValueError(f"positions must be 'last' or 'all', got {positions!r}")
        self.lm = lm
        self.sites = tuple(sites)
        self.positions = positions
        self._handles: list[Any] = []
        self._store: dict[str, list[torch.Tensor | None]] = {s: [None] * lm.n_layers for s in self.sites}

    def _hook(self, layer: int):
        cut = (lambda t: t[:, -1, :]) if self.positions == "last" else (lambda t: t)

        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if "head_z" in self.sites:
                self._store["head_z"][layer] = cut(args[0]).detach()
            if "attn_out" in self.sites:
                self._store["attn_out"][layer] = cut(out).detach()

        return hook

    def __enter__(self) -> HeadCapture:
        for layer in range(self.lm.n_layers):
            module = self.lm.o_proj_module(layer)
            self._handles.append(module.register_forward_hook(self._hook(layer)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def take(self) -> dict[str, torch.Tensor]:
        result = {}
        for site in self.sites:
            per_layer = self._store[site]
            if any(t is None for t in per_layer):
                raise RuntimeError(f"site {site}: not every layer was captured; was a forward pass run?")
            layer_axis = 1 if self.positions == "last" else 2
            stacked = torch.stack([t for t in per_layer if t is not None], dim=layer_axis)  # (B, [T,] L, hidden)
            result[site] = stacked.reshape(*stacked.shape[:-1], self.lm.n_heads, self.lm.head_dim)
            self._store[site] = [None] * self.lm.n_layers
        return result


def _forward_body(lm: LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    """Run the transformer body only (no LM head), with positions that ignore the left padding."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    lm.decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)


def prompt_lengths(lm: LoadedModel, prompts: Sequence[str]) -> list[int]:
    """Number of tokens of each prompt as the model sees it (special tokens included)."""
    return [len(ids) for ids in lm.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]


@torch.inference_mode()
def extract_activations(
    lm: LoadedModel,
    prompts: Sequence[str],
    *,
    sites: Sequence[str] = SITES,
    batch_size: int = 8,
    progress: bool = True,
    lengths: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Per-head activations at the last token of each prompt: ``{site: float16 (N, L, H, D)}``.

    Prompts are batched by length (less padding) with left padding and an attention mask; the output
    is in the order of ``prompts``. ``lengths`` (from :func:`prompt_lengths`) saves counting them again.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    n = len(prompts)
    out = {s: np.zeros((n, lm.n_layers, lm.n_heads, lm.head_dim), dtype=np.float16) for s in sites}
    if lengths is None:
        lengths = prompt_lengths(lm, prompts)
    elif len(lengths) != n:
        raise ValueError(f"{len(lengths)} lengths for {n} prompts")
    order = np.argsort(lengths, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    with HeadCapture(lm, sites) as capture:
        for idx in tqdm(batches, desc="activations", unit="batch", disable=not progress):
            enc = lm.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            _forward_body(lm, enc["input_ids"].to(lm.device), enc["attention_mask"].to(lm.device))
            for site, acts in capture.take().items():
                out[site][idx] = acts.float().cpu().numpy().astype(np.float16)
    return out


@torch.inference_mode()
def token_activations(lm: LoadedModel, prompt: str, site: str = "head_z") -> tuple[np.ndarray, list[str]]:
    """Per-head activations at *every* position of one prompt: float32 (T, L, H, D), and the tokens.

    The tokens are the decoded pieces of the prompt's ids (special tokens included), one per position.
    """
    enc = lm.tokenizer([prompt], return_tensors="pt")
    ids = enc["input_ids"]
    with HeadCapture(lm, (site,), positions="all") as capture:
        _forward_body(lm, ids.to(lm.device), enc["attention_mask"].to(lm.device))
        acts = capture.take()[site][0]
    tokens = [lm.tokenizer.decode([int(t)]) for t in ids[0]]
    return acts.float().cpu().numpy(), tokens


def bench_extract(
    lm: LoadedModel, prompts: Sequence[str], *, batch_size: int = 8, sites: Sequence[str] = SITES
) -> dict[str, Any]:
    """Tokens per second of batched extraction against one prompt at a time, on the same prompts."""
    lengths = prompt_lengths(lm, prompts)
    n_tokens = sum(lengths)
    warm = min(len(prompts), batch_size)
    extract_activations(
        lm, prompts[:warm], sites=sites, batch_size=batch_size, progress=False, lengths=lengths[:warm]
    )
    timings = {}
    for label, bs in (("batched", batch_size), ("single", 1)):
        start = time.perf_counter()
        extract_activations(lm, prompts, sites=sites, batch_size=bs, progress=False)
        timings[label] = time.perf_counter() - start
    return {
        "model": lm.name,
        "device": str(lm.device),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "n_prompts": len(prompts),
        "n_tokens": n_tokens,
        "batch_size": batch_size,
        "sites": list(sites),
        "batched_seconds": timings["batched"],
        "single_seconds": timings["single"],
        "batched_tokens_per_s": n_tokens / timings["batched"],
        "single_tokens_per_s": n_tokens / timings["single"],
        "speedup": timings["single"] / timings["batched"],
        "target_speedup": 5.0,
        "torch_threads": torch.get_num_threads(),
    }
