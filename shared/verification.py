"""Verification: the repair counts only when the principal is listed again, new rows arrive after
the repair, and IoT Central reports the export and destination healthy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.iotcentral import IoTCentralAdapter, IotcError
from shared.kusto import AdxError, KustoAdapter
from shared.targets import Target


@dataclass(frozen=True)
class Verification:
    listed: bool
    new_rows: int
    export_healthy: bool
    detail: str

    @property
    def healed(self) -> bool:
        return self.listed and self.new_rows > 0 and self.export_healthy


def verify(
    target: Target, kusto: KustoAdapter, iotc: IoTCentralAdapter, action_at: datetime, listed: bool
) -> Verification:
    """`listed` comes from ADX's own answer to the add/re-add (the principals after the change)."""
    problems = []
    try:
        rows = kusto.rows_since(target.database, target.table, action_at)
    except AdxError as exc:
        rows = 0
        problems.append(f"verification query failed: {exc}")
    try:
        status = iotc.status(target.app, target.export_id, target.destination_id)
        healthy = status.healthy
        if not healthy:
            problems.append(f"export {status.status}, destination {status.destination_status}")
    except IotcError as exc:
        healthy = False
        problems.append(f"IoT Central status unavailable: {exc}")
    if not listed:
        problems.append("the principal is not listed with its role")
    if rows == 0:
        problems.append(f"no rows ingested into {target.table} since {action_at.isoformat()}")
    detail = "; ".join(problems) if problems else f"{rows} new rows; export healthy; principal listed"
    return Verification(listed, rows, healthy, detail)
