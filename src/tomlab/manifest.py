"""The report's manifest: which file holds which result, by name.

A manifest is a JSON object whose values are a path, a list of paths, or a mapping from a key (a
capture site, a task, an agent type, a figure) to a path::

    {"setup": "results/setup.json",
     "heads": {"attn_out": "results/probing/forward_belief/attn_out/heads.parquet", ...},
     "debate_runs": ["results/debate/arithmetic/direct/answers.parquet", ...]}

The pipeline's ``report`` rule writes one from its named inputs and hands it to ``tomlab report``,
which passes it to the report's code cells through the environment variable ``TOMLAB_MANIFEST``;
the report sections then look every path up by name and never build one themselves.  Relative
paths in a manifest file are relative to the directory the file is in (``tomlab report`` resolves
the ones it is given against its working directory first, as it does for every other path).

With several models (the run's panel), the manifest's ``"models"`` entry maps each model's name to
that model's own entries, in the same format::

    {"setup": ..., "lexical": {...},
     "models": {"smollm2": {"heads": {"attn_out": ...}, ...}, "gemma3": {...}}}

:meth:`Manifest.panel` lists the models and :meth:`Manifest.model` gives one model's view: its own
entries over the shared ones, so a report section written for one model reads it unchanged.

The ``report`` rule also saves the manifest beside the report (``tomlab report --save-manifest``), so
``quarto render report`` by hand finds it there.  This module is part of the shared layer: it
imports only ``tomlab.io``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tomlab.io import write_text

#: The environment variable that names the manifest file for the report's code cells.
ENV_VAR = "TOMLAB_MANIFEST"

Entry = str | list[str] | dict[str, str]


class ManifestError(LookupError):
    """A name (or key) the report asked for is not in the manifest; the message names both and the file."""

    def __str__(self) -> str:  # LookupError would quote the whole message
        return str(self.args[0]) if self.args else ""


class Manifest:
    """Named result paths (see the module docstring for the format)."""

    def __init__(self, entries: Mapping[str, Any], source: str | os.PathLike[str] | None = None) -> None:
        self.source = str(source) if source is not None else "<manifest>"
        self._entries: dict[str, Entry] = {}
        self._models: dict[str, Manifest] = {}
        for name, value in entries.items():
            if name == "models" and isinstance(value, Mapping):
                for model, own in value.items():
                    if not isinstance(own, Mapping):
                        raise TypeError(f"{self.source}: entry 'models' must map each model's name to its entries, "
                                        f"not {type(own).__name__} for {model!r}")
                    self._models[str(model)] = Manifest(own, source=f"{self.source} (model {model})")
            elif isinstance(value, (str, os.PathLike)):
                self._entries[str(name)] = os.fspath(value)
            elif isinstance(value, Mapping):
                self._entries[str(name)] = {str(k): os.fspath(v) for k, v in value.items()}
            elif isinstance(value, (list, tuple)):
                self._entries[str(name)] = [os.fspath(v) for v in value]
            else:
                raise TypeError(
                    f"{self.source}: entry {name!r} must be a path, a list of paths or a mapping to paths, "
                    f"not {type(value).__name__}"
                )

    # ---------------------------------------------------------------- reading and writing

    @classmethod
    def load(cls, path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> Manifest:
        """Read a manifest file; relative paths are resolved against ``base`` (default: the file's folder)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"manifest file {path} not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"manifest file {path}: invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TypeError(f"manifest file {path} does not hold a JSON object")
        return cls(data, source=path).resolved(path.parent if base is None else base)

    @classmethod
    def from_json(cls, text: str, base: str | os.PathLike[str], source: str = "<--manifest-json>") -> Manifest:
        """A manifest given as JSON text; relative paths are resolved against ``base``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise TypeError(f"{source} does not hold a JSON object")
        return cls(data, source=source).resolved(base)

    @classmethod
    def from_env(cls) -> Manifest | None:
        """The manifest named by ``$TOMLAB_MANIFEST``, or ``None`` when the variable is not set."""
        env = os.environ.get(ENV_VAR)
        return cls.load(Path(env).expanduser()) if env else None

    def resolved(self, base: str | os.PathLike[str]) -> Manifest:
        """The same manifest with every relative path made absolute against ``base``."""
        root = Path(base).expanduser().resolve()

        def fix(p: str) -> str:
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else root / q)

        out: dict[str, Any] = {}
        for name, value in self._entries.items():
            if isinstance(value, str):
                out[name] = fix(value)
            elif isinstance(value, dict):
                out[name] = {k: fix(v) for k, v in value.items()}
            else:
                out[name] = [fix(v) for v in value]
        if self._models:
            out["models"] = {m: own.resolved(base).to_dict() for m, own in self._models.items()}
        return Manifest(out, source=self.source)

    def to_dict(self) -> dict[str, Any]:
        """The entries by sorted name, then ``"models"`` in the run's panel order (which is not sorted)."""
        out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                               for k, v in sorted(self._entries.items())}
        if self._models:
            out["models"] = {m: own.to_dict() for m, own in self._models.items()}
        return out

    # ---------------------------------------------------------------- the panel of models

    @property
    def panel(self) -> list[str]:
        """The models this manifest has entries of, in the run's order (empty: a one-model manifest)."""
        return list(self._models)

    def model(self, name: str) -> Manifest:
        """One model's view: its own entries over the shared ones."""
        if name not in self._models:
            raise ManifestError(f"manifest {self.source} has no model {name!r} (it has: {', '.join(self._models) or 'none'})")
        merged: dict[str, Any] = {**self._entries, **self._models[name]._entries}
        return Manifest(merged, source=f"{self.source} (model {name})")

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the manifest as JSON (sorted names, the models in panel order, indented), atomically."""
        write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")  # to_dict sorts all but the panel's order
        return Path(path)

    # ---------------------------------------------------------------- lookups

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __repr__(self) -> str:
        return f"Manifest({self.source!r}, names={sorted(self._entries)})"

    def _entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ManifestError(f"manifest {self.source} has no entry {name!r} (it has: {known})") from None

    def path(self, name: str, key: str | None = None) -> Path:
        """The one path under ``name`` (with ``key``: the path under that key of a mapping entry)."""
        value = self._entry(name)
        if key is None:
            if not isinstance(value, str):
                kind = "keys " + ", ".join(value) if isinstance(value, dict) else f"{len(value)} paths"
                raise ManifestError(f"manifest {self.source}: entry {name!r} holds {kind}, not one path")
            return Path(value)
        if not isinstance(value, dict):
            raise ManifestError(f"manifest {self.source}: entry {name!r} is not a mapping, so it has no key {key!r}")
        if key not in value:
            known = ", ".join(value) or "none"
            raise ManifestError(f"manifest {self.source}: entry {name!r} has no key {key!r} (it has: {known})")
        return Path(value[key])

    def paths(self, name: str) -> list[Path]:
        """Every path under ``name``: the list, the mapping's values in order, or the one path."""
        value = self._entry(name)
        if isinstance(value, str):
            return [Path(value)]
        if isinstance(value, dict):
            return [Path(v) for v in value.values()]
        return [Path(v) for v in value]

    def keys(self, name: str) -> list[str]:
        """The keys of a mapping entry (capture sites, tasks, ...)."""
        value = self._entry(name)
        if not isinstance(value, dict):
            raise ManifestError(f"manifest {self.source}: entry {name!r} is not a mapping")
        return list(value)

    def get(self, name: str, key: str | None = None) -> Path | None:
        """Like :meth:`path`, but ``None`` when the name or key is absent."""
        value = self._entries.get(name)
        if value is None:
            return None
        if key is None:
            return Path(value) if isinstance(value, str) else None
        return Path(value[key]) if isinstance(value, dict) and key in value else None

    def exists(self, name: str, key: str | None = None) -> bool:
        """Whether the manifest names this result and the file (or folder) is there."""
        path = self.get(name, key)
        return path is not None and path.exists()
