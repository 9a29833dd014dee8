"""Device templates → what the query API can return for them.

`GET /api/deviceTemplates` (2022-10-31-preview): capabilities are in `capabilityModel.contents`
and `capabilityModel.extends[].contents`; a `Component` item nests an interface in `schema`
(its telemetry is queried as `component.name`, howto-query-with-rest-api.md). IoT Edge templates
describe modules as `Relationship`/`EdgeModule` items whose `target` holds the module's
interfaces: the query language documents no syntax for module telemetry, so those are listed as
not recoverable rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Capability:
    path: str  # `name` or `component.name`: how the query API names it
    name: str
    component: str | None
    capability_id: str  # the DTDL @id, when the template gives one (the transform input's telemetry[].id)


@dataclass
class TemplateInfo:
    template_id: str
    display_name: str
    telemetry: list[Capability] = field(default_factory=list)
    unrecoverable: list[str] = field(default_factory=list)  # module telemetry and the like


def _types(item: dict[str, Any]) -> list[str]:
    kind = item.get("@type", [])
    return [kind] if isinstance(kind, str) else [str(k) for k in kind]


def _interfaces(model: dict[str, Any]) -> list[dict[str, Any]]:
    found = [model]
    for extended in model.get("extends") or []:
        if isinstance(extended, dict):
            found.extend(_interfaces(extended))
    return found


def parse_template(template: dict[str, Any]) -> TemplateInfo:
    info = TemplateInfo(str(template.get("@id") or template.get("id") or ""), str(template.get("displayName", "")))
    model = template.get("capabilityModel") or {}
    for interface in _interfaces(model):
        for item in interface.get("contents") or []:
            if not isinstance(item, dict):
                continue
            kinds = _types(item)
            name = str(item.get("name", ""))
            if "Telemetry" in kinds:
                info.telemetry.append(Capability(name, name, None, str(item.get("@id", ""))))
            elif "Component" in kinds and isinstance(item.get("schema"), dict):
                for inner in _interfaces(item["schema"]):
                    for cap in inner.get("contents") or []:
                        if isinstance(cap, dict) and "Telemetry" in _types(cap):
                            inner_name = str(cap.get("name", ""))
                            info.telemetry.append(
                                Capability(f"{name}.{inner_name}", inner_name, name, str(cap.get("@id", "")))
                            )
            elif "EdgeModule" in kinds or ("Relationship" in kinds and item.get("target")):
                info.unrecoverable.append(
                    f"module {name!r} of template {info.template_id}: the query API documents no syntax for "
                    "module telemetry"
                )
    return info
