"""Test modules share code only through tests/support/: no module under tests/unit, tests/integration
or tests/e2e imports another test module (so moving or deleting one test file breaks no other)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.helpers import ROOT

SUITES = ("unit", "integration", "e2e")


def imports_of_test_modules(path: Path) -> set[str]:
    """The test modules (tests.unit/integration/e2e…) that `path` imports, inside functions too;
    a relative import counts as one (a suite's only siblings are test modules)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return {m for m in found if m.startswith((".", *(f"tests.{s}" for s in SUITES)))}


def test_no_test_module_imports_another() -> None:
    files = [p for suite in SUITES for p in (ROOT / "tests" / suite).rglob("*.py")]
    assert len(files) > 50
    offenders = {str(p.relative_to(ROOT)): sorted(imports_of_test_modules(p)) for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_an_import_of_a_test_module(tmp_path: Path) -> None:
    source = tmp_path / "test_x.py"
    source.write_text(
        "from tests.support.helpers import ROOT\n"
        "def f() -> None:\n    from tests.unit.test_infra import INFRA\n"
        "import tests.e2e.test_cli\n"
        "from . import test_y\n"
    )
    assert imports_of_test_modules(source) == {"tests.unit.test_infra", "tests.e2e.test_cli", "."}
