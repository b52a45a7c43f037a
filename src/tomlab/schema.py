"""The configuration schema, shipped with the package: the one place where every setting and its default
is written, and the project's vocabularies (capture sites, tasks, direction kinds, agent types, ...).
Snakemake validates the config against it (filling in defaults), the command line takes its flags'
defaults and choices from it, and the library's constants (``SITES``, ``TASKS``, ...) are read from its
vocabularies, so none of these is said twice.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
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


#: What a panel name may look like: it becomes a folder name and a Snakemake wildcard value.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: What an environment variable's name may look like (``api_key_env`` names one; it never holds the key).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The openings of common API keys and tokens (OpenAI, Anthropic, Hugging Face, GitHub, GitLab, Slack, AWS,
#: Google, a JWT), each followed by 16 or more characters of the key (a name such as ``hf_smollm2-135m`` is not one).
_KEY_OPENINGS = re.compile(r"((sk|pk|rk|hf|ghp|gho|ghu|ghs|ghr|glpat|xox[abprs])[-_]|github_pat_|AKIA|AIza|eyJ"
                           r"|(?i:bearer\s+))[A-Za-z0-9_\-./+=]{16}")


def looks_like_secret(text: str) -> bool:
    """Whether ``text`` looks like an API key or token: a common key's opening, or a run of 24 or more letters
    and digits mixing both (a model's or a variable's name is words and short numbers)."""
    if _KEY_OPENINGS.match(text.strip()):
        return True
    runs = re.findall(r"[A-Za-z0-9]{24,}", text)
    return any(re.search(r"[0-9]", r) and re.search(r"[A-Za-z]", r) for r in runs)


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
    env = spec.get("api_key_env")
    if isinstance(env, str) and (not ENV_NAME.fullmatch(env) or looks_like_secret(env)):
        problems.append(f"{where}.api_key_env: must be the name of the environment variable that holds the key "
                        "(letters, digits and '_', not starting with a digit), not the key; the value is not shown")
    for key, low in (("timeout", 0), ("max_retries", -1), ("concurrency", 0)):
        value = spec.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= low:
            problems.append(f"{where}.{key}: must be {'positive' if low == 0 else 'at least 0'}")
    return problems


def _values_at(config: Any, dotted: str) -> list[tuple[str, Any]]:
    """(dotted name, value) of every value of ``config`` at ``dotted`` (``*``: every entry of a mapping)."""
    nodes: list[tuple[str, Any]] = [("", config)]
    for part in dotted.split("."):
        nxt = []
        for where, node in nodes:
            if not isinstance(node, dict):
                continue
            items = node.items() if part == "*" else [(part, node[part])] if part in node else []
            nxt += [(f"{where}.{k}" if where else str(k), v) for k, v in items]
        nodes = nxt
    return nodes


def _schema_types(dotted: str) -> set[str]:
    """The JSON types the schema allows at a dotted key (``*``: any entry of a mapping, named or not)."""
    nodes: list[Any] = [load_schema()]
    for part in dotted.split("."):
        nodes = [_resolve(n) for n in nodes if isinstance(n, dict)]
        if part == "*":
            named = [p for n in nodes for p in n.get("properties", {}).values()]
            nodes = [n.get("additionalProperties") for n in nodes] + named
        else:
            nodes = [n.get("properties", {}).get(part) for n in nodes]
    kinds: set[str] = set()
    for node in nodes:
        kind = node.get("type", []) if isinstance(node, dict) else []
        kinds |= {kind} if isinstance(kind, str) else set(kind)
    return kinds


def _name_problem(value: Any, where: str, what: str) -> str | None:
    """What is wrong with a value where ``what`` belongs and only a panel model's name may be a string, never
    repeating the value (it may be a key pasted in the wrong place)."""
    if not isinstance(value, str):
        return f"config key '{where}': {what} belongs here, got {type(value).__name__} (not shown)"
    if looks_like_secret(value):
        return (f"config key '{where}': {what} belongs here, and this value looks like an API key (not shown); "
                "a served model's key goes in an environment variable named by its api_key_env")
    if not NAME_PATTERN.fullmatch(value):
        return (f"config key '{where}': {what} belongs here, and this value is not a panel model's name (letters, "
                "digits, '.', '_', '-'; at most 64) (not shown)")
    return None


def model_reference_problems(config: Any) -> list[str]:
    """What is wrong where the config names a model (:data:`MODEL_SPEC_KEYS`, the ``<experiment>.panel``
    lists) other than a served spec's own keys: a value that is neither a spec nor a panel model's name,
    or a string that looks like an API key; each names the key, never the value."""
    problems = []
    for dotted in MODEL_SPEC_KEYS:
        names = "string" in _schema_types(dotted)
        what = "a model spec (a mapping)" + (" or a panel model's name" if names else "")
        for where, value in _values_at(config, dotted):
            if value is None or isinstance(value, dict):
                continue
            problem = (_name_problem(value, where, what) if names and isinstance(value, str) else
                       f"config key '{where}': {what} belongs here, got {type(value).__name__} (not shown)")
            problems += [problem] if problem else []
    sections = [k for k, v in load_schema()["properties"].items() if "panel" in v.get("properties", {})]
    for where, entries in _values_at(config, "*.panel"):
        if where.split(".")[0] not in sections or entries is None:
            continue
        if not isinstance(entries, list):
            problems.append(f"config key '{where}': a list of panel model names belongs here, got "
                            f"{type(entries).__name__} (not shown)")
            continue
        what = "a panel model's name"
        problems += [p for i, n in enumerate(entries) if (p := _name_problem(n, f"{where}[{i}]", what))]
    return problems


def check_model_specs(config: Any) -> None:
    """Refuse, before anything else reads it (the schema's validator included, which would repeat the value),
    a served-model spec anywhere the config names a model (:data:`MODEL_SPEC_KEYS`) that has an unknown key,
    a value of the wrong type, a URL carrying a secret, an inline key or a key where its variable's name
    belongs, and a model reference that is neither a spec nor a panel model's name (a pasted key); the error
    names the key, never a value."""
    problems = model_reference_problems(config)
    for dotted in MODEL_SPEC_KEYS:
        for where, spec in _values_at(config, dotted):
            if isinstance(spec, dict) and ("base_url" in spec or "api_key" in spec or dotted == "evaluation.served"):
                problems += served_spec_problems(spec, where)
    if problems:
        raise ValueError("; ".join(problems))


def _key_node(key: str) -> dict[str, Any]:
    node: dict[str, Any] = load_schema()
    for part in key.split("."):
        props = node.get("properties", {})
        if part not in props:
            raise KeyError(f"{SCHEMA_PATH}: no config key {key!r}")
        node = props[part]
    return node


def default(key: str) -> Any:
    """The schema's default of a dotted config key (``"probing.C_binary"``); a clear error when it has none."""
    node = _key_node(key)
    if "default" not in node:
        raise KeyError(f"{SCHEMA_PATH}: config key {key!r} has no default")
    return node["default"]


def maximum(key: str) -> Any:
    """The schema's ``maximum`` of a dotted config key; a clear error when it has none."""
    node = _key_node(key)
    if "maximum" not in node:
        raise KeyError(f"{SCHEMA_PATH}: config key {key!r} has no maximum")
    return node["maximum"]


def vocabulary(name: str) -> tuple[str, ...]:
    """The values of one of the schema's vocabularies (``$defs``): ``"site"``, ``"task"``, ``"mode"``,
    ``"direction_kind"``, ``"agent_type"``, ``"debate_task"``, ``"debate_method"``, ``"split_mode"``."""
    defs = load_schema().get("$defs", {})
    if name not in defs or "enum" not in defs[name]:
        raise KeyError(f"{SCHEMA_PATH}: no vocabulary {name!r} (known: {sorted(defs)})")
    return tuple(defs[name]["enum"])


# --- bounds on what a config may hold (issue 26) ---------------------------------------------------

#: The most values a config (or another YAML file tomlab reads) may hold with its aliases expanded: a
#: "billion laughs" file of a few hundred bytes (``b: &b [*a, *a, ...]``, ...) holds billions, and every
#: later walk over it (validation, the JSON each job is given) would visit them all.
MAX_YAML_VALUES = 100_000


class YAMLTooLarge(yaml.YAMLError, ValueError):
    """A YAML document (or a config) that holds more than :data:`MAX_YAML_VALUES` values once its aliases
    are expanded."""


def _children(node: Any) -> Iterator[tuple[Any, Any]] | None:
    if isinstance(node, dict):
        return iter(node.items())
    if isinstance(node, (list, tuple)):
        return enumerate(node)
    return None


def _dotted(keys: Sequence[Any], shown: int = 8) -> str:
    out = ""
    for key in keys[:shown]:
        out += f"[{key}]" if isinstance(key, int) and not isinstance(key, bool) else f".{key}" if out else str(key)
    return (out or "(top level)") + ("..." if len(keys) > shown else "")


def overflow_at(data: Any, limit: int = MAX_YAML_VALUES) -> str | None:
    """Where a walk over ``data`` passes ``limit`` values (a value reached through several aliases, or
    through itself, counts each time): its dotted key, or None when ``data`` holds at most ``limit``.
    The walk stops there, so it takes time and memory in ``limit``, never in the expanded size."""
    count, keys = 1, []
    stack = [it] if (it := _children(data)) is not None else []
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            if keys:
                keys.pop()
            continue
        key, child = item
        count += 1
        if count > limit:
            return _dotted([*keys, key])
        if (inner := _children(child)) is not None:
            stack.append(inner)
            keys.append(key)
    return None


def check_size(data: Any, source: str, limit: int = MAX_YAML_VALUES) -> None:
    """Refuse ``data`` (read from ``source``) when it holds more than ``limit`` values, aliases expanded."""
    where = overflow_at(data, limit)
    if where is not None:
        raise YAMLTooLarge(f"{source}: more than {limit} values once its YAML aliases are expanded (the count passed "
                           f"{limit} at {where}); refused (aliases of aliases grow exponentially)")


def safe_load(text: str, source: str, limit: int = MAX_YAML_VALUES) -> Any:
    """``yaml.safe_load`` of ``text`` (from ``source``), refused with :class:`YAMLTooLarge` when it holds more
    than ``limit`` values once its aliases are expanded (loading shares them, so this is quick)."""
    data = yaml.safe_load(text)
    check_size(data, source, limit)
    return data


def check_config_size(config: Any, files: Sequence[str | Path] = (), limit: int = MAX_YAML_VALUES) -> None:
    """Refuse a config that holds more than ``limit`` values, aliases expanded, naming the first of its
    ``files`` that does (else the merged config: a --config value), before anything walks it."""
    if overflow_at(config, limit) is None:
        return
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # the workflow read it already; here it only names the culprit
        check_size(data, f"config file {path}", limit)
    check_size(config, "the config (with its --config values)", limit)


def _types(node: dict[str, Any]) -> set[str]:
    """The JSON types a schema node admits (its anyOf / oneOf branches' too)."""
    node = _resolve(node)
    kind = node.get("type", [])
    types = {kind} if isinstance(kind, str) else set(kind)
    for branch in node.get("anyOf", []) + node.get("oneOf", []):
        types |= _types(branch)
    return types


def float_integers(config: Any, node: dict[str, Any] | None = None, prefix: str = "") -> list[str]:
    """Every value of ``config`` that is a float (``200.0``) where the schema takes an integer only, as
    "dotted.key: ...". The validator takes 200.0 for an integer (JSON has one number type); the command
    lines the value reaches do not."""
    node = _resolve(node if node is not None else load_schema())
    types = _types(node)
    if isinstance(config, float) and "integer" in types and "number" not in types:
        return [f"{prefix or '(top level)'}: expected an integer, got {config!r}"]
    found: list[str] = []
    for branch in [node] + [_resolve(b) for b in node.get("anyOf", []) + node.get("oneOf", [])]:
        if isinstance(config, dict):
            props, extra = branch.get("properties", {}), branch.get("additionalProperties")
            for key, value in config.items():
                sub = props.get(key, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    found += float_integers(value, sub, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(config, list) and isinstance(branch.get("items"), dict):
            for i, value in enumerate(config):
                found += float_integers(value, branch["items"], f"{prefix}[{i}]")
    return list(dict.fromkeys(found))


def check_integers(config: Any) -> None:
    """Refuse a float where the schema takes an integer, naming each key: in the config, and in every local
    model section it names (under ``models``, ``team.model``, ...: the ``model`` section's fields)."""
    found = float_integers(config)
    section = load_schema()["properties"]["model"]
    for dotted in MODEL_SPEC_KEYS:
        for where, spec in _values_at(config, dotted):
            if isinstance(spec, dict) and "base_url" not in spec:
                found += float_integers(spec, section, where)
    if found:
        raise ValueError(f"config: {'; '.join(dict.fromkeys(found))} (write it without the decimal point)")


def validate_config(config: dict[str, Any], files: Sequence[str | Path] = ()) -> None:
    """Every check a run's config passes, in the workflow's order, then the schema's validation, which
    fills in the defaults in place (``config`` as Snakemake merged it from ``files`` and ``--config``)."""
    from snakemake.utils import validate

    check_config_size(config, files)  # a YAML alias bomb is refused before anything walks it
    check_keys(config)  # a misspelt key is named, with the nearest valid ones
    check_model_specs(config)  # served models: allowed keys and types, no secret in the config or the URL
    check_integers(config)  # 200.0 where an integer belongs: the validator takes it, the command lines do not
    validate(config, schema=str(SCHEMA_PATH), set_default=True)


def merged_config(files: Sequence[str | Path], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The config Snakemake would run on ``--configfile FILES --config OVERRIDES`` (``KEY=VALUE``, the value
    read as YAML, a later key replacing an earlier one's nested keys as Snakemake merges them), validated
    with the schema's defaults filled in."""
    from snakemake.utils import update_config

    config: dict[str, Any] = {}
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"config file {path}: not readable ({err})") from err
        try:
            data = safe_load(text, f"config file {path}")
        except yaml.YAMLError as err:
            raise ValueError(f"config file {path}: not YAML ({err})") from err
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ValueError(f"config file {path}: a config file holds one mapping at its top")
        update_config(config, data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--config {item[:80]!r}: give KEY=VALUE")
        try:
            parsed = safe_load(value, f"--config {key}") if value else value
        except yaml.YAMLError as err:
            raise ValueError(f"--config {key}: the value is not YAML ({err})") from err
        update_config(config, {key: parsed})
    validate_config(config, files)
    return config
