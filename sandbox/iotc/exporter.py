"""The simulated devices and what IoT Central's data export makes of their telemetry.

Sources (MicrosoftDocs/azure-docs, articles/iot-central/core/):
- howto-export-to-* ("Export IoT data to cloud destinations using data export", telemetry format):
  an exported telemetry message has `applicationId, messageSource, deviceId, schema, templateId,
  enqueuedTime, telemetry{name: value}, enrichments, messageProperties`, plus `component` (only
  when the capability is modelled in a component) and `module` (only from an IoT Edge module).
- howto-transform-data-internally.md: a destination's `transform` is a jq program; its input is the
  message with `telemetry` as an array of `{id, name, value}` and a `device` object (`id, name,
  templateId, templateName, properties.reported, cloudProperties, simulated, approved, blocked,
  provisioned`); `import "iotc" as iotc;` brings `iotc::find(f)` (the array elements where `f`
  holds). Each output object is one row; for ADX, keys are column names.
- The export `filter` is a query: `SELECT * FROM <devices | template id> WHERE …`.

- Enrichments (export definition, 2022-10-31-preview `enrichments: {name: {target?, path?, value?}}`;
  published sample `{"abc": {"path": "$templateDisplayName"}}`): a static `value`, a system
  property (`path` starting with `$`), or a device property (`path` names it) of the device now.
- Message properties: what the device set on the message (e.g. `iothub-creation-time-utc`, the
  device implementation page's example) are exported under `messageProperties`.
- With a managed identity IoT Central does not export simulated devices (ADX how-to).

The stand-in keeps both `deviceId`/`templateId` and the `device` object in the transform's input:
the how-to's own examples read `.deviceId` and `.device.id` (unverified which one IoT Central
really fills; the drill's transform reads only fields present either way). The names of system
enrichments other than `$templateDisplayName` follow the query language's (unverified). A filter
condition on a name that is not telemetry reads the device's property of that name (the syntax of
property filters is not documented).
"""

from __future__ import annotations

import copy
import functools
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.iotc.data import CREATION_TIME, OPERATORS, Message, iso_ms, ms, template_capabilities

IOTC_MODULE = "def find(f): .[] | select(f);\n"


@dataclass
class Fleet:
    """Device templates and the devices that use them; every tick each device sends one message
    per interface (root and each component) that has telemetry."""

    templates: list[dict[str, Any]]
    devices: dict[str, str]  # device id → template id
    sequence: int = 0
    message_properties: dict[str, str] = field(default_factory=lambda: {"source": "sandbox"})
    # Devices that stamp each message with iothub-creation-time-utc, this long before IoT Central
    # enqueues it (None: they do not).
    creation_lag: timedelta | None = None

    def tick(self, app: Any, now: datetime | None = None) -> list[Message]:
        self.sequence += 1
        at = ms(now or datetime.now(UTC))
        by_id = {t["@id"]: t for t in self.templates}
        sent: list[Message] = []
        for n, (device_id, template_id) in enumerate(sorted(self.devices.items())):
            telemetry, _ = template_capabilities(by_id[template_id])
            groups: dict[str | None, dict[str, Any]] = {}
            for k, path in enumerate(sorted(telemetry)):
                prefix, _, name = path.rpartition(".")
                value = round(20 + ((self.sequence * 7 + n * 13 + k * 5) % 400) / 10, 1)
                groups.setdefault(prefix or None, {})[name] = value
            for component, values in groups.items():
                properties = dict(self.message_properties)
                if self.creation_lag is not None:
                    # Whole seconds, no zone (the format the device implementation page requires).
                    created = at - self.creation_lag - timedelta(milliseconds=(n * 37) % 200)
                    properties[CREATION_TIME] = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                message = Message(device_id, template_id, at, values, component, None, properties)
                app.telemetry.add(message)
                sent.append(message)
        return sent


SYSTEM_ENRICHMENTS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {
    "$id": lambda d, t: d.get("id"),
    "$displayName": lambda d, t: d.get("displayName"),
    "$templateId": lambda d, t: t.get("@id"),
    "$templateDisplayName": lambda d, t: t.get("displayName", ""),
    "$simulated": lambda d, t: bool(d.get("simulated", False)),
    "$provisioned": lambda d, t: bool(d.get("provisioned", True)),
    "$enabled": lambda d, t: bool(d.get("enabled", True)),
}


def enrichments(app: Any, export: dict[str, Any] | None, message: Message) -> dict[str, Any]:
    device = app.devices.get(message.device_id, {"id": message.device_id})
    template = app.templates.get(message.template_id, {})
    out: dict[str, Any] = {}
    for name, spec in ((export or {}).get("enrichments") or {}).items():
        path = spec.get("path")
        if "value" in spec and not path:
            out[name] = spec["value"]
        elif isinstance(path, str) and path in SYSTEM_ENRICHMENTS:
            out[name] = SYSTEM_ENRICHMENTS[path](device, template)
        elif isinstance(path, str):
            out[name] = (device.get("properties") or {}).get(path)
    return out


def exported_message(app: Any, message: Message, export: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "applicationId": app.application_id,
        "messageSource": "telemetry",
        "deviceId": message.device_id,
        "schema": "default@v1",
        "templateId": message.template_id,
        "enqueuedTime": iso_ms(message.enqueued),
        "telemetry": dict(message.telemetry),
        "enrichments": enrichments(app, export, message),
        "messageProperties": dict(message.properties),
    }
    if message.component:
        body["component"] = message.component
    if message.module:
        body["module"] = message.module
    return body


