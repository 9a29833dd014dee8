"""IoT Central's answers as the healer reads them: an export's and its destination's status, the
service principal a destination authorizes as, and the adapter's error. Pure: apart from the
adapter so that the modules which judge these (detection, verification, the run engine) need not
import the adapter and its SDK."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.domain.principals import PrincipalRef


class IotcError(Exception):
    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ExportStatus:
    export_id: str
    enabled: bool
    status: str
    errors: tuple[tuple[str, str], ...]
    destination_id: str
    destination_status: str
    destination_errors: tuple[tuple[str, str], ...]
    destination: dict[str, Any] = field(default_factory=dict, compare=False)
    export: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def healthy(self) -> bool:
        """The target is judged by *its destination's* status (an export with several destinations
        reports the worst of them); `status` is a free string, compared case-insensitively."""
        return self.enabled and self.destination_status.lower() == "healthy"

    @property
    def last_export_time(self) -> datetime | None:
        value = self.export.get("lastExportTime")
        if not isinstance(value, str) or not value:
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    @property
    def authorization(self) -> dict[str, Any]:
        auth = self.destination.get("authorization")
        return auth if isinstance(auth, dict) else {}

    @property
    def other_destinations(self) -> list[str]:
        refs = self.export.get("destinations") or []
        return [str(r.get("id")) for r in refs if isinstance(r, dict) and r.get("id") != self.destination_id]

    def all_errors(self) -> list[tuple[str, str]]:
        """The destination's errors; the export's too only when it has no other destination (an
        export with several reports the worst of them, maybe another destination's)."""
        if self.other_destinations:
            return list(self.destination_errors)
        return list(self.destination_errors) + [e for e in self.errors if e not in self.destination_errors]


def _errors(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((str(e.get("code", "")), str(e.get("message", ""))) for e in body.get("errors") or [])


def service_principal_of(destination: dict[str, Any]) -> PrincipalRef | None:
    """The app registration a destination authorizes as (`authorization.type: servicePrincipal`);
    None for a managed identity or a body that does not name valid GUIDs."""
    auth = destination.get("authorization")
    if not isinstance(auth, dict) or auth.get("type") != "servicePrincipal":
        return None
    client, tenant = str(auth.get("clientId") or ""), str(auth.get("tenantId") or "")
    if not (_GUID.fullmatch(client) and _GUID.fullmatch(tenant)):
        return None
    return PrincipalRef(tenant_id=tenant.lower(), client_id=client.lower())


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def export_status(export_id: str, export: dict[str, Any], destination_id: str, dest: dict[str, Any]) -> ExportStatus:
    """The status of an export as it sends to one of its destinations, from their two bodies."""
    return ExportStatus(
        export_id=export_id,
        enabled=bool(export.get("enabled")),
        status=str(export.get("status", "")),
        errors=_errors(export),
        destination_id=destination_id,
        destination_status=str(dest.get("status", "")),
        destination_errors=_errors(dest),
        destination=dest,
        export=export,
    )
