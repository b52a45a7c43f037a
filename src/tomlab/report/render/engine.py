"""Rendering the Quarto project to one self-contained HTML file and one PDF: with ``quarto`` on PATH it
runs Quarto; without it the same pipeline runs built in: chunks executed in one Jupyter kernel
(nbclient + ipykernel), pandoc to HTML and to typst, typst to PDF."""

from __future__ import annotations

import base64
import datetime as _dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tomlab.io import atomic_path
from tomlab.schema import safe_load
from tomlab.report.render.qmd import Chunk, ReportRenderError, parse_qmd

_DEFAULT_EXECUTE: dict[str, Any] = {
    "echo": True,
    "eval": True,
    "output": True,
    "warning": True,
    "include": True,
    "error": False,
}


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _kernel_manager_class() -> type:
    """An AsyncKernelManager whose ``python3`` kernel is always this interpreter (the venv's).

    A ``python3`` kernelspec found on the Jupyter path could point at another Python (a user-level
    kernel.json with an absolute path); the report must run with the interpreter that has tomlab.
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class _ThisPythonKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            if kernel_name in ("python3", "python"):
                return KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name=f"Python 3 ({sys.executable})",
                    language="python",
                    name="python3",
                    interrupt_mode="signal",
                    metadata={"debugger": False, "supported_encryption": ["curve"]},
                )
            return super().get_kernel_spec(kernel_name)

    class _ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_ksm(self) -> KernelSpecManager:
            return _ThisPythonKernelSpecManager(data_dir=self.data_dir)

        @default("transport_encryption")
        def _default_encryption(self) -> str:
            # Encrypt the kernel's local TCP channels when pyzmq supports it (ipykernel warns otherwise).
            import zmq

            return "auto" if zmq.has("curve") else "disabled"

    return _ThisPythonKernelManager


def _effective_options(chunk: Chunk, doc_defaults: Mapping[str, Any]) -> dict[str, Any]:
    opts = dict(_DEFAULT_EXECUTE)
    opts.update(doc_defaults)
    opts.update(chunk.options)
    return opts


def _execute(
    chunks: list[Chunk], options: list[dict[str, Any]], workdir: Path, env: Mapping[str, str], timeout: int
) -> list[list[dict[str, Any]]]:
    """Run the chunks (those with eval) in one kernel; return each chunk's outputs."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellControlSignal, DeadKernelError

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell_chunk: list[int] = []
    for idx, (chunk, opts) in enumerate(zip(chunks, options, strict=True)):
        if not opts.get("eval", True):
            continue
        cell = nbformat.v4.new_code_cell(chunk.code)
        if opts.get("error"):
            cell.metadata["tags"] = ["raises-exception"]
        nb.cells.append(cell)
        cell_chunk.append(idx)

    current: dict[str, int] = {"cell": -1}

    def on_cell_execute(cell: Any, cell_index: int) -> None:
        current["cell"] = cell_index

    client = NotebookClient(
        nb,
        timeout=timeout,
        startup_timeout=120,
        kernel_name="python3",
        kernel_manager_class=_kernel_manager_class(),
        resources={"metadata": {"path": str(workdir)}},
        allow_errors=False,
        record_timing=False,
        on_cell_execute=on_cell_execute,
    )
    try:
        client.execute(env=dict(env), cwd=str(workdir))
    except (CellControlSignal, DeadKernelError, TimeoutError, RuntimeError) as exc:
        where = "kernel start-up"
        if current["cell"] >= 0:
            where = chunks[cell_chunk[current["cell"]]].where()
        detail = _ANSI_RE.sub("", str(exc)).strip()
        ename = getattr(exc, "ename", type(exc).__name__)
        evalue = getattr(exc, "evalue", "")
        summary = f"{ename}: {evalue}" if evalue else ename
        raise ReportRenderError(f"{where} failed: {summary}\n\n{detail[-4000:]}") from exc

    outputs: list[list[dict[str, Any]]] = [[] for _ in chunks]
    for cell, idx in zip(nb.cells, cell_chunk, strict=True):
        outputs[idx] = [dict(o) for o in cell.get("outputs", [])]
    return outputs


def fenced(text: str, info: str = "text") -> str:
    """``text`` verbatim in a Markdown code fence longer than any backtick run inside it."""
    return _fence(text, info)


