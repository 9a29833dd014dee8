"""Cells of ADX answers the adapter reads as values: a table's `cslschema` text, a policy cell.
Pure."""

from __future__ import annotations

import json


def parse_cslschema(text: str) -> list[tuple[str, str]]:
    """(column, type) in order, from `.show table T cslschema`'s `Schema` (`a:string, b:datetime`)."""
    columns = []
    for part in text.split(","):
        name, _, kind = part.strip().rpartition(":")
        if name:
            columns.append((name.strip().strip("[]'\""), kind.strip().lower()))
    return columns


def policy_on(value: object) -> bool:
    """A policy cell: `null` (or empty) when none is set, else its JSON; a policy object without
    `IsEnabled` (restricted view access answers a bare `true`) counts as on."""
    text = str(value if value is not None else "null").strip()
    if text in ("", "null", "false"):
        return False
    try:
        parsed = json.loads(text)
    except ValueError:
        return True
    if isinstance(parsed, dict):
        return bool(parsed.get("IsEnabled", True))
    return bool(parsed)
