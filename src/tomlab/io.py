"""Atomic file output: nothing half-written is ever left at a final path."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
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


def _clear(path: Path) -> None:
    """Make way for a folder to be renamed onto ``path``: a symlink (to a folder, a file or nothing) or a file
    is unlinked, never what a link points to; a folder is removed with its contents."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` only if the block succeeds. A
    symlink at ``path`` is replaced itself: what it points to is left as it is."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        _clear(final)
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


_NOT_A_FILE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENXIO)  # missing, a link (O_NOFOLLOW), a socket


def read_regular(path: str | os.PathLike[str]) -> bytes | None:
    """The bytes of ``path`` if it is a regular file, else None (missing, a directory, a symlink, a FIFO, a
    socket or a device). The file is opened without following a final symlink and without blocking on a
    FIFO, and checked on the open descriptor, so what is checked is what is read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno in _NOT_A_FILE:
            return None
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read() if stat.S_ISREG(os.fstat(fd).st_mode) else None


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


def require_columns(frame: pd.DataFrame, columns: Iterable[str], source: str) -> pd.DataFrame:
    """``frame`` itself when it has every one of ``columns``; else a ValueError that names ``source``
    (the file, and the flag it came from), the missing columns and the ones it has."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = [str(c) for c in frame.columns]
        shown = ", ".join(have[:12]) + (f", ... ({len(have)} in all)" if len(have) > 12 else "") if have else "none"
        raise ValueError(f"{source}: missing column(s) {', '.join(repr(c) for c in missing)} (it has: {shown})")
    return frame


def read_table(path: str | os.PathLike[str], columns: Iterable[str] = (), *, flag: str | None = None) -> pd.DataFrame:
    """A parquet table that must have ``columns``: errors (unreadable file, missing columns) name the
    file, and the command-line ``flag`` that gave it when there is one (``--x`` or ``--x KEY=``)."""
    source = str(path) if not flag else f"{flag}{path}" if flag.endswith("=") else f"{flag} {path}"
    return require_columns(read_parquet(path), columns, source)


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
