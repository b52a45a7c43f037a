"""A model's shape without its weights: what the plan needs to count FLOPs, bytes and KV cache.

:func:`geometry_of` reads it from a model spec offline: the paper's two models and the embedded ones are
known here (their published ``config.json`` values), a ``random:<family>`` model is built from its
config alone (no weights), and a folder or a Hugging Face id is read from its ``config.json`` (the
folder, the local Hugging Face cache, or the hub where ``allow_download`` is true).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Bytes per element of the run's dtypes.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Geometry:
    """Layers, widths and vocabulary of a decoder-only transformer with gated MLPs."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool = False

    def __post_init__(self) -> None:
        for field, value in asdict(self).items():
            if field != "tied" and (not isinstance(value, int) or value < 1):
                raise ValueError(f"geometry: {field} must be a positive integer, got {value!r}")

    @property
    def layer_params(self) -> int:
        """Weights of one layer: the four attention projections and the gated MLP's three."""
        attention = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        return attention + 3 * self.hidden * self.intermediate

    @property
    def params(self) -> int:
        """Every weight matrix's elements (norms left out): layers, embedding and (untied) LM head."""
        embedding = self.vocab * self.hidden
        return self.layers * self.layer_params + embedding * (1 if self.tied else 2)

    def weight_bytes(self, dtype: str) -> int:
        return self.params * DTYPE_BYTES[dtype]

    def flops_per_token(self, context: float = 0.0, logits: bool = False) -> float:
        """Forward FLOPs of one token: 2 per weight of the layers, attention over ``context`` earlier
        tokens (scores and weighted values), and the LM head when its logits are computed."""
        matmul = 2.0 * self.layers * self.layer_params
        attention = 4.0 * self.layers * self.heads * self.head_dim * max(context, 0.0)
        head = 2.0 * self.vocab * self.hidden if logits else 0.0
        return matmul + attention + head


#: The published geometry of the models the plan knows without any file (their config.json values).
KNOWN: dict[str, Geometry] = {
    # mistralai/Mistral-7B-Instruct-v0.2
    "mistralai/Mistral-7B-Instruct-v0.2": Geometry(32, 4096, 32, 8, 128, 14336, 32000),
    # deepseek-ai/deepseek-llm-7b-chat
    "deepseek-ai/deepseek-llm-7b-chat": Geometry(30, 4096, 32, 32, 128, 11008, 102400),
    # the embedded GGUFs (tomlab.backends.models.EMBEDDED_MODELS)
    "embedded:smollm2-135m-instruct": Geometry(30, 576, 9, 3, 64, 1536, 49152, tied=True),
    "embedded:gemma3-270m": Geometry(18, 640, 4, 1, 256, 2048, 262144, tied=True),
}


def from_config(config: Mapping[str, Any], where: str = "config.json") -> Geometry:
    """The geometry a Hugging Face ``config.json`` (or a text model's ``text_config`` in it) describes."""
    cfg = config.get("text_config") if isinstance(config.get("text_config"), Mapping) else config
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "num_key_value_heads",
                "head_dim", "intermediate_size"):
        value = cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{where}: {key} must be a positive integer, got {str(value)[:40]!r}")
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        return Geometry(
            layers=int(cfg["num_hidden_layers"]), hidden=hidden, heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            intermediate=int(cfg.get("intermediate_size") or 4 * hidden),
            vocab=int(cfg["vocab_size"]),
            tied=bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", False))),
        )
    except KeyError as err:
        raise ValueError(f"{where}: no {err.args[0]!r}, so the model's geometry is unknown") from err
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: not a model configuration ({err})") from err


def _random(spec: Mapping[str, Any]) -> Geometry:
    from transformers import AutoConfig

    from tomlab.backends.models import RANDOM_DEFAULTS
    from tomlab.backends.random_tokenizers import random_tokenizer

    family = str(spec["name"]).removeprefix("random:")
    kwargs = {**RANDOM_DEFAULTS, **(spec.get("random_config") or {})}
    if "vocab_size" not in kwargs:
        kwargs["vocab_size"] = len(random_tokenizer(spec.get("random_tokenizer") or "bytes"))
    try:
        config = AutoConfig.for_model(family, **kwargs)
    except ValueError as err:
        raise ValueError(f"model {spec['name']!r}: no random model of that family ({err})") from err
    return from_config(config.to_dict(), f"model {spec['name']!r}")


def _config_file(name: str, spec: Mapping[str, Any]) -> Path | None:
    folder = Path(os.path.expanduser(name))
    if folder.is_dir():
        return folder / "config.json" if (folder / "config.json").is_file() else None
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers brings it
        return None
    revision = spec.get("revision")
    found = try_to_load_from_cache(name, "config.json", revision=revision)
    if isinstance(found, str):
        return Path(found)
    if spec.get("allow_download"):
        return Path(hf_hub_download(name, "config.json", revision=revision))
    return None


def geometry_of(spec: Mapping[str, Any], where: str = "model") -> Geometry:
    """The geometry of a local model spec (``{name: ..., random_config: ...}``), offline unless the spec
    allows downloads; an unknown model is a :class:`ValueError` naming ``where`` and what to do."""
    name = str(spec.get("name") or "")
    if name in KNOWN:
        return KNOWN[name]
    if name.startswith("random:"):
        return _random(spec)
    path = _config_file(name, spec)
    if path is None:
        raise ValueError(
            f"{where}.name {name!r}: its geometry is unknown offline (known: {sorted(KNOWN)}); give a folder "
            "with its config.json, put the model in the Hugging Face cache, or set allow_download: true")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable config.json ({err})") from err
    if not isinstance(config, Mapping):
        raise ValueError(f"{path}: a config.json holds one JSON object")
    return from_config(config, str(path))
