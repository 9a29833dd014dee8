"""Query results → the messages IoT Central's data export would have sent → the destination's rows.

Message formats (MicrosoftDocs/azure-docs, articles/iot-central/core/):
- the exported telemetry message (data export how-tos, "telemetry format"): `applicationId,
  messageSource, deviceId, schema, templateId, enqueuedTime, telemetry {name: value}, enrichments,
  messageProperties`, plus `component` only when the capability is in a component and `module`
  only when an IoT Edge module sent it. Without a transform, an ADX destination receives this.
- the transform's input (howto-transform-data-internally.md): the same message with `telemetry` as
  `[{id, name, value}]` and a `device` object (`id, name, templateId, templateName, properties,
  cloudProperties, simulated, approved, blocked, provisioned`); `import "iotc" as iotc;` provides
  `iotc::find(f)`. Each output object is one row (keys are column names).

What the query API cannot give back is reported, never invented: `messageProperties` (rebuilt
empty), the device's properties at the time (rebuilt empty), enrichments taken from device
properties, and message ids. Static and system enrichments are rebuilt from the export's
definition (`enrichments: {name: {value}|{path: "$…"}|{target, path}}`, 2022-10-31-preview).
`$ts` is taken as the message's `enqueuedTime`; the engine checks that against the rows the
export delivered (whether `$ts` is the enqueued or the device's creation time is undocumented).
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.backfill.templates import TemplateInfo

IOTC_JQ_MODULE = "def find(f): .[] | select(f);\n"
NOT_RETURNED = (
    "messageProperties (the query API does not return them)",
    "device properties and cloud properties as they were then (only today's device record is known)",
)
# System enrichments (`path` starting with `$`) rebuilt from the device and template records:
# the published sample names `$templateDisplayName`; the others follow the query language's names.
SYSTEM_ENRICHMENTS: dict[str, Callable[[dict[str, Any], TemplateInfo], Any]] = {
    "$id": lambda d, t: d.get("id"),
    "$displayName": lambda d, t: d.get("displayName", d.get("id")),
    "$templateId": lambda d, t: t.template_id,
    "$templateDisplayName": lambda d, t: t.display_name,
    "$simulated": lambda d, t: bool(d.get("simulated", False)),
    "$provisioned": lambda d, t: bool(d.get("provisioned", True)),
    "$enabled": lambda d, t: bool(d.get("enabled", True)),
}


@dataclass(frozen=True)
class Enrichments:
    """The export definition's enrichments: what can be rebuilt (static values, system
    properties) and what cannot (device properties as they were then)."""

    static: tuple[tuple[str, Any], ...] = ()
    system: tuple[tuple[str, str], ...] = ()
    device_property: tuple[str, ...] = ()  # names of enrichments read from device properties

    @staticmethod
    def parse(definition: object) -> Enrichments:
        if not isinstance(definition, dict):
            return Enrichments()
        static, system, device = [], [], []
        for name, raw in sorted(definition.items()):
            spec = raw if isinstance(raw, dict) else {}
            path = spec.get("path")
            if "value" in spec and not path:
                static.append((str(name), spec["value"]))
            elif isinstance(path, str) and path in SYSTEM_ENRICHMENTS:
                system.append((str(name), path))
            else:
                device.append(str(name))
        return Enrichments(tuple(static), tuple(system), tuple(device))

    def values(self, device: dict[str, Any], info: TemplateInfo, marker: Any = None) -> dict[str, Any]:
        """The enrichments of a message of `device`; device-property ones get `marker` (None: left out)."""
        out: dict[str, Any] = dict(self.static)
        for name, path in self.system:
            out[name] = SYSTEM_ENRICHMENTS[path](device, info)
        if marker is not None:
            out.update({name: marker for name in self.device_property})
        return out


class FilterUnsupported(ValueError):
    """An export filter this healer cannot evaluate: the backfill refuses rather than guess."""


class TransformError(ValueError):
    """The destination's jq program does not compile or fails on a rebuilt message."""


