"""The language-model interface: generation settings, completions, a content-addressed cache, a transformers backend and a scripted one for tests."""

from __future__ import annotations

import abc
import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import torch

from tomlab.backends import meter
from tomlab.backends.decoding import left_pad, sample_loop
from tomlab.backends.memory import memory_batches
from tomlab.backends.models import apply_chat, uses_chat_template
from tomlab.io import read_regular, write_json

Message = Mapping[str, Any]


Prompt = Union[str, Sequence[Message]]


FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate. ``temperature == 0`` means greedy; ``seed`` only matters when sampling."""

    max_new_tokens: int = 20
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    chat_template: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(str(s) for s in self.stop))
        if int(self.max_new_tokens) < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def key(self) -> dict[str, Any]:
        """A stable, JSON-serialisable description (for hashing / cache keys)."""
        return {
            "max_new_tokens": int(self.max_new_tokens),
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
            "seed": int(self.seed),
            "stop": list(self.stop),
            "chat_template": bool(self.chat_template),
            # samples of the per-row sampler (batched, a generator per prompt) do not mix with earlier ones
            **({} if self.greedy else {"sampler": "per-row"}),
        }


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Usage:
    """Running totals of what a backend was asked for."""

    calls: int = 0  # generate() invocations
    completions: int = 0  # prompts answered
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_tokens": self.total_tokens}


def normalize_prompt(prompt: Prompt) -> str | list[dict[str, Any]]:
    """A plain-JSON copy of a prompt: the string itself, or a list of plain dicts."""
    if isinstance(prompt, str):
        return prompt
    out = []
    for m in prompt:
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise TypeError(f"a chat message needs 'role' and 'content', got {m!r}")
        out.append({str(k): v for k, v in m.items()})
    return out


def messages_as_lines(messages: Sequence[Message]) -> str:
    """``role: content`` lines joined by newlines (how chat prompts read without a template)."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def prompt_text(prompt: Prompt) -> str:
    """Stable readable text of a prompt: a string as is, messages as ``role: content`` lines.

    Cache keys use the JSON of the whole prompt (see :func:`cache_key`), so that the string
    ``"user: hi"`` and the message list ``[{"role": "user", "content": "hi"}]`` stay apart.
    """
    if isinstance(prompt, str):
        return prompt
    return messages_as_lines(normalize_prompt(prompt))


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest occurrence of any (non-empty) stop string; say whether it was cut."""
    cut = -1
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (cut < 0 or i < cut):
            cut = i
    if cut < 0:
        return text, False
    return text[:cut], True


def prompt_seed(seed: int, token_ids: Sequence[int]) -> int:
    """The sampling seed of one prompt: a digest of the configured seed and the prompt's tokens."""
    blob = f"{int(seed)}:" + ",".join(str(int(t)) for t in token_ids)
    return int(hashlib.sha256(blob.encode()).hexdigest()[:15], 16)


