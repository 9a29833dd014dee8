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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.backfill.templates import TemplateInfo

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