@dataclass(frozen=True)
class Message:
    device_id: str
    template_id: str
    enqueued: datetime
    component: str | None
    telemetry: dict[str, Any]


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def iso_ms(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def join_parts(parts: list[list[dict[str, Any]]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Re-join the answers of a split SELECT on device and timestamp."""
    joined: dict[tuple[str, str], dict[str, Any]] = {}
    for part in parts:
        for record in part:
            key = (str(record.get("$id")), str(record.get("$ts")))
            merged = joined.setdefault(key, {})
            for name, value in record.items():
                if name not in ("$id", "$ts") and value is not None:
                    merged[name] = value
    return joined


def messages_from(info: TemplateInfo, joined: dict[tuple[str, str], dict[str, Any]]) -> list[Message]:
    """One message per device, timestamp and component (a device sends each component's telemetry
    in its own message)."""
    # Asked for under aliases (planner.alias); a bare path is understood too.
    by_path = {c.path: c for c in info.telemetry}
    by_path.update({c.path.replace(".", "__"): c for c in info.telemetry if c.component})
    messages = []
    for (device_id, ts), values in joined.items():
        groups: dict[str | None, dict[str, Any]] = {}
        for path, value in values.items():
            cap = by_path.get(path)
            if cap is not None:
                groups.setdefault(cap.component, {})[cap.name] = value
        for component, telemetry in sorted(groups.items(), key=lambda g: g[0] or ""):
            messages.append(Message(device_id, info.template_id, parse_ts(ts), component, telemetry))
    return sorted(messages, key=lambda m: (m.enqueued, m.device_id, m.component or ""))


def exported_message(
    application_id: str,
    message: Message,
    enrichments: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "applicationId": application_id,
        "messageSource": "telemetry",
        "deviceId": message.device_id,
        "schema": "default@v1",
        "templateId": message.template_id,
        "enqueuedTime": iso_ms(message.enqueued),
        "telemetry": dict(message.telemetry),
        "enrichments": dict(enrichments or {}),
        "messageProperties": dict(properties or {}),
    }
    if message.component:
        body["component"] = message.component
    return body


def capability_ids(info: TemplateInfo) -> dict[tuple[str | None, str], str]:
    return {(c.component, c.name): c.capability_id for c in info.telemetry}


def transform_input(
    application_id: str,
    message: Message,
    info: TemplateInfo,
    device: dict[str, Any] | None,
    ids: dict[tuple[str | None, str], str] | None = None,
    enrichments: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    device_properties: list[Any] | None = None,
) -> dict[str, Any]:
    body = exported_message(application_id, message, enrichments, properties)
    ids = capability_ids(info) if ids is None else ids
    body["telemetry"] = [
        {"id": ids.get((message.component, name), ""), "name": name, "value": value}
        for name, value in message.telemetry.items()
    ]
    device = device or {}
    body["device"] = {
        "id": message.device_id,
        "name": device.get("displayName", message.device_id),
        "cloudProperties": list(device_properties or []),
        "properties": {"reported": list(device_properties or [])},
        "templateId": message.template_id,
        "templateName": info.display_name,
        "simulated": bool(device.get("simulated", False)),
        "approved": True,
        "blocked": not device.get("enabled", True),
        "provisioned": bool(device.get("provisioned", True)),
    }
    return body


# ---------------------------------------------------------------------- the export's filter

_FILTER = re.compile(r"\s*SELECT\s+\*\s+FROM\s+(?P<source>\S+)(?:\s+WHERE\s+(?P<where>.+?))?\s*", re.I | re.S)
_CONDITION = re.compile(
    r"\s*(?P<field>\$?[A-Za-z_][\w.]*)\s*(?P<op>!=|<>|>=|<=|=|>|<)\s*(?P<value>\"[^\"]*\"|'[^']*'|-?\d+(?:\.\d+)?|true|false)\s*",
    re.I,
)
_OPS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


FILTER_SYSTEM_FIELDS = ("$id", "$displayName", "$template", "$simulated")


@dataclass(frozen=True)
class ExportFilter:
    """`SELECT * FROM devices|<template id> [WHERE c AND c …]` with comparisons on `$id`,
    `$displayName`, `$template`, `$simulated` and telemetry. Anything else is FilterUnsupported,
    and so is a condition on a field that is neither (a device or message property: the query API
    cannot say what it was when the message was sent)."""

    source: str
    conditions: tuple[tuple[str, str, Any], ...]

    @staticmethod
    def parse(text: str | None) -> ExportFilter:
        if not text or not text.strip():
            return ExportFilter("devices", ())
        match = _FILTER.fullmatch(text)
        if not match:
            understood = "SELECT * FROM devices|<template> [WHERE …]"
            raise FilterUnsupported(f"filter={text!r}: only '{understood}' is understood")
        conditions = []
        where = match.group("where") or ""
        if re.search(r"\bOR\b|\bIN\b|\(", where, re.I):
            raise FilterUnsupported(f"filter={text!r}: OR, IN and functions are not understood")
        for part in re.split(r"\s+AND\s+", where, flags=re.I) if where else []:
            cond = _CONDITION.fullmatch(part)
            if not cond:
                raise FilterUnsupported(f"filter={text!r}: condition {part.strip()!r} is not understood")
            raw = cond.group("value")
            value: Any
            if raw[0] in "\"'":
                value = raw[1:-1]
            elif raw.lower() in ("true", "false"):
                value = raw.lower() == "true"
            else:
                value = float(raw)
            conditions.append((cond.group("field"), cond.group("op"), value))
        return ExportFilter(match.group("source"), tuple(conditions))

    def covers(self, template_id: str) -> bool:
        return self.source in ("devices", template_id)

    def check_fields(self, templates: list[TemplateInfo]) -> None:
        """Refuse a filter that reads what query results cannot give back."""
        telemetry = {c.path for info in templates for c in info.telemetry}
        for name, _, _ in self.conditions:
            if name not in FILTER_SYSTEM_FIELDS and name not in telemetry:
                raise FilterUnsupported(
                    f"the export's filter reads {name!r}, which is not telemetry of its templates but a device or "
                    "message property: the query API cannot say what it was when each message was sent, so the "
                    "messages the export kept cannot be told from those it dropped"
                )

    def matches(self, message: Message, device: dict[str, Any] | None) -> bool:
        if not self.covers(message.template_id):
            return False
        device = device or {}
        facts: dict[str, Any] = {
            "$id": message.device_id,
            "$displayName": device.get("displayName", message.device_id),
            "$template": message.template_id,
            "$simulated": device.get("simulated", False),
        }
        for name, value in message.telemetry.items():
            facts[f"{message.component}.{name}" if message.component else name] = value
        for name, op, value in self.conditions:
            actual = facts.get(name)
            if actual is None:
                return False
            try:
                if not _OPS[op](actual, value):
                    return False
            except TypeError:
                return False
        return True


# ---------------------------------------------------------------------- the destination's transform


@functools.cache
def _module_dir() -> str:
    path = Path(tempfile.mkdtemp(prefix="iotc-jq-")) / "iotc.jq"
    path.write_text(IOTC_JQ_MODULE)
    return str(path.parent)


@functools.cache
def compile_transform(program: str) -> Any:
    """The jq program with IoT Central's `iotc` module made importable (a search path added to its
    import directive; the module's text is the documented `find`)."""
    import jq

    text = re.sub(r'import\s+"iotc"\s+as\s+iotc\s*;', f'import "iotc" as iotc {{search: "{_module_dir()}"}};', program)
    try:
        return jq.compile(text)
    except ValueError as exc:
        raise TransformError(f"transform does not compile: {str(exc)[:300]}") from exc


_HEADER = re.compile(r'\A((?:\s*(?:import|include)\s+"[^"]*"(?:\s+as\s+\$?\w+)?(?:\s*\{[^{}]*\})?\s*;)*)(.*)\Z', re.S)


@functools.cache
def compile_batch(program: str) -> Any | None:
    """The program run over an array of messages in one call (`[.[] | [(program)]]`: each
    message's outputs, in order); its module directives stay in front. One jq call per window
    instead of one per message (the calls, not jq, cost most). None when the wrapped program does
    not compile (the caller runs message by message)."""
    import jq

    match = _HEADER.match(program)
    if not match or not match.group(2).strip():
        return None
    header = re.sub(
        r'import\s+"iotc"\s+as\s+iotc\s*;', f'import "iotc" as iotc {{search: "{_module_dir()}"}};', match.group(1)
    )
    try:
        return jq.compile(f"{header} [.[] | [({match.group(2)})]]")
    except ValueError:
        return None


def rows_for(
    messages: list[Message],
    *,
    application_id: str,
    info: TemplateInfo,
    devices: dict[str, dict[str, Any]],
    export_filter: ExportFilter,
    transform: str | None,
    enrichments: Enrichments = Enrichments(),
    exclude_simulated: bool = False,
) -> list[tuple[Message, dict[str, Any]]]:
    """(source message, row) for every row the destination would have received."""
    kept = [m for m in messages if export_filter.matches(m, devices.get(m.device_id))]
    if exclude_simulated:  # with a managed identity IoT Central does not export simulated devices
        kept = [m for m in kept if not (devices.get(m.device_id) or {}).get("simulated", False)]

    def enriched(m: Message) -> dict[str, Any]:
        return enrichments.values(devices.get(m.device_id) or {"id": m.device_id}, info)

    if not transform:
        return [(m, exported_message(application_id, m, enriched(m))) for m in kept]
    program = compile_transform(transform)
    out: list[tuple[Message, dict[str, Any]]] = []
    ids = capability_ids(info)
    inputs = [transform_input(application_id, m, info, devices.get(m.device_id), ids, enriched(m)) for m in kept]
    batch = compile_batch(transform) if len(inputs) > 1 else None
    if batch is not None:
        try:
            answers = batch.input_value(inputs).first()
        except ValueError:
            answers = None  # one message fails: found and named below, message by message
        if isinstance(answers, list) and len(answers) == len(kept):
            for message, results in zip(kept, answers, strict=True):
                out.extend((message, r) for r in results if isinstance(r, dict))
            return out
    for message, value in zip(kept, inputs, strict=True):
        try:
            results = program.input_value(value).all()
        except ValueError as exc:
            raise TransformError(f"transform failed on a message of {message.device_id}: {str(exc)[:300]}") from exc
        out.extend((message, r) for r in results if isinstance(r, dict))
    return out
