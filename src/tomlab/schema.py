"""The configuration schema, shipped with the package: the one place where every setting and its default
is written.  Snakemake validates the config against it (filling in defaults), and the command line takes
its flags' defaults from it, so a default is never said twice.
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
