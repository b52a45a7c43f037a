"""One way to build a backend from a config's model section: a local model (embedded GGUF, hub id,
folder or random test model) run by transformers, or a served one (any OpenAI-compatible server),
optionally behind the content-addressed completion cache.

Every command that talks to a model builds it here, so the three steps (load, wrap, cache) are
written once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from tomlab.backends.lm import CachedLM, LanguageModel, TransformersLM
from tomlab.backends.models import LoadedModel, load_model_from_config
from tomlab.backends.served import OpenAICompatibleLM
from tomlab.schema import served_spec_problems

#: The keys a served-model spec may hold (``base_url`` marks a spec as served).


def offline_unless_allowed(spec: Mapping[str, Any]) -> None:
    """Keep this process off every model hub unless the model section sets ``allow_download``."""
    if not spec.get("allow_download", False):
        os.environ["HF_HUB_OFFLINE"] = "1"


def load_local(spec: Mapping[str, Any], cache_dir: str | os.PathLike[str] | None = None,
               where: str = "model") -> LoadedModel:
    """Load the local model a config's model section names (offline unless it allows downloads)."""
    if "name" not in spec:
        raise ValueError(f"{where}: give a local model 'name' or a server 'base_url'")
    offline_unless_allowed(spec)
    return load_model_from_config(dict(spec), cache_dir=cache_dir)


def served_model(spec: Mapping[str, Any], where: str = "model") -> OpenAICompatibleLM:
    """A client for the served model a spec with ``base_url`` describes."""
    problems = served_spec_problems(spec, where)
    if problems:
        raise ValueError("; ".join(problems))
    return OpenAICompatibleLM(spec["base_url"], spec.get("model", "default"),
                              api_key_env=spec.get("api_key_env", "OPENAI_API_KEY"),
                              timeout=spec.get("timeout", 60.0), max_retries=spec.get("max_retries", 3),
                              concurrency=spec.get("concurrency", 4))


def cached(lm: LanguageModel, completion_cache: str | os.PathLike[str] | None, namespace: str = "") -> LanguageModel:
    """``lm`` behind the completion cache in ``completion_cache`` (``lm`` itself when there is none)."""
    return CachedLM(lm, completion_cache, namespace=namespace) if completion_cache else lm


def generator(loaded: LoadedModel, batch_size: int | str = 8,
              completion_cache: str | os.PathLike[str] | None = None) -> LanguageModel:
    """A loaded local model as a text generator, behind the completion cache when one is given;
    ``batch_size="auto"`` lets the backend choose (:func:`tomlab.backends.batching.auto_batch_size`)."""
    from tomlab.backends.batching import resolve_batch_size

    return cached(TransformersLM(loaded, batch_size=resolve_batch_size(loaded, batch_size)), completion_cache)


def build_backend(spec: Mapping[str, Any], *, batch_size: int | str = 8, completion_cache: str | os.PathLike[str] | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, where: str = "model") -> LanguageModel:
    """The backend one spec describes: served when it has a ``base_url``, else local."""
    if "base_url" in spec:
        return cached(served_model(spec, where), completion_cache)
    return generator(load_local(spec, cache_dir, where), batch_size, completion_cache)


def build_backends(models: Mapping[str, Any], roles: tuple[str, ...], *, batch_size: int | str = 8,
                   completion_cache: str | os.PathLike[str] | None = None,
                   cache_dir: str | os.PathLike[str] | None = None, where: str = "models") -> dict[str, LanguageModel]:
    """A backend per role from ``{"default": spec, role: spec | None, ...}``; equal specs share one backend."""
    if "default" not in models:
        raise ValueError(f"{where}: a 'default' model is required")
    built: dict[str, LanguageModel] = {}
    out: dict[str, LanguageModel] = {}
    for role in ("default", *roles):
        spec = models.get(role) or models["default"]
        key = json.dumps(spec, sort_keys=True)
        if key not in built:
            built[key] = build_backend(spec, batch_size=batch_size, completion_cache=completion_cache,
                                       cache_dir=cache_dir, where=f"{where}.{role}")
        out[role] = built[key]
    return out


def usage_report(lm: LanguageModel) -> dict[str, Any]:
    """Tokens used, and the cache's hits and misses when there is a cache."""
    out: dict[str, Any] = {"usage": lm.usage.as_dict()}
    if isinstance(lm, CachedLM):
        out.update(cache_hits=lm.hits, cache_misses=lm.misses)
    return out
