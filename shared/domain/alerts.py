"""Azure Monitor alert webhooks (common alert schema): parse, map to targets, deduplicate.

Action groups give up on slow or failing endpoints, so the webhook answers fast: it validates,
records the alert (idempotent on alertId + monitorCondition) and enqueues; nothing else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from shared.domain.diagnosis import Evidence
from shared.domain.targets import Target, describe_validation

SCHEMA_ID = "azureMonitorCommonAlertSchema"
ALERT_WITHOUT_CODE = "AlertFired"  # the code of alert evidence whose dimensions name no error
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
    description: str = ""

    @property
    def key(self) -> str:
        """Idempotency key, safe as a table key: alert ids are resource ids (with '/')."""
        return hashlib.sha256(f"{self.alert_id}|{self.condition}".encode()).hexdigest()


def _shown(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Essentials(BaseModel):
    """`data.essentials` of the common alert schema: only what the healer reads."""

    model_config = ConfigDict(extra="ignore")

    alertId: str = Field(min_length=1, max_length=1024)
    monitorCondition: Literal["Fired", "Resolved"]
    alertRule: str | None = None
    monitoringService: str | None = None
    description: str | None = None
    alertTargetIDs: list[str] | None = None


class AlertData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    essentials: Essentials
    alertContext: object = None


class CommonAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schemaId: str
    data: AlertData

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: object) -> object:
        if isinstance(value, dict):
            if value.get("schemaId") != SCHEMA_ID:
                raise PydanticCustomError(
                    "schema",
                    "schemaId={shown} is not {expected}; enable the common alert schema on the action group",
                    {"shown": _shown(value.get("schemaId")), "expected": SCHEMA_ID},
                )
            if not isinstance(value.get("data"), dict):
                return {**value, "data": {}}
        return value


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
    try:
        alert = CommonAlert.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or "schemaId"
        raise AlertError(400, where, describe_validation(exc, "alert")) from exc
    essentials = alert.data.essentials
    return Alert(
        alert_id=essentials.alertId,
        condition=essentials.monitorCondition,
        rule=essentials.alertRule or "",
        monitoring_service=essentials.monitoringService or "",
        target_ids=tuple(t.lower() for t in essentials.alertTargetIDs or []),
        dimensions=_dimensions(alert.data.alertContext),
        description=(essentials.description or "")[:500],
    )


def _dimensions(context: object) -> dict[str, str]:
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


def alert_evidence(alert: Alert) -> Evidence:
    """What the alert says, as evidence that travels with the run it starts."""
    code = alert.dimensions.get("errorcode") or alert.dimensions.get("error_code") or ALERT_WITHOUT_CODE
    dims = ", ".join(f"{k}={v}" for k, v in sorted(alert.dimensions.items()))
    text = "; ".join(part for part in (alert.rule, alert.description, dims) if part)
    return Evidence("alert", code[:100], text[:500])


def match_targets(alert: Alert, targets: list[Target]) -> list[Target]:
    """The targets an alert names: by dimensions first, then by the resource it fired on."""
    dims = alert.dimensions
    resources = alert.target_ids

    def on_app(t: Target) -> bool:
        return not any("microsoft.iotcentral/iotapps/" in r for r in resources) or any(
            r == (t.iotc_resource_id or "").lower() or r.endswith(f"/iotapps/{t.app}") for r in resources
        )

    # The cluster: the resource the alert fired on, or a resource-id dimension of a log alert
    # (`_ResourceId` tells apart clusters that share a workspace).
    clusters = [
        r
        for r in (*resources, dims.get("_resourceid", "").lower(), dims.get("resourceid", "").lower())
        if "/microsoft.kusto/clusters/" in r
    ]

    def on_cluster(t: Target) -> bool:
        return not clusters or any(t.on_cluster(r) for r in clusters)

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
