"""No import cycle inside shared/ or sandbox/. Module-level imports (those a cold start runs) form a
graph without cycles, and so do all imports counting those inside functions (heavy SDKs, late
wiring). Imports under TYPE_CHECKING are never part of it: they name types, they run nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.helpers import ROOT

PACKAGES = ("shared", "sandbox")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in (ROOT / package).rglob("*.py")}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(item: ast.AST, known: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    if isinstance(item, ast.Import):
        found.update(a.name for a in item.names if a.name in known)
    elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
        for alias in item.names:
            full = f"{item.module}.{alias.name}"
            found.add(full if full in known else item.module)
    return {m for m in found if m in known}


def top_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if _type_checking(node):
            continue
        for item in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            found |= _imported(item, known)
    return found


def all_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every import the module can run, inside functions too; not those under TYPE_CHECKING."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        found.update(_imported(node, known))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


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


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_level_import_cycle(package: str) -> None:
    known = modules(package)
    assert len(known) > 5
    graph = {name: top_level_imports(path, known) - {name} for name, path in known.items()}
    assert cycles(graph) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_counting_imports_inside_functions(package: str) -> None:
    known = modules(package)
    graph = {name: all_imports(path, known) - {name} for name, path in known.items()}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_count_and_type_checking_ones_do_not(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.b import B\n"
        "def f() -> None:\n    from pkg.a import x\n"
    )
    known = {"pkg.a": source, "pkg.b": source}
    assert all_imports(source, known) == {"pkg.a"}
    assert top_level_imports(source, known) == set()
