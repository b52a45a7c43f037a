"""Atomic file output: nothing half-written is ever left at a final path."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@functools.cache
def _umask() -> int:
    """The process umask, read once (reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary file keeps the final suffix (so libraries that look at extensions behave). The final
    file gets the permissions the umask gives a new file (``mkstemp`` alone would leave it 0600).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=suffix if suffix is not None else final.suffix, dir=final.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | os.PathLike[str], df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError)


def read_parquet(path: str | os.PathLike[str], **kwargs: Any) -> pd.DataFrame:
    """A parquet table; a missing, truncated or malformed file raises a ValueError that names it (pyarrow's
    own message does not)."""
    try:
        return pd.read_parquet(path, **kwargs)
    except (OSError, ValueError, TypeError) as err:  # pyarrow's errors derive from these
        raise ValueError(f"{path}: not a readable parquet table ({type(err).__name__}: {err})") from err


def read_npy(path: str | os.PathLike[str], mmap: bool = True) -> np.ndarray:
    """A ``.npy`` array (memory-mapped unless ``mmap`` is false); a missing, truncated or malformed file
    raises a ValueError that names it."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except _UNREADABLE as err:
        raise ValueError(f"{path}: not a readable .npy array ({type(err).__name__}: {err})") from err


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` file, loaded; a missing, truncated or malformed file raises a ValueError
    that names it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except _UNREADABLE as err:
        raise ValueError(f"{path}: not a readable .npz archive ({type(err).__name__}: {err})") from err


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
