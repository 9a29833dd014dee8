"""Skip what the table already holds: rows are compared whole, column by column in the table's
types (as ingestion by column name stores them), as multisets."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

Schema = list[tuple[str, str]]  # (column, Kusto type)
Key = tuple[Any, ...]


def _number_tree(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: _number_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_number_tree(v) for v in value]
    return str(value)


def canonical(value: Any, kind: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "datetime":
            if isinstance(value, str):
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if isinstance(value, datetime):
                value = value if value.tzinfo else value.replace(tzinfo=UTC)
                return value.astimezone(UTC).isoformat(timespec="microseconds")
            return None
        if kind in ("real", "double", "decimal"):
            return float(value)
        if kind in ("long", "int"):
            return int(value)
        if kind in ("bool", "boolean"):
            return bool(value)
        if kind == "dynamic":
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    return json.dumps(value)
            return json.dumps(_number_tree(value), sort_keys=True)
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return str(value)
    except (TypeError, ValueError):
        return None


def key(row: dict[str, Any], schema: Schema) -> Key:
    return tuple(canonical(row.get(name), kind) for name, kind in schema)


def missing(rows: list[dict[str, Any]], present: Iterable[dict[str, Any]], schema: Schema) -> list[dict[str, Any]]:
    """`rows` minus `present` (as multisets, by the whole row in the table's types).

    Whole keys are costly (times parsed, bags serialized) and a window's read-back often holds
    rows that cannot match (other templates' rows of the same minutes, or none at all), so rows
    are first matched on their string columns alone (a part of the whole key, cheap to get): only
    rows that agree there are compared whole."""
    present = list(present)
    if not present or not rows:
        return list(rows)
    strings = [(name, kind) for name, kind in schema if kind == "string"]
    ours = [key(r, strings) for r in rows]
    wanted = set(ours)
    have: Counter[Key] = Counter()
    shared: set[Key] = set()  # string parts some present row has
    for row in present:
        part = key(row, strings)
        if part in wanted:
            shared.add(part)
            have[key(row, schema)] += 1
    out = []
    for row, part in zip(rows, ours, strict=True):
        if part not in shared:  # no present row agrees even on the strings
            out.append(row)
            continue
        k = key(row, schema)
        if have[k] > 0:
            have[k] -= 1
        else:
            out.append(row)
    return out


def time_column(pairs: list[tuple[datetime, dict[str, Any]]], schema: Schema) -> str | None:
    """The datetime column that carries each row's message time (so existing rows of a window can
    be read back by it); None when no column does for every row."""
    candidates = [name for name, kind in schema if kind == "datetime"]
    for name in candidates:
        if pairs and all(
            canonical(row.get(name), "datetime") == canonical(enqueued, "datetime") for enqueued, row in pairs
        ):
            return name
    return None


def times_disagree(matched: int, strangers: int) -> bool:
    """Whether the delivered rows say the query API's `$ts` is not the time the export wrote:
    rows of these devices that match no rebuilt message. A few coincidences must not pass for
    agreement (when `$ts` is the device's creation time most delivered rows match nothing and a
    handful may match by chance), and a few rows at a short window's edges must not refuse it:
    unexplained rows outnumbering the matched ones refuse."""
    return bool(strangers) and strangers > matched


def missing_by_identity(
    rows: list[dict[str, Any]], present: Iterable[dict[str, Any]], identity: tuple[str, str], schema: Schema
) -> tuple[list[dict[str, Any]], int, int]:
    """`rows` the table does not hold yet, told apart by message identity (device column, time
    column), not by whole rows: a delivered row may differ from a rebuilt one in what could not be
    rebuilt. Returns (missing rows, keys found present, present rows of these devices whose
    identity none of `rows` has and that are shaped like one of that device's rebuilt rows: the
    same columns filled). A row of another kind (an IoT Edge module's telemetry, which the query
    API does not answer, fills `module`; a row another writer put there) says nothing about
    whether the message times agree, so it is not counted.

    Messages of one device at one time (one per component) share a key: a key present as often as
    it is rebuilt is complete, a key not present at all is missing whole; only a key present fewer
    times is compared whole row by whole row."""
    kinds = dict(schema)
    device, time = identity

    def identity_of(row: dict[str, Any]) -> Key:
        return canonical(row.get(device), kinds.get(device, "string")), canonical(row.get(time), "datetime")

    def shape(row: dict[str, Any]) -> frozenset[str]:
        return frozenset(c for c, _ in schema if row.get(c) is not None and row.get(c) != "")

    ours: dict[Key, list[dict[str, Any]]] = {}
    shapes: dict[Any, set[frozenset[str]]] = {}
    for row in rows:
        k = identity_of(row)
        ours.setdefault(k, []).append(row)
        shapes.setdefault(k[0], set()).add(shape(row))
    theirs: dict[Key, list[dict[str, Any]]] = {}
    strangers = 0
    for row in present:
        k = identity_of(row)
        if k[0] not in shapes:
            continue
        if k in ours:
            theirs.setdefault(k, []).append(row)
        elif shape(row) in shapes[k[0]]:
            strangers += 1
    out: list[dict[str, Any]] = []
    for k, group in ours.items():
        have = theirs.get(k, [])
        if len(have) >= len(group):
            continue
        if not have:
            out.extend(group)
            continue
        out.extend(missing(group, have, schema)[: len(group) - len(have)])
    return out, len(theirs), strangers