def cache_key(model_id: str, prompt: Prompt, config: GenerationConfig, namespace: str = "") -> str:
    payload = {
        "model": model_id,
        "namespace": namespace,
        "prompt": normalize_prompt(prompt),
        "config": config.key(),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class LanguageModel(abc.ABC):
    """What every generation backend offers. Subclasses call :meth:`_record` from ``generate``."""

    def __init__(self) -> None:
        self.usage = Usage()

    @property
    def cache_identity(self) -> str:
        """What names this model in cache keys: everything that changes its answers beyond the prompt and
        the generation settings (by default its id; a local model adds its weights' fingerprint)."""
        return self.model_id

    @property
    @abc.abstractmethod
    def model_id(self) -> str:
        """Names the model's behaviour (used in cache keys)."""

    @abc.abstractmethod
    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        """One completion per prompt, in order."""

    def generate_one(self, prompt: Prompt, config: GenerationConfig) -> Completion:
        if not isinstance(prompt, str) and not isinstance(prompt, Sequence):
            raise TypeError(f"a prompt is a string or a list of messages, got {type(prompt).__name__}")
        return self.generate([prompt], config)[0]

    def _record(self, completions: Sequence[Completion]) -> None:
        u = self.usage
        u.calls += 1
        u.completions += len(completions)
        prompt_tokens = sum(c.prompt_tokens for c in completions)
        completion_tokens = sum(c.completion_tokens for c in completions)
        u.prompt_tokens += prompt_tokens
        u.completion_tokens += completion_tokens
        self._meter(completions, prompt_tokens, completion_tokens)

    def _meter(self, completions: Sequence[Completion], prompt_tokens: int, completion_tokens: int) -> None:
        """Tell the active meters (:mod:`tomlab.backends.meter`) what this engine computed."""
        meter.record(prompts=len(completions), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def reset_usage(self) -> None:
        self.usage = Usage()


def _check_prompts(prompts: Sequence[Prompt]) -> list[Prompt]:
    if isinstance(prompts, str):
        raise TypeError("generate() takes a sequence of prompts; use generate_one() for a single prompt")
    return list(prompts)


class _StopOnStrings:
    """A per-row stopping criterion: a row is done once its generated tail contains a stop string."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_len = prompt_len
        # byte-level tokens may carry a fraction of a character: look back far enough
        self.window = 4 * max((len(s) for s in self.stop), default=1) + 8

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len:]
        tail = new[:, -self.window:].tolist()
        done = [
            any(s in text for s in self.stop)
            for text in self.tokenizer.batch_decode(tail, skip_special_tokens=True)
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The token ids that end a completion: the model's generation config's and the tokenizer's."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for v in (gen_eos, tokenizer.eos_token_id):
        if v is None:
            continue
        if isinstance(v, int):
            ids.add(v)
        else:
            ids.update(int(x) for x in v)
    return ids


class TransformersLM(LanguageModel):
    """A local causal LM (a :class:`tomlab.models.LoadedModel`) behind :class:`LanguageModel`.

    Prompts are sorted by length into batches of ``batch_size`` and left-padded; greedy decoding gives
    the same text whatever the batching. Sampling runs in the same batches, each row drawing from its
    own random generator seeded from ``config.seed`` and the prompt's tokens (:func:`prompt_seed`), so a
    sample is a function of (model, prompt, settings, seed), whatever else is asked with it or already
    cached (up to floating-point rounding of the batch shape); torch's global RNG is not used.
    The model, its generation config and the tokenizer are not modified, so forward hooks that callers
    put on the model (steering) apply during ``generate`` and are theirs to remove.
    """

    def __init__(self, loaded: Any, batch_size: int = 8, model_id: str | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.batch_size = int(batch_size)
        self._model_id = model_id or loaded.name
        self.device = torch.device(getattr(loaded, "device", None) or next(self.model.parameters()).device)
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token (load it with tomlab.models.load_model)")

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def cache_identity(self) -> str:
        """The id with the loaded model's fingerprint (weights sample, dtype, device type, tokenizer, chat
        template, generation config and end/pad ids; see ``LoadedModel.fingerprint``): another seed, config,
        checkpoint or generation_config.json under the same name misses the cache."""
        fingerprint = getattr(self.loaded, "fingerprint", None)
        return f"{self._model_id}#{fingerprint()}" if callable(fingerprint) else self._model_id

    # rendering -------------------------------------------------------------------------------

    def render(self, prompt: Prompt, config: GenerationConfig) -> str:
        """The exact text the model is fed for ``prompt``."""
        if self._template(config):
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else normalize_prompt(prompt)
            return apply_chat(self.tokenizer, messages)
        return prompt if isinstance(prompt, str) else messages_as_lines(normalize_prompt(prompt))

    def encode(self, prompt: Prompt, config: GenerationConfig) -> list[int]:
        """Token ids of the rendered prompt. A chat template writes its own special tokens; plain
        text gets the tokenizer's usual ones (e.g. BOS)."""
        text = self.render(prompt, config)
        ids = self.tokenizer(text, add_special_tokens=not self._template(config))["input_ids"]
        return list(ids)

    def _template(self, config: GenerationConfig) -> bool:
        """Whether prompts go through the chat template: as configured, unless the model has none."""
        return uses_chat_template(self.tokenizer, bool(config.chat_template), self._model_id)

    def _eos_ids(self) -> set[int]:
        return eos_ids(self.model, self.tokenizer)


    # generation ------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        prompts = _check_prompts(prompts)
        encoded = [self.encode(p, config) for p in prompts]
        for i, ids in enumerate(encoded):
            if not ids:
                raise ValueError(f"prompt {i} renders to no tokens")
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        results: list[Completion | None] = [None] * len(encoded)
        eos = self._eos_ids()
        # at most batch_size prompts, fewer where their KV cache would pass the model's memory plan
        batches = memory_batches(self.loaded, order, [len(e) for e in encoded], self.batch_size,
                                 extra_tokens=int(config.max_new_tokens))
        # sampling: each row draws from its own generator seeded from its prompt
        run = self._generate_batch if config.greedy else self._sample_batch
        with torch.inference_mode():
            for idx in batches:
                for i, c in zip(idx, run([encoded[i] for i in idx], config, eos)):
                    results[i] = c
        out = [c for c in results if c is not None]
        assert len(out) == len(prompts)
        self._record(out)
        return out

    def _sample_batch(self, batch: list[list[int]], config: GenerationConfig, eos: set[int]) -> list[Completion]:
        seeds = [prompt_seed(config.seed, ids) for ids in batch]
        new = sample_loop(self.model, batch, int(self.tokenizer.pad_token_id), config, eos, seeds, self.device)
        return finish_completions(self.tokenizer, batch, new, eos, config)

    def _generate_batch(self, batch: list[list[int]], config: GenerationConfig, eos: set[int]) -> list[Completion]:
        from transformers import GenerationConfig as HFGenerationConfig
        from transformers import StoppingCriteriaList

        tok = self.tokenizer
        pad = int(tok.pad_token_id)
        input_ids, attention = left_pad(batch, pad, self.device)
        width = input_ids.shape[1]

        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": int(config.max_new_tokens),
            "pad_token_id": pad,
            "eos_token_id": sorted(eos) if eos else None,
            "use_cache": True,
        }
        if config.greedy:
            gen_kwargs["do_sample"] = False
        else:
            gen_kwargs.update(do_sample=True, temperature=float(config.temperature), top_p=float(config.top_p),
                              top_k=0)
        stopping = StoppingCriteriaList()
        if any(config.stop):
            stopping.append(_StopOnStrings(tok, config.stop, width))  # type: ignore[arg-type]
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            generation_config=HFGenerationConfig(**gen_kwargs),
            stopping_criteria=stopping,
        )
        return finish_completions(tok, batch, output[:, width:].tolist(), eos, config)


