"""Azure Monitor alert webhooks (common alert schema): parse, map to targets, deduplicate.

Action groups give up on slow or failing endpoints, so the webhook answers fast: it validates,
records the alert (idempotent on alertId + monitorCondition) and enqueues; nothing else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from shared.targets import Target

SCHEMA_ID = "azureMonitorCommonAlertSchema"
MAX_ALERT_BYTES = 256 * 1024


class AlertError(ValueError):
    def __init__(self, status: int, field_name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field_name


@dataclass(frozen=True)
class Alert:
    alert_id: str
    condition: str  # Fired | Resolved
    rule: str
    monitoring_service: str
    target_ids: tuple[str, ...]
    dimensions: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Idempotency key, safe as a table key: alert ids are resource ids (with '/')."""
        return hashlib.sha256(f"{self.alert_id}|{self.condition}".encode()).hexdigest()


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_alert(body: bytes, content_type: str | None) -> Alert:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise AlertError(415, "Content-Type", f"Content-Type={_shown(content_type or '')} must be application/json")
    if len(body) > MAX_ALERT_BYTES:
        raise AlertError(413, "body", f"body is {len(body)} bytes; at most {MAX_ALERT_BYTES} are accepted")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AlertError(400, "body", f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise AlertError(400, "body", "body must be a JSON object")
    schema = payload.get("schemaId")
    if schema != SCHEMA_ID:
        raise AlertError(
            400,
            "schemaId",
            f"schemaId={_shown(schema)} is not {SCHEMA_ID}; enable the common alert schema on the action group",
        )
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("essentials"), dict):
        raise AlertError(400, "data.essentials", "data.essentials is missing or not an object")
    essentials = data["essentials"]
    alert_id = essentials.get("alertId")
    if not isinstance(alert_id, str) or not alert_id or len(alert_id) > 1024:
        raise AlertError(
            400, "data.essentials.alertId", f"data.essentials.alertId={_shown(alert_id)} must be a non-empty string"
        )
    condition = essentials.get("monitorCondition")
    if condition not in ("Fired", "Resolved"):
        raise AlertError(
            400,
            "data.essentials.monitorCondition",
            f"data.essentials.monitorCondition={_shown(condition)} must be Fired or Resolved",
        )
    targets = essentials.get("alertTargetIDs") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise AlertError(
            400, "data.essentials.alertTargetIDs", "data.essentials.alertTargetIDs must be a list of resource ids"
        )
    return Alert(
        alert_id=alert_id,
        condition=condition,
        rule=str(essentials.get("alertRule") or ""),
        monitoring_service=str(essentials.get("monitoringService") or ""),
        target_ids=tuple(t.lower() for t in targets),
        dimensions=_dimensions(data.get("alertContext")),
    )


def _dimensions(context: Any) -> dict[str, str]:
    """Dimensions of Log Alerts V2 (`LogQueryCriteria`) and metric alerts, by lower-case name."""
    found: dict[str, str] = {}
    if not isinstance(context, dict):
        return found
    condition = context.get("condition")
    criteria = condition.get("allOf") if isinstance(condition, dict) else None
    for criterion in criteria if isinstance(criteria, list) else []:
        dims = criterion.get("dimensions") if isinstance(criterion, dict) else None
        for dim in dims if isinstance(dims, list) else []:
            if isinstance(dim, dict) and isinstance(dim.get("name"), str) and isinstance(dim.get("value"), str):
                found.setdefault(dim["name"].lower(), dim["value"])
    return found


def _cluster_name(target: Target) -> str:
    return target.cluster_url.split("//", 1)[-1].split(".", 1)[0].lower()


def match_targets(alert: Alert, targets: list[Target]) -> list[Target]:
    """The targets an alert names: by dimensions first, then by the resource it fired on."""
    dims = alert.dimensions
    resources = alert.target_ids

    def on_app(t: Target) -> bool:
        return not any("microsoft.iotcentral/iotapps/" in r for r in resources) or any(
            r == (t.iotc_resource_id or "").lower() or r.endswith(f"/iotapps/{t.app}") for r in resources
        )

    def on_cluster(t: Target) -> bool:
        return not any("microsoft.kusto/clusters/" in r for r in resources) or any(
            r.endswith(f"/clusters/{_cluster_name(t)}") for r in resources
        )

    if "exportid" in dims:
        return [
            t
            for t in targets
            if t.export_id == dims["exportid"]
            and dims.get("destinationid", t.destination_id) == t.destination_id
            and on_app(t)
        ]
    if "database" in dims or "table" in dims:
        return [
            t
            for t in targets
            if dims.get("database", t.database) == t.database
            and dims.get("table", t.table) == t.table
            and on_cluster(t)
            and on_app(t)
        ]
    if resources:
        return [
            t
            for t in targets
            if (any("/iotapps/" in r for r in resources) and on_app(t))
            or (any("/clusters/" in r for r in resources) and on_cluster(t))
        ]
    return []
