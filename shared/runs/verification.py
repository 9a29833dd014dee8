"""Verification: the repair counts only when the principal is listed again, new rows arrive after
the repair, and IoT Central reports the target's destination healthy.

A row count is wrong or impossible when restricted view access is on (even a Database Admin may
not query the table), row-level security filters it, the IngestionTime policy is disabled
(`ingestion_time()` is null), or only simulated devices send (IoT Central does not export them
with a managed identity). Those are checked only when the count finds nothing, and then the
repair is verified by the destination's status and the export's `lastExportTime` advancing past
the repair, which the outcome says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.adapters.iotcentral import IoTCentralAdapter
from shared.adapters.iotcentral_model import ExportStatus, IotcError
from shared.adapters.kusto import KustoAdapter
from shared.adapters.kusto_errors import AdxError
from shared.domain.targets import Target


@dataclass(frozen=True)
class Verification:
    listed: bool
    new_rows: int
    export_healthy: bool
    detail: str
    by_status: str = ""  # why rows could not be counted ("" when they were)
    export_advanced: bool = False
    still_denied: bool = False  # the destination reports a permission failure after the repair

    @property
    def healed(self) -> bool:
        if not (self.listed and self.export_healthy):
            return False
        return self.new_rows > 0 or (bool(self.by_status) and self.export_advanced)


def why_rows_cannot_be_counted(
    target: Target, kusto: KustoAdapter, iotc: IoTCentralAdapter, status: ExportStatus | None
) -> list[str]:
    reasons = []
    for policy, what in (
        ("restricted_view_access", "restricted view access is on"),
        ("row_level_security", "row-level security filters the count"),
    ):
        try:
            if kusto.policy_enabled(target.database, target.table, policy):
                reasons.append(what)
        except AdxError:
            pass
    try:
        if not kusto.policy_enabled(target.database, target.table, "ingestiontime"):
            reasons.append("the IngestionTime policy is disabled (ingestion_time() is null)")
    except AdxError:
        pass
    managed = status is None or status.authorization.get("type") != "servicePrincipal"
    if managed:
        try:
            devices = iotc.devices(target.app)
            if devices and all(d.get("simulated") for d in devices):
                reasons.append(
                    "only simulated devices send, and IoT Central does not export them with a managed identity"
                )
        except IotcError:
            pass
    return reasons


def verify(
    target: Target, kusto: KustoAdapter, iotc: IoTCentralAdapter, action_at: datetime, listed: bool
) -> Verification:
    """`listed` comes from ADX's own answer to the add/re-add (the principals after the change)."""
    from shared.domain.diagnosis import is_permission_failure

    problems = []
    count_failed = ""
    try:
        rows = kusto.rows_since(target.database, target.table, action_at)
    except AdxError as exc:
        rows = 0
        count_failed = f"verification query failed: {exc}"
    status: ExportStatus | None = None
    denied = False
    try:
        status = iotc.status(target.app, target.export_id, target.destination_id)
        healthy = status.healthy
        denied = any(is_permission_failure(c, m) for c, m in status.destination_errors)
        if not healthy:
            problems.append(f"destination {target.destination_id} {status.destination_status or 'unknown'}")
    except IotcError as exc:
        healthy = False
        problems.append(f"IoT Central status unavailable: {exc}")
    by_status = ""
    advanced = False
    if rows == 0 and healthy:  # an unhealthy destination fails verification however rows are counted
        reasons = why_rows_cannot_be_counted(target, kusto, iotc, status)
        if reasons:
            by_status = "; ".join(reasons)
            last = status.last_export_time if status else None
            advanced = last is not None and last > action_at
            if not advanced:
                problems.append(f"IoT Central's last export time has not advanced past {action_at.isoformat()}")
        else:
            if count_failed:
                problems.append(count_failed)
            problems.append(f"no rows ingested into {target.table} since {action_at.isoformat()}")
    elif rows == 0:
        problems.append(count_failed or f"no rows ingested into {target.table} since {action_at.isoformat()}")
    if not listed:
        problems.append("the principal is not listed with its role")
    if problems:
        detail = "; ".join(problems)
    elif by_status:
        detail = (
            f"verified by IoT Central's destination status and lastExportTime (rows cannot be counted: {by_status}); "
            "principal listed"
        )
    else:
        detail = f"{rows} new rows; destination healthy; principal listed"
    return Verification(listed, rows, healthy, detail, by_status, advanced, denied and not healthy)
