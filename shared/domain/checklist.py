"""The forum thread's configuration checklist (its third part), checked against what the healer
read: each item passes, fails or does not apply, with the evidence. Pure logic, no I/O.

The thread's claims that do not hold for IoT Central's ADX destination are reported as such:
it has no mapping-name field, and row-level security governs queries, not ingestion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["pass", "fail", "not-applicable"]
_CLUSTER_URI = re.compile(r"https://[a-z0-9][a-z0-9-]*\.[a-z0-9-]+\.kusto\.windows\.net/?", re.IGNORECASE)
_LOOPBACK = re.compile(r"http://(?:127\.0\.0\.1|localhost)(?::\d+)?/?")


@dataclass(frozen=True)
class CheckItem:
    name: str
    status: Status
    evidence: str

    def to_dict(self) -> dict[str, str]:
        return {"item": self.name, "status": self.status, "evidence": self.evidence}


@dataclass(frozen=True)
class ChecklistInput:
    """What diagnosis read; None where a read was not possible."""

    cluster_url: str  # the target's, from configuration or discovery
    database: str
    table: str
    destination: dict[str, Any] | None  # IoT Central's destination body
    export_enabled: bool | None
    database_exists: bool
    table_exists: bool
    table_near_miss: str | None  # a table whose name differs only in case
    streaming_ingestion: bool | None  # enabled on the table or its database; None: not read
    row_level_security: bool
    identity_on: bool | None  # ARM: the app has a system-assigned identity; None: not asked


def run(data: ChecklistInput) -> list[CheckItem]:
    return [
        _cluster_uri(data),
        _database(data),
        _table(data),
        _streaming(data),
        _authorization(data),
        _enabled(data),
        _identity(data),
        CheckItem(
            "ingestion-mapping-name",
            "not-applicable",
            "IoT Central's ADX destination has no mapping-name field: the thread's advice does not apply",
        ),
        CheckItem(
            "row-level-security",
            "not-applicable",
            "row-level security governs queries, not ingestion, so it cannot block the export "
            f"(the thread's claim does not apply); it is {'on' if data.row_level_security else 'off'} on {data.table}",
        ),
        CheckItem(
            "cluster-role",
            "not-applicable",
            "no cluster role is needed to ingest; the thread's 'AllDatabasesMonitors' does not exist "
            "(it is AllDatabasesMonitor) and cluster roles cannot be set by command",
        ),
    ]


def _cluster_uri(data: ChecklistInput) -> CheckItem:
    url = str((data.destination or {}).get("clusterUrl") or data.cluster_url)
    if _LOOPBACK.fullmatch(url):
        return CheckItem("cluster-uri", "not-applicable", f"{url} is a local stand-in, not an Azure cluster")
    if not _CLUSTER_URI.fullmatch(url):
        return CheckItem(
            "cluster-uri", "fail", f"{url!r} is not the full URI https://<cluster>.<region>.kusto.windows.net"
        )
    if url.rstrip("/").lower() != data.cluster_url.rstrip("/").lower():
        return CheckItem("cluster-uri", "fail", f"the destination names {url}, the target {data.cluster_url}")
    return CheckItem("cluster-uri", "pass", f"{url} is a full cluster URI with its region")


def _database(data: ChecklistInput) -> CheckItem:
    if data.database_exists:
        return CheckItem("database", "pass", f"database {data.database!r} exists with exactly that name")
    return CheckItem(
        "database", "fail", f"ADX knows no database named exactly {data.database!r} (names are case-sensitive)"
    )


def _table(data: ChecklistInput) -> CheckItem:
    if not data.database_exists:
        return CheckItem("table", "not-applicable", "the database was not found")
    if data.table_exists:
        return CheckItem("table", "pass", f"table {data.table!r} exists with exactly that name")
    if data.table_near_miss:
        return CheckItem(
            "table", "fail", f"no table {data.table!r}, but {data.table_near_miss!r} exists: names are case-sensitive"
        )
    return CheckItem("table", "fail", f"no table named {data.table!r} in {data.database}")


def _streaming(data: ChecklistInput) -> CheckItem:
    if data.streaming_ingestion is None:
        return CheckItem("streaming-ingestion", "not-applicable", "the policy could not be read (table missing)")
    if data.streaming_ingestion:
        return CheckItem("streaming-ingestion", "pass", f"the streaming-ingestion policy is enabled for {data.table}")
    return CheckItem(
        "streaming-ingestion",
        "fail",
        f"no streaming-ingestion policy enabled on {data.table} or {data.database}; IoT Central's docs ask for it",
    )


def _authorization(data: ChecklistInput) -> CheckItem:
    if data.destination is None:
        return CheckItem("destination-auth", "not-applicable", "IoT Central's destination could not be read")
    auth = data.destination.get("authorization") or {}
    kind = auth.get("type") if isinstance(auth, dict) else None
    if kind == "systemAssignedManagedIdentity":
        return CheckItem("destination-auth", "pass", "the destination authorizes as the app's managed identity")
    if kind == "servicePrincipal":
        return CheckItem(
            "destination-auth",
            "pass",
            f"the destination authorizes as service principal {auth.get('clientId')}: "
            f"ADX must know aadapp={auth.get('clientId')};{auth.get('tenantId')}",
        )
    return CheckItem("destination-auth", "fail", f"unknown authorization type {kind!r}")


def _enabled(data: ChecklistInput) -> CheckItem:
    if data.export_enabled is None:
        return CheckItem("export-enabled", "not-applicable", "IoT Central's export could not be read")
    if data.export_enabled:
        return CheckItem("export-enabled", "pass", "the export is enabled")
    return CheckItem("export-enabled", "fail", "the export is disabled in IoT Central")


def _identity(data: ChecklistInput) -> CheckItem:
    auth = (data.destination or {}).get("authorization") or {}
    if isinstance(auth, dict) and auth.get("type") == "servicePrincipal":
        return CheckItem("managed-identity", "not-applicable", "the destination uses a service principal")
    if data.identity_on is None:
        return CheckItem("managed-identity", "not-applicable", "iotc_resource_id is not set: ARM was not asked")
    if data.identity_on:
        return CheckItem("managed-identity", "pass", "ARM reports a system-assigned identity on the app")
    return CheckItem("managed-identity", "fail", "ARM reports no system-assigned identity on the app")
