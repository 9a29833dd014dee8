"""Every folder and module directly under shared/ is a layer of the import contract (so nothing new
escapes it), each layer folder says what it is, and the contract's rules are the ones stated."""

from __future__ import annotations

import ast
import tomllib
from typing import Any

from tests.support.helpers import ROOT


def contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_every_entry_of_shared_is_a_layer() -> None:
    layers = {str(name) for name in contracts()["layers"]["layers"]}
    entries = {
        f"shared.{p.stem}"
        for p in (ROOT / "shared").iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")
    }
    assert entries - layers == set(), f"not in the layers contract: {sorted(entries - layers)}"
    assert layers - entries == set(), f"layers that do not exist: {sorted(layers - entries)}"


def test_the_domain_may_not_import_an_azure_sdk_and_the_engine_may_not_either() -> None:
    found = contracts()
    assert "azure" in found["pure-domain"]["forbidden_modules"]
    engine = found["sdk-in-adapters"]["source_modules"]
    assert {"shared.runs", "shared.backfill", "shared.detection", "shared.domain"} <= set(engine)


def test_every_layer_folder_says_what_it_is() -> None:
    for folder in ("adapters", "config", "domain", "detection", "reporting", "http"):
        doc = ast.get_docstring(ast.parse((ROOT / "shared" / folder / "__init__.py").read_text()))
        assert doc, f"shared/{folder}/__init__.py has no docstring"
