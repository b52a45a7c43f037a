"""Test helper: what a reader of the report is shown, in its HTML and in the typst source of its PDF, and
text from data that pandoc or typst would take for markup."""

from __future__ import annotations

import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from tomlab.report.render import engine
from tomlab.report.render import qmd

REPORT_SRC = Path(__file__).resolve().parents[1] / "report"

#: Text a user's file or a model could hold that pandoc would read as markup, raw HTML, math, a raw block
#: or (in the PDF) as typst syntax; each must reach the reader as the characters it is.
HOSTILE = (
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "`code` and ``more``",
    "[link](javascript:alert(1)) <http://x.example> ![i](x.png)",
    "$x$ and $$y$$",
    "**b** __u__ *e* _f_ ~~s~~ ~sub~ ^sup^",
    "`raw`{=html} `#x`{=typst} [span]{.c onclick=x}",
    "<!-- hidden --> &amp; &lt;b&gt; & <",
    "back\\slash \\\\ \\* end\\",
    "a | b || c",
    "line one\nline two\r\n\n    indented",
    "# heading",
    "= typst heading",
    "- item",
    "+ item",
    "1. item",
    "/ term: text",
    "#set page(width: 1cm) @ref <label> // comment /* block */",
    "'single' \"double\" -- ---",
    "^[footnote] [@cite] {{< include x >}}",
    ": definition",
    "> quote",
)


def visible(text: str) -> str:
    """What a reader sees of ``text``: whitespace runs shown as one space."""
    return " ".join(text.split())


def typst_shown(text: str) -> str:
    """``text`` as typst shows it: its typographic shorthand ``...`` turned into its character."""
    return visible(text).replace("...", "…")


def pandoc(markdown: str, to: str, *args: str) -> str:
    """``markdown`` converted as the built-in renderer converts the report (run in the report source)."""
    cmd = [engine._pandoc_path(), "--from", "markdown", "--to", to, "--columns=1000", *args]
    return subprocess.run(cmd, input=markdown, capture_output=True, text=True, check=True, cwd=REPORT_SRC).stdout


class HtmlReader(HTMLParser):
    """Every element of an HTML text with its attributes, the visible text, and the text of each ``td``,
    ``th``, ``p`` and ``code``."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, list[str]] = {"td": [], "th": [], "p": [], "code": []}
        self.visible: list[str] = []
        self._open: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.texts:
            self.texts[tag].append("")
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        if not {"script", "style", "title"} & set(self._open):
            self.visible.append(data)
        for tag in set(self._open) & set(self.texts):
            self.texts[tag][-1] += data

    def live(self) -> list[str]:
        """Elements or attributes that would run or load something: script, img, iframe, svg, event
        handlers, javascript: links."""
        found = [tag for tag, _ in self.tags if tag in ("script", "img", "iframe", "object", "embed", "svg")]
        for tag, attrs in self.tags:
            found += [f"{tag} {name}" for name in attrs if name.startswith("on")]
            found += [f"{tag} {name}={value}" for name, value in attrs.items()
                      if name in ("href", "src") and (value or "").strip().lower().startswith("javascript")]
        return found


def typst_text(node: object) -> str:
    """The text typst shows for a content tree from ``typst.query``; markup is marked ``<func>``, so text
    that typst read as markup does not match the plain characters."""
    if isinstance(node, list):
        return "".join(typst_text(n) for n in node)
    if not isinstance(node, dict):
        return ""
    func = node.get("func")
    if func in ("text", "symbol", "raw"):
        return str(node.get("text", ""))
    if func == "space":
        return " "
    inner = "".join(typst_text(node.get(key)) for key in ("body", "children", "child"))
    if func in ("sequence", "cell", "header", "align", "styled", "box", "block", "par", "tag"):
        return inner
    return f"<{func}>{inner}"


def typst_query(path: Path, selector: str) -> list[dict[str, object]]:
    """The elements ``selector`` finds in the typst file ``path`` (compiling it), as JSON."""
    import typst

    return json.loads(typst.query(str(path), selector, root=str(path.parent), font_paths=[], ignore_system_fonts=True))


def section_chunk(file: str, label: str) -> str:
    """One chunk of the report's own source, as it stands there (its options and code)."""
    doc = qmd.parse_qmd(REPORT_SRC / file)
    chunk = next(b for b in doc.blocks if isinstance(b, qmd.Chunk) and b.label == label)
    options = "".join(f"#| {key}: {json.dumps(value)}\n" for key, value in chunk.options.items())
    return f"```{{python}}\n{options}{chunk.code}\n```"
