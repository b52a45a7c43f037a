"""The configuration schema, shipped with the package: the one place where every setting and its default
is written, and the project's vocabularies (capture sites, tasks, direction kinds, agent types, ...).
Snakemake validates the config against it (filling in defaults), the command line takes its flags'
defaults and choices from it, and the library's constants (``SITES``, ``TASKS``, ...) are read from its
vocabularies, so none of these is said twice.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: The JSON schema (YAML) of the pipeline's configuration.
SCHEMA_PATH: Path = Path(str(resources.files("tomlab").joinpath("config.schema.yaml")))


@cache
def load_schema() -> dict[str, Any]:
    """The schema as a mapping."""
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return load_schema().get("$defs", {}).get(ref.removeprefix("#/$defs/"), node)
    return node


def unknown_keys(config: Any, node: dict[str, Any] | None = None, prefix: str = "") -> list[str]:
    """Every key of ``config`` the schema does not know, as a dotted name with the nearest known names
    ("stres: did you mean stress?"), where the schema allows no other keys."""
    node = _resolve(node if node is not None else load_schema())
    props = node.get("properties")
    if not isinstance(config, dict) or not props:
        return []
    found = []
    for key, value in config.items():
        if key in props:
            found += unknown_keys(value, props[key], f"{prefix}{key}.")
        elif node.get("additionalProperties", True) is False or prefix == "":
            near = difflib.get_close_matches(str(key), list(props), n=3)
            hint = f"did you mean {' or '.join(near)}?" if near else f"known keys: {', '.join(sorted(props))}"
            found.append(f"{prefix}{key} ({hint})")
    return found


def check_keys(config: Any) -> None:
    """Refuse a config with keys the schema does not know, naming each and the nearest valid names
    (instead of the validator's dump of the whole schema)."""
    bad = unknown_keys(config)
    if bad:
        raise ValueError(f"unknown config key{'s' if len(bad) > 1 else ''}: {'; '.join(bad)}")


#: The keys a served-model spec may have, with the types each takes.
SERVED_SPEC: dict[str, tuple[type, ...]] = {
    "base_url": (str,), "model": (str,), "api_key_env": (str, type(None)), "timeout": (int, float),
    "max_retries": (int,), "concurrency": (int,),
}
#: Where a config names a model that may be served: dotted keys (``*``: every entry of a mapping).
MODEL_SPEC_KEYS: tuple[str, ...] = ("models.*", "evaluation.served", "team.model", "team.agent_models.*", "debate.models.*")


def served_spec_problems(spec: Any, where: str) -> list[str]:
    """What is wrong with one served-model spec (``{base_url, model, api_key_env, timeout, max_retries,
    concurrency}``), each naming ``where`` and the key; never a value that could be a secret."""
    if not isinstance(spec, dict):
        return [f"{where}: a served model is a mapping with base_url, got {type(spec).__name__}"]
    problems = []
    if "api_key" in spec or "key" in spec:
        problems.append(f"{where}: an inline API key is refused (it would reach command lines, logs and caches); "
                        "put it in an environment variable and name the variable with api_key_env")
    for key, value in spec.items():
        if key in ("api_key", "key"):
            continue
        if key not in SERVED_SPEC:
            near = difflib.get_close_matches(str(key), list(SERVED_SPEC), n=1)
            problems.append(f"{where}.{key}: unknown key of a served model" + (f" (did you mean {near[0]}?)" if near else
                                                                                f"; known: {', '.join(SERVED_SPEC)}"))
        elif not isinstance(value, SERVED_SPEC[key]) or isinstance(value, bool):
            kinds = " or ".join("null" if t is type(None) else t.__name__ for t in SERVED_SPEC[key])
            problems.append(f"{where}.{key}: expected {kinds}, got {type(value).__name__}")
    url = spec.get("base_url")
    if isinstance(url, str):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(f"{where}.base_url: must start with http:// or https:// and name a host")
        elif parts.query or parts.fragment or parts.username or parts.password:
            problems.append(f"{where}.base_url: must not carry a query string, fragment or credentials (a key there "
                            "would be kept in caches and logs); name the key's variable with api_key_env")
    elif "base_url" not in spec:
        problems.append(f"{where}: a served model needs base_url")
    for key, low in (("timeout", 0), ("max_retries", -1), ("concurrency", 0)):
        value = spec.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= low:
            problems.append(f"{where}.{key}: must be {'positive' if low == 0 else 'at least 0'}")
    return problems


def check_model_specs(config: Any) -> None:
    """Refuse a served-model spec anywhere the config names a model (:data:`MODEL_SPEC_KEYS`) that has an
    unknown key, a value of the wrong type, a URL carrying a secret or an inline key, before anything
    else reads it (the error names the key, never a value)."""
    problems: list[str] = []
    for dotted in MODEL_SPEC_KEYS:
        nodes: list[tuple[str, Any]] = [("", config)]
        for part in dotted.split("."):
            nxt = []
            for where, node in nodes:
                if not isinstance(node, dict):
                    continue
                items = node.items() if part == "*" else [(part, node[part])] if part in node else []
                nxt += [(f"{where}.{k}" if where else str(k), v) for k, v in items]
            nodes = nxt
        for where, spec in nodes:
            if isinstance(spec, dict) and ("base_url" in spec or "api_key" in spec or dotted == "evaluation.served"):
                problems += served_spec_problems(spec, where)
    if problems:
        raise ValueError("; ".join(problems))


def default(key: str) -> Any:
    """The schema's default of a dotted config key (``"probing.C_binary"``); a clear error when it has none."""
    node: dict[str, Any] = load_schema()
    for part in key.split("."):
        props = node.get("properties", {})
        if part not in props:
            raise KeyError(f"{SCHEMA_PATH}: no config key {key!r}")
        node = props[part]
    if "default" not in node:
        raise KeyError(f"{SCHEMA_PATH}: config key {key!r} has no default")
    return node["default"]


def vocabulary(name: str) -> tuple[str, ...]:
    """The values of one of the schema's vocabularies (``$defs``): ``"site"``, ``"task"``, ``"mode"``,
    ``"direction_kind"``, ``"agent_type"``, ``"debate_task"``, ``"debate_method"``, ``"split_mode"``."""
    defs = load_schema().get("$defs", {})
    if name not in defs or "enum" not in defs[name]:
        raise KeyError(f"{SCHEMA_PATH}: no vocabulary {name!r} (known: {sorted(defs)})")
    return tuple(defs[name]["enum"])