def transform_input(app: Any, message: Message, export: dict[str, Any] | None = None) -> dict[str, Any]:
    body = exported_message(app, message, export)
    template = app.templates.get(message.template_id, {})
    ids = _telemetry_ids(template)
    body["telemetry"] = [
        {"id": ids.get((message.component, name), ""), "name": name, "value": value}
        for name, value in message.telemetry.items()
    ]
    device = app.devices.get(message.device_id, {})
    reported = [{"name": k, "value": v} for k, v in sorted((device.get("properties") or {}).items())]
    body["device"] = {
        "id": message.device_id,
        "name": device.get("displayName", message.device_id),
        "cloudProperties": [],
        "properties": {"reported": reported},
        "templateId": message.template_id,
        "templateName": template.get("displayName", ""),
        "simulated": bool(device.get("simulated", False)),
        "approved": True,
        "blocked": not device.get("enabled", True),
        "provisioned": bool(device.get("provisioned", True)),
    }
    return body


def _telemetry_ids(template: dict[str, Any]) -> dict[tuple[str | None, str], str]:
    ids: dict[tuple[str | None, str], str] = {}
    model = template.get("capabilityModel") or {}
    for interface in [model, *(model.get("extends") or [])]:
        for item in interface.get("contents") or []:
            kinds = [item["@type"]] if isinstance(item.get("@type"), str) else item.get("@type", [])
            if "Telemetry" in kinds and item.get("@id"):
                ids[(None, item["name"])] = item["@id"]
            if "Component" in kinds and isinstance(item.get("schema"), dict):
                for inner in item["schema"].get("contents") or []:
                    if inner.get("@id"):
                        ids[(item["name"], inner["name"])] = inner["@id"]
    return ids


_FILTER = re.compile(r"\s*SELECT\s+\*\s+FROM\s+(?P<source>\S+)(?:\s+WHERE\s+(?P<where>.+))?\s*", re.I | re.S)
_CONDITION = re.compile(
    r"\s*(?P<field>\$?[A-Za-z_][\w.]*)\s*(?P<op>!=|<>|>=|<=|=|>|<)\s*(?P<value>\"[^\"]*\"|'[^']*'|[-\d.]+)\s*"
)


def filter_matches(text: str | None, app: Any, message: Message) -> bool:
    """The export filter: `SELECT * FROM devices|<template> [WHERE a op v AND … OR …]` (no parentheses here)."""
    if not text:
        return True
    match = _FILTER.fullmatch(text)
    if not match:
        raise ValueError(f"the stand-in cannot evaluate the export filter {text!r}")
    source = match.group("source")
    if source not in ("devices", message.template_id):
        return False
    device = app.devices.get(message.device_id, {})
    facts: dict[str, Any] = {
        "$id": message.device_id,
        "$displayName": device.get("displayName", message.device_id),
        "$template": message.template_id,
        "$simulated": device.get("simulated", False),
    }
    for name, value in (device.get("properties") or {}).items():
        facts.setdefault(name, value)
    for name, value in message.telemetry.items():
        facts[f"{message.component}.{name}" if message.component else name] = value
    where = match.group("where") or ""
    if not where.strip():
        return True
    # AND binds tighter than OR, as in the query language's WHERE clause.
    return any(_all_hold(disjunct, facts) for disjunct in re.split(r"\s+OR\s+", where, flags=re.I))


def _all_hold(conjunction: str, facts: dict[str, Any]) -> bool:
    for part in re.split(r"\s+AND\s+", conjunction, flags=re.I):
        if not part.strip():
            continue
        cond = _CONDITION.fullmatch(part)
        if not cond:
            raise ValueError(f"the stand-in cannot evaluate the filter condition {part!r}")
        raw = cond.group("value")
        expected: Any = raw[1:-1] if raw[0] in "\"'" else float(raw)
        actual = facts.get(cond.group("field"))
        if actual is None:
            return False
        if not OPERATORS[cond.group("op")](actual, expected):
            return False
    return True


@functools.cache
def _module_dir() -> str:
    path = Path(tempfile.mkdtemp(prefix="sandbox-iotc-jq-")) / "iotc.jq"
    path.write_text(IOTC_MODULE)
    return str(path.parent)


@functools.cache
def _compiled(transform: str) -> Any:
    import jq

    program = re.sub(
        r'import\s+"iotc"\s+as\s+iotc\s*;', f'import "iotc" as iotc {{search: "{_module_dir()}"}};', transform
    )
    return jq.compile(program)


def export_rows(app: Any, export: dict[str, Any], ref: dict[str, Any], messages: list[Message]) -> list[dict[str, Any]]:
    """The rows an ADX destination receives for `messages`: filter, then transform (or the message).
    With a managed identity, simulated devices are not exported."""
    if export.get("source", "telemetry") != "telemetry":
        return []
    dest = app.destinations.get(ref.get("id"), {})
    if (dest.get("authorization") or {}).get("type") == "systemAssignedManagedIdentity":
        messages = [m for m in messages if not app.devices.get(m.device_id, {}).get("simulated", False)]
    kept = [m for m in messages if filter_matches(export.get("filter"), app, m)]
    transform = ref.get("transform")
    if not transform:
        return [exported_message(app, m, export) for m in kept]
    program = _compiled(transform)
    rows: list[dict[str, Any]] = []
    for m in kept:
        for out in program.input_value(transform_input(app, m, export)).all():
            if isinstance(out, dict):
                rows.append(copy.deepcopy(out))
    return rows
