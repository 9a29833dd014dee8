"""IoT Central's data export delivering to ADX destinations: each enabled export pushes a batch to
each of its ADX destinations as the identity the destination names, and records the outcome in the
export's and the destination's `status` and `errors[]`, as the data-export API shows them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.adx.model import Cluster, KustoFault, denied, forbidden
from sandbox.entra import Directory, Identity
from sandbox.iotc.exporter import Fleet, export_rows
from sandbox.iotc.server import App, IoTCentral, now_iso

IOTC_ERROR_STYLES = ("own", "code-only", "kusto")
# The table a destination writes to when the export has no transform: the exported message's fields
# (a batch without a fleet carries one reading per device in this shape).
TELEMETRY_COLUMNS = [
    ("applicationId", "string"),
    ("deviceId", "string"),
    ("enqueuedTime", "datetime"),
    ("schema", "string"),
    ("telemetry", "dynamic"),
]

# Where a refused batch is reported: ADX's FailedIngestion log (database, table, fault, source).
FailedIngestion = Callable[[str, str, KustoFault, str], None]


class Delivery:
    def __init__(self, iotc: IoTCentral, cluster: Cluster, directory: Directory, failed: FailedIngestion) -> None:
        self.iotc = iotc
        self.cluster = cluster
        self.directory = directory
        self.failed = failed
        self.batches = 0
        self.fleets: dict[str, Fleet] = {}
        # The role IoT Central's exporter needs on the database: its docs prescribe Admin.
        self.exporter_role = "admins"
        # How IoT Central words errors[]: its own words (default), Kusto's code with a bare
        # message, or a copy of Kusto's code and message. Per app in iotc_error_styles.
        self.iotc_error_style = "own"
        self.iotc_error_styles: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def export_once(self) -> dict[str, str]:
        """Every enabled export pushes one batch to each ADX destination; returns status per export."""
        outcome: dict[str, str] = {}
        with self.iotc.lock:
            apps = list(self.iotc.apps.values())
        for app in apps:
            fleet = self.fleets.get(app.subdomain)
            sent = fleet.tick(app) if fleet else []
            with self.iotc.lock:
                exports = [e for e in app.exports.values() if e.get("enabled")]
            for export in exports:
                errors: list[dict[str, str]] = []
                for ref in export["destinations"]:
                    dest = app.destinations.get(ref["id"])
                    if dest is None or dest.get("type") != "dataexplorer@v1":
                        continue
                    if fleet is not None:
                        rows = export_rows(app, export, ref, sent)
                        error = self._push(app, export["id"], dest, rows)
                    else:
                        error = self._push(app, export["id"], dest)
                    with self.iotc.lock:
                        if error is None:
                            dest["status"] = "healthy"
                            dest.pop("errors", None)
                        else:
                            dest["status"] = "error"
                            dest["errors"] = [error]
                            errors.append(error)
                with self.iotc.lock:
                    if errors:
                        export["status"] = "error"
                        export["errors"] = errors
                    else:
                        export["status"] = "healthy"
                        export.pop("errors", None)
                        export["lastExportTime"] = now_iso()
                    outcome[f"{app.subdomain}/{export['id']}"] = export["status"]
        return outcome

    def writer_of(self, app: App, dest: dict[str, Any]) -> Identity | None:
        """The identity a destination writes as; None when ARM names one Entra does not know."""
        auth = dest.get("authorization") or {}
        if auth.get("type") == "servicePrincipal":
            return self.directory.find(client_id=str(auth.get("clientId")))
        if app.arm_principal_override:
            return self.directory.find(object_id=app.arm_principal_override)
        return self.iotc.identity_of(app.subdomain)

    def _push(
        self, app: App, export_id: str, dest: dict[str, Any], rows: list[dict[str, Any]] | None = None
    ) -> dict[str, str] | None:
        """One batch to one destination: `rows` (a fleet's exported messages) or, without a fleet, a
        reading from every device. With a managed identity simulated devices are not exported."""
        self.batches += 1
        subdomain = app.subdomain
        now = datetime.now(UTC)
        database, table = dest["database"], dest["table"]
        managed = (dest.get("authorization") or {}).get("type") == "systemAssignedManagedIdentity"
        simulated = {d["id"] for d in app.devices.values() if d.get("simulated")} if managed else set()
        if rows is None:
            devices = [d for d in app.devices.values() if d["id"] not in simulated]
            rows = [
                {
                    "applicationId": subdomain,
                    "deviceId": d["id"],
                    "enqueuedTime": now,
                    "schema": "default@v1",
                    "telemetry": {"temperature": 20 + n, "humidity": 40 + n},
                }
                for n, d in enumerate(devices)
            ]
        else:
            rows = [r for r in rows if r.get("deviceId") not in simulated]
        source = f"https://iotc-{subdomain}.blob.core.windows.net/export/{export_id}/{uuid.uuid4()}.json"
        writer = self.writer_of(app, dest)
        try:
            if writer is None:
                unknown = Identity("unknown", str(app.arm_principal_override), str(app.arm_principal_override))
                raise denied(unknown, "BadRequest_InvalidKustoIdentityToken", "Ingest", f"{database}/{table}")
            with self.cluster.lock:
                self.cluster.table(database, table)
                if dest.get("_binds_grant") and not self._granted_before(writer, database, dest["_created"]):
                    # The destination keeps the authorization it had when it was created: IoT
                    # Central refuses before asking ADX (no FailedIngestion row).
                    return self._iotc_error(subdomain, "InsufficientPermissions", None)
                if (
                    self.exporter_role == "admins"
                    and self.cluster.can_ingest(writer, database, table)
                    and "admins" not in self.cluster.db_roles_of(writer, database, for_ingest=True)
                ):
                    fault = forbidden(writer, "AlterTableIngestionMappings", f"{self.cluster.url}/{database}")
                    return self._iotc_error(subdomain, "InsufficientPermissions", fault)
            # Even a batch with no rows (only simulated devices) goes through ADX's authorization.
            self.cluster.ingest(writer, database, table, rows, source)
            return None
        except KustoFault as fault:
            self.failed(database, table, fault, source)
            permission = fault.status in (401, 403) or "Denied" in fault.code or "Identity" in fault.code
            return self._iotc_error(subdomain, "InsufficientPermissions" if permission else "IngestionFailed", fault)

    def _granted_before(self, identity: Identity, database: str, created: datetime) -> bool:
        rows = [a for a in self.cluster.database(database).principals if a.held_by(identity)]
        return any(a.role in ("admins", "ingestors") and a.added_at <= created for a in rows)

    def _iotc_error(self, subdomain: str, code: str, fault: KustoFault | None) -> dict[str, str]:
        """IoT Central's `errors[]` entry. Its codes and wording for ADX failures are undocumented
        (the one published sample is `InvalidResponse`); "own" uses the words users quote."""
        style = self.iotc_error_styles.get(subdomain, self.iotc_error_style)
        if fault is not None and style == "kusto":
            return {"code": fault.code, "message": fault.message}
        if fault is not None and style == "code-only":
            return {"code": fault.code, "message": "Unable to ingest data to Azure Data Explorer."}
        if code == "InsufficientPermissions":
            return {
                "code": code,
                "message": "Unable to ingest data to Azure Data Explorer: Principal lacks required permissions.",
            }
        reason = "the table was not found" if fault is not None and "NotFound" in fault.code else "the request failed"
        return {"code": code, "message": f"Unable to ingest data to Azure Data Explorer: {reason}."}

    def expected_rows(self, subdomain: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """What the export would have written for messages enqueued in [start, end]."""
        app = self.iotc.apps[subdomain]
        export = app.exports["export-1"]
        messages = [m for m in app.telemetry.all() if start <= m.enqueued <= end]
        return export_rows(app, export, export["destinations"][0], messages)

    def start(self, interval_s: float = 1.0) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.export_once()

        self._thread = threading.Thread(target=loop, name="sandbox-exporter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