def _fence(text: str, info: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{info}\n{text.rstrip(chr(10))}\n{ticks}"


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(value)
    return str(value)


def _typst_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _coalesce_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for out in outputs:
        if (
            out.get("output_type") == "stream"
            and merged
            and merged[-1].get("output_type") == "stream"
            and merged[-1].get("name") == out.get("name")
        ):
            merged[-1] = {**merged[-1], "text": _as_text(merged[-1]["text"]) + _as_text(out["text"])}
        else:
            merged.append(out)
    return merged


def _caption_for(opts: Mapping[str, Any], n: int) -> str:
    cap = opts.get("fig-cap")
    if isinstance(cap, list):
        return str(cap[n]) if n < len(cap) else ""
    if cap is None:
        return ""
    return str(cap) if n == 0 else ""


def _chunk_markdown(
    chunk: Chunk, opts: Mapping[str, Any], outputs: list[dict[str, Any]], workdir: Path, fig_dir: str
) -> str:
    """Quarto-like rendering of one chunk's code and outputs as pandoc markdown."""
    if opts.get("include") is False:
        return ""
    parts: list[str] = []
    if opts.get("echo") is True or opts.get("echo") == "fenced":
        if chunk.code.strip():
            parts.append(_fence(chunk.code, "python"))
    output_opt = opts.get("output", True)
    if output_opt is False:
        return "\n\n".join(parts)
    asis = output_opt == "asis"
    show_warnings = opts.get("warning") is not False
    n_fig = 0
    for out in _coalesce_streams(outputs):
        kind = out.get("output_type")
        if kind == "stream":
            text = _as_text(out.get("text", ""))
            if out.get("name") == "stderr":
                if show_warnings and text.strip():
                    parts.append(_fence(text))
            elif text.strip():
                parts.append(text.rstrip("\n") if asis else _fence(text))
        elif kind == "error":
            trace = _ANSI_RE.sub("", "\n".join(out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"]))
            parts.append(_fence(trace))
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            if "text/markdown" in data:
                md = _as_text(data["text/markdown"]).strip("\n")
                if opts.get("tbl-cap") and re.search(r"^\s*\|.*\|\s*$", md, re.MULTILINE):
                    md += f"\n\n: {opts['tbl-cap']}"
                parts.append(md)
            elif any(m in data for m in ("image/png", "image/jpeg", "image/svg+xml")):
                mime = next(m for m in ("image/png", "image/jpeg", "image/svg+xml") if m in data)
                ext = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}[mime]
                safe_label = re.sub(r"[^A-Za-z0-9_-]+", "-", chunk.label)
                rel = f"{fig_dir}/{safe_label}-{n_fig + 1}.{ext}"
                target = workdir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                payload = data[mime]
                if mime == "image/svg+xml":
                    target.write_text(_as_text(payload), encoding="utf-8")
                else:
                    target.write_bytes(base64.b64decode(_as_text(payload)))
                caption = _caption_for(opts, n_fig).replace("]", r"\]")
                parts.append(f"![{caption}]({rel})")
                n_fig += 1
            elif "text/html" in data:
                html = _as_text(data["text/html"])
                plain = _as_text(data.get("text/plain", ""))
                parts.append(_fence(html, "{=html}"))
                if plain.strip():
                    parts.append(_fence(f"#raw(block: true, {_typst_string(plain)})", "{=typst}"))
            elif "text/plain" in data:
                text = _as_text(data["text/plain"])
                if text.strip():
                    parts.append(text if asis else _fence(text))
    return "\n\n".join(p for p in parts if p)


_NON_PANDOC_META = {"format", "execute", "jupyter", "project", "engine", "knitr", "filters", "bibliography-style"}


def _load_quarto_yml(source: Path) -> dict[str, Any]:
    for name in ("_quarto.yml", "_quarto.yaml"):
        path = source / name
        if path.is_file():
            try:
                data = safe_load(path.read_text(encoding="utf-8"), str(path)) or {}
            except yaml.YAMLError as exc:
                raise ReportRenderError(f"{name}: invalid YAML: {exc}") from exc
            if not isinstance(data, dict):
                raise ReportRenderError(f"{name}: top level is not a mapping")
            return data
    return {}


def _format_options(project: Mapping[str, Any], front: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for source in (project, front):
        formats = source.get("format") or {}
        if isinstance(formats, str):
            formats = {formats: {}}
        value = formats.get(fmt) if isinstance(formats, dict) else None
        if isinstance(value, dict):
            merged.update(value)
    return merged


def _document_metadata(project: Mapping[str, Any], front: Mapping[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for source in (project, front):
        for key, value in source.items():
            if key not in _NON_PANDOC_META:
                meta[key] = value
    date = meta.get("date")
    if isinstance(date, str) and date.strip().lower() in ("today", "now", "last-modified"):
        meta["date"] = _dt.date.today().isoformat()
    elif isinstance(date, (_dt.date, _dt.datetime)):
        meta["date"] = date.isoformat()
    return meta


def _pandoc_path() -> str:
    try:
        import pypandoc

        path = pypandoc.get_pandoc_path()
    except (ImportError, OSError) as exc:  # pragma: no cover - depends on the environment
        found = shutil.which("pandoc")
        if found is None:
            raise ReportRenderError("pandoc not found (install pypandoc-binary)") from exc
        path = found
    return str(path)


def _run(cmd: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, what: str = "") -> None:
    proc = subprocess.run(list(cmd), cwd=cwd, env=dict(env) if env is not None else None, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-4000:]
        raise ReportRenderError(f"{what or cmd[0]} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def _toc_args(opts: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    if opts.get("toc"):
        args += ["--toc", f"--toc-depth={int(opts.get('toc-depth', 3))}"]
    if opts.get("number-sections"):
        args.append("--number-sections")
    return args


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _filter_args(opts: Mapping[str, Any], work: Path, fmt: str) -> list[str]:
    """``--lua-filter`` for each of a format's ``filters`` (Lua files beside index.qmd, as Quarto reads them)."""
    args: list[str] = []
    for name in _as_list(opts.get("filters")):
        if not (work / name).is_file():
            raise ReportRenderError(f"_quarto.yml: format {fmt}: filter {name!r} not found in the report source")
        args.append(f"--lua-filter={name}")
    return args


_EXTERNAL_RE = [
    re.compile(r"""<(?:img|script|iframe|embed|source|audio|video|input)\b[^>]*?\ssrc\s*=\s*["']?(?!data:)([^"'\s>]+)""", re.IGNORECASE),
    re.compile(r"""<link\b[^>]*?\shref\s*=\s*["']?(?!data:)([^"'\s>]+)""", re.IGNORECASE),
    re.compile(r"""url\(\s*["']?(?!data:|#)([^"')]+)""", re.IGNORECASE),
]


def external_references(html: str) -> list[str]:
    """Resources an HTML file would load from outside itself (images, scripts, styles)."""
    found: list[str] = []
    for pattern in _EXTERNAL_RE:
        found.extend(pattern.findall(html))
    return found


def _typst_compile(typ: Path, pdf: Path, root: Path) -> None:
    import typst

    try:
        typst.compile(str(typ), output=str(pdf), root=str(root), font_paths=[], ignore_system_fonts=True)
    except Exception as exc:  # typst.TypstError and friends
        raise ReportRenderError(f"typst failed to compile {typ.name}: {exc}") from exc


def _render_builtin(work: Path, env: Mapping[str, str], timeout: int) -> tuple[Path, Path]:
    project = _load_quarto_yml(work)
    index = work / "index.qmd"
    doc = parse_qmd(index)
    front = doc.metadata

    execute_defaults: dict[str, Any] = {}
    for source in (project, front):
        ex = source.get("execute")
        if isinstance(ex, dict):
            execute_defaults.update(ex)

    chunks = [b for b in doc.blocks if isinstance(b, Chunk)]
    options = [_effective_options(c, execute_defaults) for c in chunks]
    outputs = _execute(chunks, options, work, env, timeout) if chunks else []

    fig_dir = "index_files/figure-builtin"
    pieces: list[str] = []
    chunk_iter = iter(zip(chunks, options, outputs, strict=True))
    for block in doc.blocks:
        if isinstance(block, Chunk):
            chunk, opts, outs = next(chunk_iter)
            md = _chunk_markdown(chunk, opts, outs, work, fig_dir)
            if md:
                pieces.append(md)
        else:
            pieces.append(block)
    body = "\n\n".join(pieces).strip() + "\n"
    (work / "index.builtin.md").write_text(body, encoding="utf-8")

    meta = _document_metadata(project, front)
    html_opts = _format_options(project, front, "html")
    typst_opts = _format_options(project, front, "typst")
    pandoc = _pandoc_path()

    html_meta = dict(meta)
    (work / "index.meta-html.yaml").write_text(yaml.safe_dump(html_meta, sort_keys=False), encoding="utf-8")
    html_out = work / "index.html"
    cmd = [
        pandoc, "index.builtin.md", "--from", "markdown", "--to", "html5", "--standalone", "--embed-resources",
        "--metadata-file", "index.meta-html.yaml", f"--resource-path={work}", "--columns=1000",
        "-o", str(html_out),
    ]
    cmd += _toc_args(html_opts) + _filter_args(html_opts, work, "html")
    for css in _as_list(html_opts.get("css")):
        cmd.append(f"--css={css}")
    for inc in _as_list(html_opts.get("include-in-header")):
        cmd.append(f"--include-in-header={inc}")
    _run(cmd, work, what="pandoc (html)")
    leaks = external_references(html_out.read_text(encoding="utf-8"))
    if leaks:
        raise ReportRenderError(f"index.html is not self-contained; it references {leaks[:5]}")

    typ_meta = dict(meta)
    for key in ("papersize", "margin", "fontsize", "mainfont", "codefont", "mathfont", "linestretch", "columns"):
        if key in typst_opts:
            typ_meta[key] = typst_opts[key]
    if typst_opts.get("section-numbering"):
        typ_meta["section-numbering"] = typst_opts["section-numbering"]
    (work / "index.meta-typst.yaml").write_text(yaml.safe_dump(typ_meta, sort_keys=False), encoding="utf-8")
    typ = work / "index.typ"
    cmd = [
        pandoc, "index.builtin.md", "--from", "markdown", "--to", "typst", "--standalone",
        "--metadata-file", "index.meta-typst.yaml", f"--resource-path={work}", "--columns=1000",
        "-o", str(typ),
    ]
    cmd += _toc_args(typst_opts) + _filter_args(typst_opts, work, "typst")
    for inc in _as_list(typst_opts.get("include-in-header")):
        cmd.append(f"--include-in-header={inc}")
    _run(cmd, work, what="pandoc (typst)")
    pdf_out = work / "index.pdf"
    _typst_compile(typ, pdf_out, work)
    return html_out, pdf_out


def _render_quarto(work: Path, env: Mapping[str, str]) -> tuple[Path, Path]:
    quarto = shutil.which("quarto")
    if quarto is None:
        raise ReportRenderError("engine 'quarto' requested but quarto is not on PATH")
    _run([quarto, "render", "index.qmd", "--to", "html", "-M", "embed-resources:true"], work, env, "quarto render (html)")
    _run([quarto, "render", "index.qmd", "--to", "typst"], work, env, "quarto render (typst)")
    html_out, pdf_out = work / "index.html", work / "index.pdf"
    for path in (html_out, pdf_out):
        if not path.is_file():
            raise ReportRenderError(f"quarto did not produce {path.name}")
    leaks = external_references(html_out.read_text(encoding="utf-8"))
    if leaks:
        raise ReportRenderError(f"index.html is not self-contained; it references {leaks[:5]}")
    return html_out, pdf_out


_COPY_IGNORE = shutil.ignore_patterns(
    "_freeze", ".quarto", "*_files", "index.html", "index.pdf", "__pycache__", ".ipynb_checkpoints"
)


def render_report(
    source_dir: str | os.PathLike[str],
    results_dir: str | os.PathLike[str],
    out_html: str | os.PathLike[str],
    out_pdf: str | os.PathLike[str],
    engine: str = "auto",
    manifest: str | os.PathLike[str] | None = None,
) -> None:
    """Render the Quarto project ``source_dir`` against ``results_dir`` to ``out_html`` and ``out_pdf``.

    ``manifest``: a JSON file naming every result file the report shows, handed to the code cells as
    ``$TOMLAB_MANIFEST``; without it the cells read the manifest a pipeline run saved in ``results_dir``.

    ``engine``: ``"quarto"`` runs ``quarto render``; ``"builtin"`` runs the built-in pipeline
    (nbclient + pandoc + typst); ``"auto"`` picks quarto when it is on PATH.  The source is copied
    to a temporary directory first, so nothing is written into it, and the two outputs are moved
    into place (atomically) only after both were produced.
    """
    if engine not in ("auto", "quarto", "builtin"):
        raise ValueError(f"engine must be 'auto', 'quarto' or 'builtin', not {engine!r}")
    if engine == "auto":
        engine = "quarto" if shutil.which("quarto") else "builtin"
    source = Path(source_dir)
    if not (source / "index.qmd").is_file():
        raise ReportRenderError(f"{source}: no index.qmd in the report source directory")
    results = Path(results_dir).expanduser().resolve()

    env = dict(os.environ)
    env["TOMLAB_RESULTS"] = str(results)
    if manifest is not None:
        env["TOMLAB_MANIFEST"] = str(Path(manifest).expanduser().resolve())
    else:
        env.pop("TOMLAB_MANIFEST", None)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env["QUARTO_PYTHON"] = sys.executable
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])

    with tempfile.TemporaryDirectory(prefix="tomlab-report-") as tmp:
        work = Path(tmp) / "report"
        shutil.copytree(source, work, ignore=_COPY_IGNORE)
        if engine == "quarto":
            html, pdf = _render_quarto(work, env)
        else:
            html, pdf = _render_builtin(work, env, timeout=600)
        mode = _default_file_mode()
        with atomic_path(out_html) as tmp_html, atomic_path(out_pdf) as tmp_pdf:
            shutil.copyfile(html, tmp_html)
            shutil.copyfile(pdf, tmp_pdf)
            os.chmod(tmp_html, mode)
            os.chmod(tmp_pdf, mode)


def _default_file_mode() -> int:
    """The mode a plain new file gets under the current umask (atomic temp files start at 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