def finish_completions(tokenizer: Any, prompts: Sequence[Sequence[int]], new_tokens: Sequence[Sequence[int]],
                       eos: set[int], config: GenerationConfig) -> list[Completion]:
    """Completions from each prompt's ids and the tokens generated after it: cut at the first end-of-sequence
    token, decoded as they read after the prompt (:func:`decode_after`), cut at a stop string, with the
    finish reason and token counts (shared by every local decoding loop)."""
    completions = []
    for ids, gen in zip(prompts, new_tokens):
        end = next((k for k, t in enumerate(gen) if t in eos), None)
        kept = list(gen if end is None else gen[:end])
        text = decode_after(tokenizer, ids, kept)
        text, cut = truncate_at_stop(text, config.stop)
        if cut:
            n_completion = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
            reason = "stop"
        else:
            n_completion = len(kept)
            reason = "stop" if end is not None else "length"
        completions.append(Completion(text=text, prompt_tokens=len(ids), completion_tokens=n_completion,
                                      finish_reason=reason))
    return completions


def decode_after(tokenizer: Any, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> str:
    """The text of ``new_ids`` as it reads after ``prompt_ids``, special tokens skipped.

    Decoding new tokens on their own loses a leading space with SentencePiece tokenizers (Llama,
    Mistral: ``"▁a"`` alone decodes to ``"a"``), so ``"Answer:"`` + ``" a)"`` would read
    ``"Answer:a)"``.  The prompt and the completion are decoded together, as the released BigToM
    evaluation does, and the prompt's own text is cut off; if the joint text does not start with the
    prompt's (a character split across the boundary), the new tokens are decoded alone.
    """
    if not new_ids:
        return ""
    head = tokenizer.decode(list(prompt_ids), skip_special_tokens=True)
    full = tokenizer.decode([*prompt_ids, *new_ids], skip_special_tokens=True)
    if full.startswith(head):
        return full[len(head):]
    return tokenizer.decode(list(new_ids), skip_special_tokens=True)


class CachedLM(LanguageModel):
    """A content-addressed on-disk cache in front of any :class:`LanguageModel`.

    Key: sha256 of the JSON of ``{"model", "namespace", "prompt", "config"}``, where ``model`` is the inner
    model's :attr:`LanguageModel.cache_identity` (a local model's includes its weights' fingerprint); one
    JSON file per key at
    ``cache_dir/<first two hex>/<rest>.json``, written atomically. ``namespace`` separates generations
    that share a model id but not a behaviour (e.g. steered vs unsteered). Unreadable or malformed files
    count as misses and are overwritten; only a regular file is read (never through a symlink, never
    blocking on a FIFO): a link or FIFO at an entry's path is a miss and is replaced, a directory is a
    miss whose answer is not stored. ``usage`` counts what this wrapper returned (hits included);
    the inner model's own ``usage`` counts what it computed; ``hits`` / ``misses`` count prompts.
    """

    def __init__(self, inner: LanguageModel, cache_dir: str | os.PathLike[str], namespace: str = "") -> None:
        super().__init__()
        self.inner = inner
        self.cache_dir = Path(cache_dir)
        self.namespace = namespace
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def cache_identity(self) -> str:
        return self.inner.cache_identity

    def _meter(self, completions: Sequence[Completion], prompt_tokens: int, completion_tokens: int) -> None:
        # the inner model reports what it computed; the meters learn how many answers came from disk
        meter.record(cache_hits=sum(1 for c in completions if c.cached))

    def encode(self, prompt: Prompt, config: GenerationConfig) -> list[int]:
        """The inner model's token ids of ``prompt`` (a local model's; a cache holds no tokenizer)."""
        return list(self.inner.encode(prompt, config))  # type: ignore[attr-defined]

    def lookup(self, prompt: Prompt, config: GenerationConfig) -> Completion | None:
        """The cached completion of ``prompt`` (``cached=True``), or None; counts nothing."""
        return self._load(self.key(prompt, config))

    def remember(self, prompt: Prompt, config: GenerationConfig, completion: Completion) -> None:
        """Store a completion computed elsewhere (e.g. by shared-prefix branches) under ``prompt``'s key."""
        self._store(self.key(prompt, config), prompt, config, completion)

    def key(self, prompt: Prompt, config: GenerationConfig) -> str:
        return cache_key(self.inner.cache_identity, prompt, config, self.namespace)

    def path_for(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key[2:]}.json"

    def _load(self, key: str) -> Completion | None:
        path = self.path_for(key)
        try:
            raw = read_regular(path)
            if raw is None:
                return None
            data = json.loads(raw.decode("utf-8"))
            c = data["completion"]
            if data.get("key") != key or c["finish_reason"] not in FINISH_REASONS:
                return None
            return Completion(
                text=_as(str, c["text"]),
                prompt_tokens=_as(int, c["prompt_tokens"]),
                completion_tokens=_as(int, c["completion_tokens"]),
                finish_reason=c["finish_reason"],
                cached=True,
            )
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None

    def _store(self, key: str, prompt: Prompt, config: GenerationConfig, completion: Completion) -> None:
        record = {
            "key": key,
            "model": self.inner.model_id,
            "namespace": self.namespace,
            "prompt": normalize_prompt(prompt),
            "config": config.key(),
            "completion": {
                "text": completion.text,
                "prompt_tokens": int(completion.prompt_tokens),
                "completion_tokens": int(completion.completion_tokens),
                "finish_reason": completion.finish_reason,
            },
        }
        try:
            write_json(self.path_for(key), record)  # replaces a link or FIFO at the path, never writes through it
        except (IsADirectoryError, NotADirectoryError, FileExistsError):
            pass  # a folder holds the entry's path, or a file its shard's: the answer stays uncached

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        prompts = _check_prompts(prompts)
        identity = self.inner.cache_identity  # read once a call (a local model's digests its generation config)
        keys = [cache_key(identity, p, config, self.namespace) for p in prompts]
        found: dict[str, Completion] = {}
        for k in dict.fromkeys(keys):
            c = self._load(k)
            if c is not None:
                found[k] = c
        miss_keys = [k for k in dict.fromkeys(keys) if k not in found]
        hits = sum(1 for k in keys if k in found)
        self.hits += hits
        self.misses += len(keys) - hits
        if miss_keys:
            first = {k: p for k, p in reversed(list(zip(keys, prompts)))}  # first prompt with each key
            fresh = self.inner.generate([first[k] for k in miss_keys], config)
            if len(fresh) != len(miss_keys):
                raise RuntimeError(
                    f"{self.inner.model_id} returned {len(fresh)} completions for {len(miss_keys)} prompts"
                )
            for k, c in zip(miss_keys, fresh):
                self._store(k, first[k], config, c)
        else:
            fresh = []
        computed = dict(zip(miss_keys, fresh))
        out = []
        for k in keys:
            if k in found:
                out.append(found[k])
            else:
                c = computed[k]
                out.append(c if not c.cached else Completion(c.text, c.prompt_tokens, c.completion_tokens,
                                                             c.finish_reason, cached=False))
        self._record(out)
        return out


def _as(kind: type, value: Any) -> Any:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"expected int, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise TypeError(f"expected str, got {value!r}")
    return value


_WORD = re.compile(r"\S+")


class ScriptedLM(LanguageModel):
    """Canned answers: ``script`` is ``fn(prompt_text) -> str`` or a list of replies cycled in order.

    Tokens are whitespace-separated words. Stop strings cut the reply (``"stop"``); more than
    ``max_new_tokens`` words are cut to that many (``"length"``). ``prompts_seen`` records every prompt text.
    """

    def __init__(self, script: Callable[[str], str] | Sequence[str], model_id: str = "scripted") -> None:
        super().__init__()
        if callable(script):
            self._fn: Callable[[str], str] = script
        else:
            replies = list(script)
            if not replies:
                raise ValueError("ScriptedLM needs at least one reply")
            cycle = itertools.cycle(replies)
            self._fn = lambda _text: next(cycle)
        self._model_id = model_id
        self.prompts_seen: list[str] = []

    @property
    def model_id(self) -> str:
        return self._model_id

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        out = []
        for p in _check_prompts(prompts):
            text = prompt_text(p)
            self.prompts_seen.append(text)
            reply, _ = truncate_at_stop(str(self._fn(text)), config.stop)
            reason = "stop"
            words = list(_WORD.finditer(reply))
            if len(words) > config.max_new_tokens:  # ran out before reaching the end or a stop string
                reply = reply[:words[config.max_new_tokens - 1].end()]
                words = words[:config.max_new_tokens]
                reason = "length"
            out.append(Completion(text=reply, prompt_tokens=len(text.split()), completion_tokens=len(words),
                                  finish_reason=reason))
        self._record(out)
        return out
