"""No import cycle inside shared/: module-level imports (those a cold start runs) form a graph
without cycles. Imports inside functions (heavy SDKs, late wiring) and under TYPE_CHECKING are
not part of it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

SHARED = ROOT / "shared"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SHARED.rglob("*.py")}


def top_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for item in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(item, ast.Import):
                found.update(a.name for a in item.names if a.name in known)
            elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
                for alias in item.names:
                    full = f"{item.module}.{alias.name}"
                    found.add(full if full in known else item.module)
    return {m for m in found if m in known}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle_inside_shared() -> None:
    known = modules()
    graph = {name: top_level_imports(path, known) - {name} for name, path in known.items()}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
