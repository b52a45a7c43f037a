"""Reading a Quarto document: include shortcodes, front matter, code chunks and their ``#|`` options."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tomlab.schema import safe_load


class ReportRenderError(RuntimeError):
    """Rendering the report failed; the message names the file (and chunk) responsible."""


_INCLUDE_RE = re.compile(r"^\s*\{\{<\s*include\s+(?P<path>\"[^\"]+\"|'[^']+'|\S+)\s*>\}\}\s*$")


_FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>.*?)\s*$")


_CHUNK_INFO_RE = re.compile(r"^\{\s*(?P<engine>[A-Za-z0-9_-]+)(?P<rest>[^}]*)\}$")


_OPTION_RE = re.compile(r"^\s*#\|\s?(?P<body>.*)$")


@dataclass(frozen=True)
class _Line:
    text: str
    file: str
    line: int


def _expand_lines(text: str, base_dir: Path, filename: str, stack: tuple[Path, ...]) -> list[_Line]:
    out: list[_Line] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        match = _INCLUDE_RE.match(line)
        if match is None:
            out.append(_Line(line, filename, lineno))
            continue
        rel = match.group("path").strip("\"'")
        target = base_dir / rel
        shown = os.path.normpath(os.path.join(os.path.dirname(filename), rel)) if filename else rel
        if not target.is_file():
            raise ReportRenderError(f"{filename}:{lineno}: included file {shown!r} not found (looked for {target})")
        key = target.resolve()
        if key in stack:
            raise ReportRenderError(f"{filename}:{lineno}: include cycle through {shown!r}")
        child = target.read_text(encoding="utf-8")
        out.extend(_expand_lines(child, target.parent, shown, (*stack, key)))
    return out


def expand_includes(text: str, base_dir: str | os.PathLike[str], filename: str = "<string>") -> str:
    """Expand ``{{< include FILE >}}`` lines recursively; paths are relative to the including file.

    Raises ReportRenderError naming the missing file (and the file/line that included it).
    """
    lines = _expand_lines(text, Path(base_dir), filename, ())
    return "\n".join(line.text for line in lines) + ("\n" if lines else "")


def parse_chunk_options(code: str) -> tuple[dict[str, Any], str]:
    """Split leading ``#| key: value`` lines (YAML) off a chunk; return (options, remaining code)."""
    lines = code.splitlines()
    option_lines: list[str] = []
    i = 0
    while i < len(lines):
        match = _OPTION_RE.match(lines[i])
        if match is None:
            break
        option_lines.append(match.group("body"))
        i += 1
    options: dict[str, Any] = {}
    if option_lines:
        try:
            parsed = safe_load("\n".join(option_lines), "the chunk options")
        except yaml.YAMLError as exc:
            raise ValueError(f"invalid chunk options: {exc}") from exc
        if parsed is None:
            parsed = {}
        if not isinstance(parsed, dict):
            raise ValueError(f"chunk options must be 'key: value' lines, got {option_lines!r}")
        options = {str(k): v for k, v in parsed.items()}
    rest = "\n".join(lines[i:])
    return options, rest


@dataclass
class Chunk:
    """An executable ```{python} chunk."""

    code: str
    options: dict[str, Any]
    file: str
    line: int

    @property
    def label(self) -> str:
        return str(self.options.get("label") or f"unnamed-chunk-{self.line}")

    def where(self) -> str:
        return f"{self.file}:{self.line} (chunk '{self.label}')"


@dataclass
class QmdDocument:
    """A parsed document: front matter plus a sequence of markdown strings and chunks."""

    metadata: dict[str, Any] = field(default_factory=dict)
    blocks: list[str | Chunk] = field(default_factory=list)


def _split_front_matter(lines: list[_Line]) -> tuple[dict[str, Any], list[_Line]]:
    if not lines or lines[0].text.strip() != "---":
        return {}, lines
    for end in range(1, len(lines)):
        if lines[end].text.strip() in ("---", "..."):
            raw = "\n".join(line.text for line in lines[1:end])
            try:
                meta = safe_load(raw, "the front matter") or {}
            except yaml.YAMLError as exc:
                raise ReportRenderError(f"{lines[0].file}: invalid YAML front matter: {exc}") from exc
            if not isinstance(meta, dict):
                raise ReportRenderError(f"{lines[0].file}: front matter is not a mapping")
            return meta, lines[end + 1 :]
    raise ReportRenderError(f"{lines[0].file}: front matter opened with '---' is never closed")


def _parse_lines(lines: list[_Line]) -> list[str | Chunk]:
    blocks: list[str | Chunk] = []
    buf: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _FENCE_RE.match(line.text)
        if match is None:
            buf.append(line.text)
            i += 1
            continue
        fence = match.group("fence")
        info = match.group("info")
        # find the closing fence: same character, at least as long, no info string
        j = i + 1
        while j < len(lines):
            close = _FENCE_RE.match(lines[j].text)
            if close and close.group("fence")[0] == fence[0] and len(close.group("fence")) >= len(fence) and not close.group("info"):
                break
            j += 1
        if j == len(lines):
            raise ReportRenderError(f"{line.file}:{line.line}: code fence {fence} is never closed")
        chunk_info = _CHUNK_INFO_RE.match(info)
        if chunk_info is None or info.startswith("{="):
            buf.extend(item.text for item in lines[i : j + 1])
            i = j + 1
            continue
        engine = chunk_info.group("engine").lower()
        if engine != "python":
            raise ReportRenderError(f"{line.file}:{line.line}: unsupported chunk engine {{{engine}}}; only python")
        if chunk_info.group("rest").strip():
            raise ReportRenderError(
                f"{line.file}:{line.line}: options in the chunk header are not supported; use '#| key: value' lines"
            )
        body = "\n".join(item.text for item in lines[i + 1 : j])
        try:
            options, code = parse_chunk_options(body)
        except ValueError as exc:
            raise ReportRenderError(f"{line.file}:{line.line}: {exc}") from exc
        if buf:
            blocks.append("\n".join(buf))
            buf = []
        blocks.append(Chunk(code=code, options=options, file=line.file, line=line.line))
        i = j + 1
    if buf:
        blocks.append("\n".join(buf))
    return blocks


def parse_qmd(path: str | os.PathLike[str]) -> QmdDocument:
    """Read a .qmd file, expand includes, split off front matter and split into markdown and chunks."""
    path = Path(path)
    if not path.is_file():
        raise ReportRenderError(f"{path}: file not found")
    lines = _expand_lines(path.read_text(encoding="utf-8"), path.parent, path.name, (path.resolve(),))
    meta, body = _split_front_matter(lines)
    return QmdDocument(metadata=meta, blocks=_parse_lines(body))
