"""One fast load per job: a hub or local model written once, in the run's dtype, as safetensors.

``prepare_model`` (the pipeline's first model job) loads a hub or local-folder model the slow way once
(resolving its revision, casting to the run's dtype) and writes it with its tokenizer into the model
cache, under a key of what decides the weights (name, revision, dtype, remote code).  Every later job
of that model finds the folder there and loads it straight onto its device: safetensors are memory-
mapped and, on a GPU, copied tensor by tensor onto the card, so no job holds a second full copy of the
weights in host memory.  A missing or half-written folder (no ``tomlab.json``, written last) is simply
not used: the job loads the model the slow way and answers the same.

Random and embedded models need none of this: random ones are built on their device, embedded ones
are converted once into the cache already.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tomlab import io

MARKER = "tomlab.json"


def needs_preparing(name: str) -> bool:
    """Whether a model of this name is loaded from a hub or a local folder (the ones worth preparing)."""
    return not name.startswith(("random:", "embedded:"))


def prepared_key(spec: Mapping[str, Any], dtype: str) -> str:
    """The folder name of a model's prepared weights: readable name and a digest of what decides them."""
    what = {"name": str(spec["name"]), "revision": spec.get("revision"), "dtype": dtype,
            "trust_remote_code": bool(spec.get("trust_remote_code", False))}
    folder = Path(str(spec["name"]))
    if folder.is_dir():  # a local folder: a changed checkpoint is a new key
        what["folder_mtime"] = max((p.stat().st_mtime_ns for p in folder.glob("*") if p.is_file()), default=0)
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in str(spec["name"]))[-60:].strip("-.")
    return f"{slug}-{dtype}-{digest}"


def prepared_dir(root: Path, spec: Mapping[str, Any], dtype: str) -> Path:
    return root / "prepared" / prepared_key(spec, dtype)


def find_prepared(root: Path, spec: Mapping[str, Any], dtype: str) -> Path | None:
    """The complete prepared folder of this model, or None."""
    folder = prepared_dir(root, spec, dtype)
    return folder if (folder / MARKER).is_file() else None


def read_marker(folder: Path) -> dict[str, Any]:
    return dict(io.read_json(folder / MARKER))


def write_prepared(lm: Any, root: Path, spec: Mapping[str, Any], dtype: str) -> Path:
    """Write a loaded model (a :class:`tomlab.backends.models.LoadedModel`) and its tokenizer as
    safetensors into the cache, atomically; its marker records the name, source and revision."""
    final = prepared_dir(root, spec, dtype)
    with io.atomic_dir(final) as tmp:
        lm.model.save_pretrained(tmp, safe_serialization=True)
        lm.tokenizer.save_pretrained(tmp)
        marker = {"name": lm.name, "source": lm.source, "revision": lm.extra.get("revision"), "dtype": dtype,
                  "bytes": sum(p.stat().st_size for p in tmp.glob("*.safetensors"))}
        io.write_json(tmp / MARKER, marker)
    return final


def folder_bytes(folder: str | os.PathLike[str]) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
