"""Which message a row came from, and what a row keeps that query results cannot give back.

Rows are matched with the table by message identity (the device and the message time), never
as whole rows: a rebuilt row can differ from the delivered one in what cannot be rebuilt, and
comparing whole rows would take every delivered row for a missing one. The columns that carry
the identity are found by running the destination's own transform (or none: the exported
message, mapped by column name) on probe messages whose device id and time are marker values,
and seeing which columns of the table receive them.

What cannot be rebuilt is found up front from the jq program's text and the table's columns:
message properties, device and cloud properties, and enrichments taken from device properties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.backfill import dedupe
from shared.backfill.records import Enrichments, Message, capability_ids, exported_message, transform_input
from shared.backfill.templates import TemplateInfo
from shared.backfill.transform import TransformError, compile_transform

_PROBES = (
    ("zz-probe-device-7f3a", datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)),
    ("zz-probe-device-c91e", datetime(2002, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)),
)


@dataclass(frozen=True)
class Identity:
    device: str  # the column that holds the device id
    time: str  # the datetime column that holds the message time

    @property
    def columns(self) -> tuple[str, str]:
        return self.device, self.time


def probe_rows(
    info: TemplateInfo, transform: str | None, enrichments: Enrichments, device_id: str, at: datetime
) -> list[dict[str, Any]]:
    """The rows the destination would receive for one probe message of `info` (every telemetry
    value of its first interface set, so a transform that picks a capability finds it)."""
    first = info.telemetry[0].component if info.telemetry else None
    telemetry = {c.name: 1.5 for c in info.telemetry if c.component == first}
    message = Message(device_id, info.template_id, at, first, telemetry)
    device = {"id": device_id, "displayName": device_id}
    values = enrichments.values(device, info)
    if not transform:
        return [exported_message("", message, values)]
    program = compile_transform(transform)
    body = transform_input("", message, info, device, capability_ids(info), values)
    try:
        return [r for r in program.input_value(body).all() if isinstance(r, dict)]
    except ValueError as exc:
        raise TransformError(f"transform failed on a probe message: {str(exc)[:300]}") from exc


def find_identity(
    info: TemplateInfo, transform: str | None, enrichments: Enrichments, schema: dict[str, str]
) -> Identity | None:
    """The columns that receive the probe messages' device ids and times, or None when the table
    keeps no such pair (then rows already delivered cannot be told apart)."""
    device_columns: set[str] | None = None
    time_columns: set[str] | None = None
    for device_id, at in _PROBES:
        rows = probe_rows(info, transform, enrichments, device_id, at)
        if len(rows) != 1:  # none, or several rows per message: no one row stands for a message
            return None
        row = rows[0]
        devices = {c for c, kind in schema.items() if dedupe.canonical(row.get(c), kind) == device_id}
        times = {
            c
            for c, kind in schema.items()
            if kind == "datetime" and dedupe.canonical(row.get(c), kind) == dedupe.canonical(at, "datetime")
        }
        device_columns = devices if device_columns is None else device_columns & devices
        time_columns = times if time_columns is None else time_columns & times
    if not device_columns or not time_columns:
        return None
    return Identity(sorted(device_columns)[0], sorted(time_columns)[0])


_READS = {
    "messageProperties": (re.compile(r"\bmessageProperties\b"), "messageProperties"),
    "device properties": (re.compile(r"\.(?:properties|cloudProperties)\b"), "device.properties"),
}


def unrestorable_fields(transform: str | None, enrichments: Enrichments, schema: dict[str, str]) -> list[str]:
    """What the destination's rows would keep that the query API cannot give back."""
    found: list[str] = []
    if transform:
        for label, (pattern, _) in _READS.items():
            if pattern.search(transform):
                found.append(f"{label} (read by the transform)")
        if enrichments.device_property and re.search(r"\benrichments\b", transform):
            found.append(f"enrichments from device properties ({', '.join(enrichments.device_property)})")
        return found
    # Without a transform the row is the exported message, mapped to the table's columns by name.
    if "messageProperties" in schema:
        found.append("messageProperties (the table has a messageProperties column)")
    if "enrichments" in schema and enrichments.device_property:
        found.append(f"enrichments from device properties ({', '.join(enrichments.device_property)})")
    return found
