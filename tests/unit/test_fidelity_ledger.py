"""The fidelity ledger (sandbox/fidelity.py) covers every fault kind and switch, and every
unverified behaviour names tests that exist and drive it both ways."""

from __future__ import annotations

import ast
from pathlib import Path

from sandbox import fidelity
from sandbox.scenarios import SCENARIO_FAULTS
from sandbox.stage import SWITCHES
from sandbox.world import World

ROOT = Path(__file__).resolve().parents[2]


def test_every_fault_kind_and_switch_has_a_ledger_entry() -> None:
    kinds = [*SCENARIO_FAULTS, "transport"]
    assert sorted(set(kinds) - set(fidelity.FAULTS)) == []
    assert sorted(set(SWITCHES) - set(fidelity.SWITCHES)) == []
    assert sorted(set(fidelity.FAULTS) - set(kinds)) == []  # no entry for a fault that is gone
    world = World()
    for switch in SWITCHES:  # each switch is a real attribute of the stand-ins
        assert any(hasattr(part, switch) for part in (world, world.cluster, world.iotc, world.delivery)), switch


def test_every_entry_has_a_source_and_unverified_ones_name_existing_tests() -> None:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text())
        names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    for key, entry in fidelity.all_entries().items():
        assert entry.behaviour and entry.source, key
        if entry.verified:
            assert entry.source.startswith(("https://", "Azure/", "MicrosoftDocs/", "microsoft/")), (key, entry.source)
        else:
            assert entry.tests, f"{key} is unverified but names no test"
            missing = [t for t in entry.tests if t not in names]
            assert not missing, f"{key}: no such test {missing}"
