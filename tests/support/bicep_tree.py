"""The Bicep in infra/ as syntax trees (tree-sitter), and the built-in roles it may grant."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from tree_sitter_language_pack import get_parser

from tests.support.bicep_types import source
from tests.support.helpers import ROOT

INFRA = ROOT / "infra"


# Built-in role definition ids, from Microsoft's "Azure built-in roles" reference.
BUILTIN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "73c42c96-874c-492b-b04d-ab87d138a893": "Log Analytics Reader",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


@cache
def tree(path: Path) -> Any:
    return get_parser("bicep").parse(source(path))  # `extension` lines blanked: the grammar predates them


def text(path: Path, node: Any) -> str:
    return path.read_bytes()[node.start_byte : node.end_byte].decode()


def children(node: Any, kind: str) -> list[Any]:
    return [c for c in node.children if c.type == kind]
