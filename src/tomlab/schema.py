"""The configuration schema, shipped with the package: the one place where every setting and its default
is written, and the project's vocabularies (capture sites, tasks, direction kinds, agent types, ...).
Snakemake validates the config against it (filling in defaults), the command line takes its flags'
defaults and choices from it, and the library's constants (``SITES``, ``TASKS``, ...) are read from its
vocabularies, so none of these is said twice.
"""

from __future__ import annotations

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
