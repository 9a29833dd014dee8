"""No import cycle inside shared/ or sandbox/. Module-level imports (those a cold start runs) form a
graph without cycles, and so do all imports counting those inside functions (heavy SDKs, late
wiring). Imports under TYPE_CHECKING are never part of it: they name types, they run nothing.
Relative imports count as the modules they name, and importing a module runs its packages'
__init__ first, so an import also depends on those packages."""

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


def _base(item: ast.ImportFrom, importer: str, known: dict[str, Path]) -> str:
    """The module an ImportFrom names, relative ones resolved against the importing module."""
    if item.level == 0:
        return item.module or ""
    package = importer.split(".")
    if not (importer in known and known[importer].name == "__init__.py"):
        package = package[:-1]  # a module's relative imports start from its package
    package = package[: len(package) - (item.level - 1)]
    return ".".join([*package, *([item.module] if item.module else [])])


def _with_packages(names: set[str], known: dict[str, Path], importer: str) -> set[str]:
    """Each module with the packages whose __init__ importing it runs first; not the importer's
    own packages (an __init__ that imports its package's modules is no cycle)."""
    found = set(names)
    for name in names:
        parts = name.split(".")
        found.update(".".join(parts[:n]) for n in range(1, len(parts)))
    parts = importer.split(".")
    own = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return {m for m in found if m in known and (m in names or m not in own)}


def _imported(item: ast.AST, known: dict[str, Path], importer: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(item, ast.Import):
        found.update(a.name for a in item.names)
    elif isinstance(item, ast.ImportFrom):
        base = _base(item, importer, known)
        for alias in item.names:
            full = f"{base}.{alias.name}" if base else alias.name
            found.add(full if full in known else base)
    return _with_packages({m for m in found if m}, known, importer)


def top_level_imports(path: Path, known: dict[str, Path], importer: str = "") -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if _type_checking(node):
            continue
        for item in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            found |= _imported(item, known, importer)
    return found


def all_imports(path: Path, known: dict[str, Path], importer: str = "", types: bool = False) -> set[str]:
    """Every import the module can run, inside functions too; those under TYPE_CHECKING only with
    `types`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node) and not types:
            return
        found.update(_imported(node, known, importer))
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
    graph = {name: top_level_imports(path, known, name) - {name} for name, path in known.items()}
    assert cycles(graph) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_counting_imports_inside_functions(package: str) -> None:
    known = modules(package)
    graph = {name: all_imports(path, known, name) - {name} for name, path in known.items()}
    assert cycles(graph) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_cycle_even_through_type_names(package: str) -> None:
    """Not even a type points back up: the run engine is named through a protocol by what it
    calls, the World through the Stage by what it composes."""
    known = modules(package)
    graph = {name: all_imports(path, known, name, types=True) - {name} for name, path in known.items()}
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


def test_relative_imports_count_and_so_do_the_packages_they_run(tmp_path: Path) -> None:
    package = tmp_path / "__init__.py"
    package.write_text("")
    source = tmp_path / "b.py"
    source.write_text("from .a import x\nfrom . import c\nfrom .. import top\n")
    known = {"pkg": package, "pkg.sub": package, "pkg.sub.a": source, "pkg.sub.b": source, "pkg.sub.c": source}
    known["pkg.top"] = source
    assert all_imports(source, known, "pkg.sub.b") == {"pkg.sub.a", "pkg.sub.c", "pkg.top"}
    assert _imported(ast.parse("import pkg.sub.a").body[0], known, "other") == {"pkg.sub.a", "pkg.sub", "pkg"}
    assert _imported(ast.parse("import pkg.sub.a").body[0], known, "pkg.sub.b") == {"pkg.sub.a"}


def test_no_sandbox_module_is_named_like_a_healer_module() -> None:
    """A stand-in is named after the service it answers for, never like the healer's module that
    calls that service (shared/adapters/iotcentral.py calls IoT Central; sandbox/iotc/server.py answers)."""
    stems = {
        package: {p.stem for p in (ROOT / package).rglob("*.py")} - {"__init__", "__main__"} for package in PACKAGES
    }
    assert sorted(stems["sandbox"] & stems["shared"]) == []
