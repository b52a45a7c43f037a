"""What every report section shares: the results being shown, markdown tables and small phrasing helpers."""

from __future__ import annotations

import json
import math
import os
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.manifest import Manifest

NOT_TRANSCRIBED = "not transcribed"


def results_dir() -> Path:
    """The results directory: ``$TOMLAB_RESULTS`` if set, else ``../results`` from the cwd."""
    env = os.environ.get("TOMLAB_RESULTS")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.cwd() / ".." / "results").resolve()


def manifest() -> Manifest:
    """The report's manifest: the file named by ``$TOMLAB_MANIFEST`` (``tomlab report`` sets it), else the
    one the pipeline saves beside the report in :func:`results_dir` (for ``quarto render`` by hand)."""
    found = Manifest.from_env()
    if found is not None:
        return found
    saved = results_dir() / "report" / "manifest.json"
    if not saved.is_file():
        raise FileNotFoundError(
            f"no manifest: set TOMLAB_MANIFEST to the report's manifest, or run the pipeline's report rule, "
            f"which saves it as {saved}"
        )
    return Manifest.load(saved)


def load_setup(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the run's setup summary (``setup.json``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"setup summary {path} not found")
    with open(path, encoding="utf-8") as fh:
        setup = json.load(fh)
    if not isinstance(setup, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return setup


def _get(mapping: Mapping[str, Any] | None, key: str, default: Any = "n/a") -> Any:
    if not mapping:
        return default
    value = mapping.get(key, default)
    return default if value is None else value


def _human_count(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return str(n)
    n_int = int(n)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n_int) >= scale:
            return f"{n_int / scale:.2f} {suffix} ({n_int:,})"
    return f"{n_int:,}"


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"missing results file {path}")
    if path.suffix == ".parquet":
        return io.read_parquet(path)
    return pd.read_csv(path)


#: Every ASCII punctuation character: pandoc's markdown (``all_symbols_escapable``) reads each of them
#: literally after a backslash, and each can start some markup (emphasis, code, links, raw HTML and raw
#: attributes, math, citations, footnotes, sub- and superscript, list and heading markers, tables).
_MD_PUNCTUATION = frozenset(string.punctuation)


def _one_line(value: Any) -> str:
    """``value`` as text on one line: control characters dropped, every run of whitespace (newlines
    included) one space, no space at either end."""
    text = "".join(ch for ch in str(value) if ch.isspace() or unicodedata.category(ch) != "Cc")
    return " ".join(text.split())


def md_text(value: Any) -> str:
    """Text from data (a story, a question, a model's reply, a name, a file name) as pandoc markdown that
    reads as exactly that text: on one line (whitespace runs become one space) and with every ASCII
    punctuation character backslash-escaped, so nothing in it can start markup, raw HTML (``<``, ``&``
    come out as ``&lt;``, ``&amp;`` in HTML) or a raw block for the PDF.  Use it wherever data meets
    markdown our code writes; :func:`to_markdown` applies it to every text cell and header."""
    return "".join("\\" + ch if ch in _MD_PUNCTUATION else ch for ch in _one_line(value))


def md_code(value: Any) -> str:
    """Text from data as inline code (monospace, shown verbatim): on one line, fenced by one backtick more
    than its longest run of backticks, and padded with a space where it starts or ends with one."""
    text = _one_line(value)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A pandoc pipe table; floats formatted with ``floatfmt``, NaN shown as an en dash.

    Formatting is done cell by cell, so columns mixing numbers and strings (``"not transcribed"``)
    still get formatted numbers.  Numeric columns are right-aligned.  Every other cell, and every
    header, is data to the table: it goes through :func:`md_text`, so it shows as the text it is.
    """
    if df.empty:
        return "*(no rows)*"

    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, float) or (hasattr(value, "dtype") and value.dtype.kind == "f"):
            return "–" if not math.isfinite(float(value)) else format(float(value), floatfmt)
        if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
            return str(int(value))
        return md_text(value)

    headers = [md_text(c) for c in df.columns]
    body = [[cell(v) for v in row] for row in df.itertuples(index=False, name=None)]
    numeric = []
    for col in df.columns:
        values = [v for v in df[col].tolist() if v is not None]
        numeric.append(bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))
    widths = [max(len(h), *(len(r[i]) for r in body), 3) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join(
        ("-" * (w + 1) + ":") if num else (":" + "-" * (w + 1)) for w, num in zip(widths, numeric, strict=True)
    ) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in body)])


def _f(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3f}"


def _join(items: Sequence[str], word: str = "or") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]
