"""The shape of the library (ARCHITECTURE.md): imports go one way, no cycles, small modules, a small top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "tomlab"
SHARED = {"io", "stats", "schema", "manifest", "panel", "runlog"}
# what each part of the library may import (besides itself and the shared layer)
ALLOWED: dict[str, set[str]] = {
    "shared": set(),
    "backends": set(),
    "bigtom": {"backends"},
    "probing": {"backends", "bigtom"},
    "steering": {"backends", "bigtom", "probing"},
    "team": {"backends"},
    "debate": {"backends"},
    "stress": {"backends", "bigtom", "probing", "steering"},
    "figures": {"bigtom", "probing", "steering", "team", "debate", "stress"},
    "plan": {"backends", "bigtom", "probing", "steering", "team", "debate", "stress"},
    "report": {"backends", "bigtom", "probing", "steering", "team", "debate", "stress", "figures"},
    "cli": {"backends", "bigtom", "probing", "steering", "team", "debate", "stress", "figures", "report", "plan"},
    "__main__": {"cli"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG).with_suffix("").parts
        out[".".join(p for p in parts if p != "__init__") or "__init__"] = f
    return out


def _part(module: str) -> str:
    head = module.split(".")[0]
    return "shared" if head in SHARED or head == "__init__" else head


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tomlab"):
            base = node.module.removeprefix("tomlab").lstrip(".")
            for alias in node.names:
                found.add(f"{base}.{alias.name}".lstrip(".") if base else alias.name)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("tomlab.") for a in node.names if a.name.startswith("tomlab."))
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for target in _imports(path):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def test_imports_go_one_way():
    bad = []
    for name, deps in _graph().items():
        own = _part(name)
        for dep in deps:
            other = _part(dep)
            if other not in {own, "shared"} and other not in ALLOWED[own]:
                bad.append(f"{name} -> {dep}")
            if own == "shared" and other != "shared":
                bad.append(f"{name} -> {dep}")
            if name.startswith("report.render") and other not in {"shared"} and not dep.startswith("report.render"):
                bad.append(f"{name} -> {dep} (the renderer imports io only)")
    assert not bad, "imports against the layers of ARCHITECTURE.md:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    graph = _graph()
    faces = {n for n, p in _modules().items() if p.name == "__init__.py"}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if dep in faces:
                continue
            if state.get(dep) == 1:
                cycle.extend(stack[stack.index(dep):] + [dep])
                return
            if dep not in state:
                visit(dep, stack + [dep])
            if cycle:
                return
        state[node] = 2

    for node in graph:
        if node not in state and not cycle:
            visit(node, [node])
    assert not cycle, " -> ".join(cycle)


@pytest.mark.parametrize("limit", [600])
def test_modules_are_small_and_the_top_is_the_shared_layer(limit):
    too_long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()
                if len(p.read_text().splitlines()) > limit}
    assert not too_long
    top = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__"}
    assert top <= SHARED and len(top) <= 8
