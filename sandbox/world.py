"""The whole sandbox: identities, ADX, IoT Central, Log Analytics, the simulated exporter,
scenario faults, and the servers that expose them on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox import monitor
from sandbox.adx import server as adx_server
from sandbox.adx.model import Assignment, Cluster, Fqn, KustoFault, Table, denied, forbidden
from sandbox.arm_ids import ADX_RESOURCE_ID
from sandbox.entra import Directory, Identity, TokenEndpoint, new_identity
from sandbox.faults import SERVICES, Faults, TransportFaults
from sandbox.httpserver import Handler, ServiceServer, json_response
from sandbox.iotc import exporter as exporter_mod
from sandbox.iotc import server as iotc_mod
from sandbox.iotc.server import ROLE_ADMINISTRATOR, IoTCentral
from sandbox.monitor import LogAnalytics

SCENARIO_FAULTS = (
    "stale-permission",
    "principal-removed",
    "identity-rotated",
    "table-level-only",
    "healer-not-admin",
    "table-missing",
    "database-missing",
    "ingestor-only",
    "destination-stale",
    "access-denied-code",
    "restricted-view",
    "row-level-security",
    "ingestion-time-disabled",
    "simulated-devices",
    "unknown-identity",
    "gateway-html",
)
# Switches: behaviour of the stand-ins that no primary source settles, or that varies; each has
# a ledger entry (sandbox/fidelity.py) and is tested both ways.
SWITCHES = (
    "list_normalised",
    "cluster_row_text",
    "own_role_text",
    "exporter_role",
    "iotc_error_style",
    "refuse_delete_in_use",
    "ts_reading",
    "component_keys",
)
IOTC_ERROR_STYLES = ("own", "code-only", "kusto")
TRANSPORT_FAULTS = ("throttle", "transient", "reset", "latency")
TELEMETRY_COLUMNS = [
    ("applicationId", "string"),
    ("deviceId", "string"),
    ("enqueuedTime", "datetime"),
    ("schema", "string"),
    ("telemetry", "dynamic"),
]
HEALER = "healer"
OPERATOR_UPN = "ops-admin@contoso.com"  # the person whose commands the faults stand for


@dataclass
class Target:
    """One IoT Central export destination into ADX, as the sandbox set it up."""

    subdomain: str
    export_id: str
    destination_id: str
    database: str
    table: str
    role: str
    auth: str = "systemAssignedManagedIdentity"  # or "servicePrincipal"
    configured_ids: str = "both"  # what the healer's configuration names: both, object, client

    def key(self) -> str:
        return f"{self.subdomain}/{self.export_id}/{self.destination_id}"


@dataclass
class ActiveFault:
    kind: str
    subdomain: str
    undo: Callable[[], None]
    detail: dict[str, Any] = field(default_factory=dict)


class World:
    def __init__(self, seed: int = 7, page_size: int = 4) -> None:
        self.directory = Directory()
        self.faults = Faults(seed=seed)
        self.cluster = Cluster("http://127.0.0.1:0", self.directory)
        self.iotc = IoTCentral(self.directory, page_size=page_size)
        self.la = LogAnalytics(self.directory)
        self.workspace = self.la.add_workspace()
        self.healer = self.directory.add(new_identity(HEALER))
        self.workspace.readers.add(self.healer.object_id)
        self.targets: list[Target] = []
        self.active: dict[tuple[str, str], ActiveFault] = {}
        self.lock = threading.RLock()
        self.batches = 0
        self._versions = itertools.count(2)  # the databases' metadata versions (EntityVersion)
        # The test receiver of HEALER_NOTIFY_WEBHOOK: like Slack's incoming webhooks, the secret is
        # the URL's last segment; a body without "text" gets 400 no_text, a good one 200 "ok".
        self.webhook_token = uuid.uuid4().hex
        self.notifications: list[dict[str, Any]] = []
        self.cluster.on_principal_change.append(self._journal)
        self.servers: dict[str, ServiceServer] = {}
        self._exporter_stop = threading.Event()
        self._exporter_thread: threading.Thread | None = None
        self.fleets: dict[str, exporter_mod.Fleet] = {}
        self.ingestion: Any = None  # sandbox.ingestion.IngestionService after attach_storage
        # The role IoT Central's exporter needs on the database: its docs prescribe Admin.
        self.exporter_role = "admins"
        # How IoT Central words errors[]: its own words (default), Kusto's code with a bare
        # message, or a copy of Kusto's code and message. Per app in iotc_error_styles.
        self.iotc_error_style = "own"
        self.iotc_error_styles: dict[str, str] = {}
        self.sp_secrets: dict[str, str] = {}

    # ---------------------------------------------------------------- servers

    def start(self, ports: dict[str, int] | None = None) -> World:
        ports = ports or {}
        handlers: dict[str, tuple[Handler, Callable[[int, float], Response] | None]] = {
            "kusto": (adx_server.KustoService(self.cluster, self.directory), adx_server.transport_error),
            "iotcentral": (self.iotc, iotc_mod.transport_error),
            "loganalytics": (self.la, monitor.transport_error),
            "identity": (TokenEndpoint(self.directory, HEALER), None),
            "control": (self._control, None),
        }
        try:
            for name, (handler, fault_error) in handlers.items():
                self.servers[name] = ServiceServer(name, handler, self.faults, ports.get(name, 0), fault_error).start()
        except OSError:
            self.stop()
            raise
        self.cluster.url = self.servers["kusto"].url
        self.iotc.base_url = self.servers["iotcentral"].url
        return self

    def stop(self) -> None:
        self.stop_exporter()
        if self.ingestion is not None:
            self.ingestion.stop()
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def endpoints(self) -> dict[str, str]:
        return {
            "kusto_cluster_url": self.servers["kusto"].url,
            "iotcentral_base_url": self.servers["iotcentral"].url + "/{subdomain}",
            "arm_url": self.servers["iotcentral"].url,
            "loganalytics_endpoint": self.servers["loganalytics"].url + "/v1",
            "loganalytics_workspace_id": self.workspace.workspace_id,
            "identity_endpoint": self.servers["identity"].url + "/msi/token",
            "entra_authority": self.servers["identity"].url,
            "control_url": self.servers["control"].url,
            "healer_client_id": self.healer.client_id,
            "healer_object_id": self.healer.object_id,
            "tenant_id": self.healer.tenant_id,
            "notify_webhook_url": f"{self.servers['control'].url}/webhook/incoming/{self.webhook_token}",
        }

    def identity_env(self) -> dict[str, str]:
        """What App Service sets for a managed identity; azure-identity reads these."""
        return {
            "IDENTITY_ENDPOINT": self.servers["identity"].url + "/msi/token",
            "IDENTITY_HEADER": self.directory.identity_header,
        }

    # ---------------------------------------------------------------- setup

    def add_database(self, name: str, healer_role: str = "admins") -> None:
        # Streaming ingestion enabled on the database, as IoT Central's docs ask for ADX exports.
        self.cluster.create_database(name).streaming_ingestion = True
        self.cluster.grant(name, healer_role, self.healer.fqn, "iotc-adx-healer")

    def add_app(
        self,
        subdomain: str,
        database: str = "devicedata",
        table: str = "DeviceTelemetry",
        role: str = "admins",
        exports: int = 1,
        columns: list[tuple[str, str]] | None = None,
        auth: str = "systemAssignedManagedIdentity",
        configured_ids: str = "both",
        grant_by: str = "object",
        devices: int = 3,
    ) -> list[Target]:
        """An IoT Central app whose exports write to ADX as its system-assigned identity (or, with
        `auth="servicePrincipal"`, as an app registration named in the destination).

        The writer is granted `role` by its object id (`grant_by="client"`: by its client id)."""
        if auth not in ("systemAssignedManagedIdentity", "servicePrincipal"):
            raise ValueError(f"auth must be systemAssignedManagedIdentity or servicePrincipal, not {auth!r}")
        with self.lock:
            if database not in self.cluster.databases:
                self.add_database(database)
            self.cluster.create_table(database, table, list(columns or TELEMETRY_COLUMNS))
            identity = self.directory.add(new_identity(f"iotc-{subdomain}"))
            self.iotc.add_app(subdomain, identity.name)
            self.iotc.add_user(subdomain, self.healer, ROLE_ADMINISTRATOR)
            for n in range(devices):
                self.iotc.put_device(subdomain, f"device-{n}", "dtmi:sandbox:thermostat;1")
            authorization: dict[str, str] = {"type": auth}
            writer = identity
            if auth == "servicePrincipal":
                writer = self.directory.add(new_identity(f"sp-{subdomain}"))
                secret = uuid.uuid4().hex
                self.sp_secrets[subdomain] = secret
                authorization.update(clientId=writer.client_id, tenantId=writer.tenant_id, clientSecret=secret)
            granted_id = writer.object_id if grant_by == "object" else writer.client_id
            self.cluster.grant(
                database,
                role,
                f"aadapp={granted_id};{writer.tenant_id}",
                f"IoT Central {subdomain} data export",
            )
            created = []
            for n in range(1, exports + 1):
                dest_id = f"adx-{n}"
                export_id = f"export-{n}"
                self.iotc.put_destination(
                    subdomain,
                    dest_id,
                    {
                        "displayName": f"ADX {database}.{table}",
                        "type": "dataexplorer@v1",
                        "clusterUrl": self.cluster.url,
                        "database": database,
                        "table": table,
                        "authorization": dict(authorization),
                    },
                )
                self.iotc.put_export(
                    subdomain,
                    export_id,
                    {
                        "displayName": f"Telemetry to ADX {n}",
                        "enabled": True,
                        "source": "telemetry",
                        "destinations": [{"id": dest_id}],
                    },
                )
                target = Target(subdomain, export_id, dest_id, database, table, role, auth, configured_ids)
                self.targets.append(target)
                created.append(target)
            return created

    def add_fleet_app(
        self,
        subdomain: str,
        fleet: exporter_mod.Fleet,
        database: str = "devicedata",
        table: str = "DeviceTelemetry",
        columns: list[tuple[str, str]] | None = None,
        transform: str | None = None,
        export_filter: str | None = None,
    ) -> Target:
        """An app with device templates and devices whose telemetry IoT Central retains; its export
        applies `export_filter` and the destination's jq `transform`, as IoT Central does."""
        target = self.add_app(subdomain, database=database, table=table, columns=columns, devices=0)[0]
        with self.iotc.lock:
            for template in fleet.templates:
                self.iotc.put_template(subdomain, template)
            for device_id, template_id in fleet.devices.items():
                self.iotc.put_device(subdomain, device_id, template_id, f"Sensor {device_id}")
            export = self.iotc.apps[subdomain].exports[target.export_id]
            if export_filter:
                export["filter"] = export_filter
            if transform:
                export["destinations"] = [{"id": target.destination_id, "transform": transform}]
        self.fleets[subdomain] = fleet
        return target

    def set_back(self, subdomain: str, seconds: float, interval_s: float = 1.0) -> int:
        """Scenario setup for a long outage without waiting for it: the app's telemetry and the rows
        its export delivered move `seconds` into the past, and the time since is filled with
        telemetry (one message per device and interface every `interval_s`) that the export never
        delivered. Call it while the export is failing. Returns the messages added."""
        delta = timedelta(seconds=seconds)
        app = self.iotc.apps[subdomain]
        fleet = self.fleets[subdomain]
        target = self.target(subdomain)
        with self.cluster.lock:
            table = self.cluster.table(target.database, target.table)
            kinds = dict(table.columns)
            for row in table.rows:
                for name, value in row.items():
                    if (kinds.get(name) == "datetime" or name == "$IngestionTime") and isinstance(value, datetime):
                        row[name] = value - delta
        app.telemetry.shift(-delta)
        latest = max((m.enqueued for m in app.telemetry.all()), default=datetime.now(UTC) - delta)
        added = 0
        at = latest + timedelta(seconds=interval_s)
        now = datetime.now(UTC)
        while at < now:
            added += len(fleet.tick(app, at))
            at += timedelta(seconds=interval_s)
        return added

    def attach_storage(self, connection_string: str, account_key: str) -> None:
        """Queued ingestion through Azurite (blob + queue), with the data-management worker running."""
        from sandbox.adx.ingestion import IngestionService

        def failed(database: str, table: str, fault: KustoFault, source: str) -> None:
            self._failed_ingestion({"database": database, "table": table}, fault, source)

        self.ingestion = IngestionService(self.cluster, connection_string, account_key, failed).setup()
        self.cluster.ingestion = self.ingestion
        self.ingestion.start()

    def target(self, subdomain: str) -> Target:
        for t in self.targets:
            if t.subdomain == subdomain:
                return t
        raise KeyError(f"no target for app '{subdomain}'")

    # ---------------------------------------------------------------- the simulated exporter

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
                        rows = exporter_mod.export_rows(app, export, ref, sent)
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
                        export["lastExportTime"] = iotc_mod.now_iso()
                    outcome[f"{app.subdomain}/{export['id']}"] = export["status"]
        return outcome

    def writer_of(self, app: iotc_mod.App, dest: dict[str, Any]) -> Identity | None:
        """The identity a destination writes as; None when ARM names one Entra does not know."""
        auth = dest.get("authorization") or {}
        if auth.get("type") == "servicePrincipal":
            return self.directory.find(client_id=str(auth.get("clientId")))
        if app.arm_principal_override:
            return self.directory.find(object_id=app.arm_principal_override)
        return self.iotc.identity_of(app.subdomain)

    def _push(
        self, app: iotc_mod.App, export_id: str, dest: dict[str, Any], rows: list[dict[str, Any]] | None = None
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
            self._failed_ingestion(dest, fault, source)
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
        return exporter_mod.export_rows(app, export, export["destinations"][0], messages)

    def _failed_ingestion(self, dest: dict[str, Any], fault: KustoFault, source: str) -> None:
        operation = str(uuid.uuid4())
        details = adx_server.error_body(
            fault.status,
            fault.code,
            fault.error_type,
            fault.message,
            fault.permanent,
            f"DM.IngestionExecutor;{operation}",
        )
        self.la.append(
            self.workspace.workspace_id,
            "FailedIngestion",
            {
                "TenantId": self.workspace.workspace_id,
                "OperationId": operation,
                "Database": dest["database"],
                "Table": dest["table"],
                "FailedOn": datetime.now(UTC),
                "IngestionSourceId": str(uuid.uuid4()),
                "IngestionSourcePath": source,
                "RootActivityId": str(uuid.uuid4()),
                "ErrorCode": fault.code,
                "FailureStatus": "Permanent" if fault.permanent else "Transient",
                "Details": json.dumps(details),
                "OriginatesFromUpdatePolicy": False,
                "ShouldRetry": not fault.permanent,
                "_ResourceId": ADX_RESOURCE_ID,
            },
        )

    def start_exporter(self, interval_s: float = 1.0) -> None:
        if self._exporter_thread is not None:
            return
        self._exporter_stop.clear()

        def loop() -> None:
            while not self._exporter_stop.wait(interval_s):
                self.export_once()

        self._exporter_thread = threading.Thread(target=loop, name="sandbox-exporter", daemon=True)
        self._exporter_thread.start()

    def stop_exporter(self) -> None:
        self._exporter_stop.set()
        if self._exporter_thread is not None:
            self._exporter_thread.join(timeout=5)
            self._exporter_thread = None

    def _journal(self, caller: Identity | None, verb: str, entity: str, change: str) -> None:
        """A principal change made by a command: journaled as sent, with the caller as actor."""
        database, _, table = entity.partition("/")
        command = self.cluster.command_text or _role_command(verb, database, table or None, change)
        principal = f"Microsoft Entra app id={caller.client_id}" if caller else ""
        self.journal(database, table or database, command, principal, caller.name if caller else "")

    def journal(self, database: str, entity: str, command: str, principal: str, user: str) -> dict[str, str]:
        """One `ADXJournal` row. Principal follows the `.show journal` documentation's examples
        (`imike@fabrikam.com` for a user, `Microsoft Entra app id=<id>` for an app); what ADX
        writes in `User` and `Event` for a principal change is undocumented (Event left empty)."""
        now = datetime.now(UTC)
        # Its own counter, not the world's lock: commands journal while holding the cluster's lock.
        version = next(self._versions)
        self.la.append(
            self.workspace.workspace_id,
            "ADXJournal",
            {
                "TenantId": self.workspace.workspace_id,
                "TimeGenerated": now,
                "OperationTimestamp": now,
                "DatabaseName": database,
                "EntityName": entity,
                "UpdatedEntityName": entity,
                "EntityContainerName": database,
                "EntityVersion": f"v{version}.0",
                "OriginalEntityVersion": f"v{version - 1}.0",
                "ChangeCommand": command,
                "Principal": principal,
                "User": user,
                "CorrelationId": f"KD2RunCommand;{uuid.uuid4()}",
                "RootActivityId": str(uuid.uuid4()),
                "_ResourceId": ADX_RESOURCE_ID,
                "_SubscriptionId": ADX_RESOURCE_ID.split("/")[2],
            },
        )
        return {"command": command, "actor": user or principal}

    def _by_operator(self, database: str, table: str | None, verb: str, role: str, fqns: list[str]) -> dict[str, str]:
        """A change a person made (the faults): journaled as that person ran it."""
        command = _role_command(verb, database, table, f"{role} ({', '.join(fqns)})")
        return self.journal(database, table or database, command, OPERATOR_UPN, OPERATOR_UPN)

    # ---------------------------------------------------------------- scenario faults

    def inject(self, kind: str, subdomain: str) -> ActiveFault:
        """Break one app's export the way operators see it break. Returns the fault (with undo)."""
        if kind not in SCENARIO_FAULTS:
            raise ValueError(f"kind must be one of {', '.join(SCENARIO_FAULTS)}, not {kind!r}")
        if subdomain not in self.iotc.apps:
            raise ValueError(f"app must be one of {', '.join(self.iotc.apps)}, not {subdomain!r}")
        target = self.target(subdomain)
        with self.cluster.lock, self.lock:
            fault: ActiveFault = getattr(self, "_fault_" + kind.replace("-", "_"))(target)
            self.active[(kind, subdomain)] = fault
            return fault

    def clear(self, kind: str, subdomain: str) -> None:
        """Undo a fault by hand (as an operator would); a healed fault is simply forgotten."""
        with self.cluster.lock, self.lock:
            fault = self.active.pop((kind, subdomain), None)
            if fault is not None:
                fault.undo()

    def _app_identity(self, target: Target) -> Identity:
        """The identity the target's destination writes as (the app's, or its service principal)."""
        app = self.iotc.apps[target.subdomain]
        writer = self.writer_of(app, app.destinations[target.destination_id])
        if writer is None:
            raise ValueError(f"app {target.subdomain!r} writes as an identity Entra does not know")
        return writer

    def _app_assignments(self, target: Target, identity: Identity) -> tuple[list[Assignment], list[Assignment]]:
        db = self.cluster.database(target.database)
        table = db.tables.get(target.table)
        db_rows = [a for a in db.principals if a.held_by(identity)]
        table_rows = [a for a in table.principals if a.held_by(identity)] if table else []
        return db_rows, table_rows

    def _fault_stale_permission(self, target: Target) -> ActiveFault:
        identity = self._app_identity(target)
        db_rows, table_rows = self._app_assignments(target, identity)
        if not db_rows and not table_rows:
            raise ValueError(f"app {target.subdomain!r} holds no role in {target.database!r} to go stale")
        for a in db_rows + table_rows:
            a.stale = True

        def undo() -> None:
            for a in db_rows + table_rows:
                a.stale = False

        return ActiveFault("stale-permission", target.subdomain, undo)

    def _fault_principal_removed(self, target: Target) -> ActiveFault:
        identity = self._app_identity(target)
        db = self.cluster.database(target.database)
        table = db.tables.get(target.table)
        db_rows, table_rows = self._app_assignments(target, identity)
        db.principals[:] = [a for a in db.principals if a not in db_rows]
        if table:
            table.principals[:] = [a for a in table.principals if a not in table_rows]
        journal = [
            # The operator types the principal as `.show database … principals` shows it to them.
            self._by_operator(
                target.database,
                None,
                "drop",
                role,
                [a.listed_fqn(self.cluster.list_normalised) for a in db_rows if a.role == role],
            )
            for role in sorted({a.role for a in db_rows})
        ]

        def undo() -> None:
            for a in db_rows:
                self.cluster.grant(target.database, a.role, str(a.fqn), a.notes)
            for a in table_rows:
                self.cluster.grant(target.database, a.role, str(a.fqn), a.notes, table=target.table)

        return ActiveFault(
            "principal-removed",
            target.subdomain,
            undo,
            {"removed": [str(a.fqn) for a in db_rows], "journal": journal},
        )

    def _fault_identity_rotated(self, target: Target) -> ActiveFault:
        old = self._app_identity(target)
        new = self.directory.add(old.rotated())
        event = self.iotc.record_write(target.subdomain, OPERATOR_UPN)

        def undo() -> None:
            self.cluster.grant(
                target.database,
                target.role,
                f"aadapp={new.object_id};{new.tenant_id}",
                f"IoT Central {target.subdomain} data export",
            )

        return ActiveFault(
            "identity-rotated",
            target.subdomain,
            undo,
            {
                "old_object_id": old.object_id,
                "new_object_id": new.object_id,
                "changed_at": event["eventTimestamp"],
                "changed_by": OPERATOR_UPN,
            },
        )

    def _fault_table_level_only(self, target: Target) -> ActiveFault:
        identity = self._app_identity(target)
        db = self.cluster.database(target.database)
        table = self.cluster.table(target.database, target.table)
        db_rows, _ = self._app_assignments(target, identity)
        db.principals[:] = [a for a in db.principals if a not in db_rows]
        fqn = Fqn.parse(f"aadapp={identity.object_id};{identity.tenant_id}")
        added = self.cluster.assignment("ingestors", fqn, "table-level grant")
        table.principals.append(added)
        journal = [
            self._by_operator(target.database, None, "drop", role, [str(a.fqn) for a in db_rows if a.role == role])
            for role in sorted({a.role for a in db_rows})
        ]
        journal.append(self._by_operator(target.database, target.table, "add", "ingestors", [str(fqn)]))

        def undo() -> None:
            if added in table.principals:
                table.principals.remove(added)
            for a in db_rows:
                self.cluster.grant(target.database, a.role, str(a.fqn), a.notes)

        return ActiveFault("table-level-only", target.subdomain, undo, {"journal": journal})

    def _fault_healer_not_admin(self, target: Target) -> ActiveFault:
        removed = self._fault_principal_removed(target)
        db = self.cluster.database(target.database)
        healer_rows = [a for a in db.principals if a.held_by(self.healer) and a.role == "admins"]
        db.principals[:] = [a for a in db.principals if a not in healer_rows]
        self.cluster.grant(target.database, "viewers", self.healer.fqn, "iotc-adx-healer (demoted)")
        self._by_operator(target.database, None, "drop", "admins", [str(a.fqn) for a in healer_rows])
        self._by_operator(target.database, None, "add", "viewers", [self.healer.fqn])

        def undo() -> None:
            db.principals[:] = [a for a in db.principals if not (a.held_by(self.healer) and a.role == "viewers")]
            for a in healer_rows:
                self.cluster.grant(target.database, a.role, str(a.fqn), a.notes)
            removed.undo()

        return ActiveFault("healer-not-admin", target.subdomain, undo, dict(removed.detail))

    def _fault_table_missing(self, target: Target) -> ActiveFault:
        db = self.cluster.database(target.database)
        table: Table | None = db.tables.pop(target.table, None)
        if table is None:
            raise ValueError(f"table {target.table!r} is already missing")

        def undo() -> None:
            db.tables.setdefault(target.table, table)

        return ActiveFault("table-missing", target.subdomain, undo)

    def _fault_database_missing(self, target: Target) -> ActiveFault:
        database = self.cluster.databases.pop(target.database, None)
        if database is None:
            raise ValueError(f"database {target.database!r} is already missing")

        def undo() -> None:
            self.cluster.databases.setdefault(target.database, database)

        return ActiveFault("database-missing", target.subdomain, undo)

    def _fault_ingestor_only(self, target: Target) -> ActiveFault:
        """The forum's least privilege: the writer holds Ingestor, not the Admin IoT Central needs."""
        identity = self._app_identity(target)
        db = self.cluster.database(target.database)
        db_rows, _ = self._app_assignments(target, identity)
        if not db_rows:
            raise ValueError(f"app {target.subdomain!r} holds no database role to demote")
        db.principals[:] = [a for a in db.principals if a not in db_rows]
        fqn = db_rows[0].fqn
        self.cluster.grant(target.database, "ingestors", str(fqn), db_rows[0].notes)

        def undo() -> None:
            db.principals[:] = [a for a in db.principals if not (a.held_by(identity) and a.role == "ingestors")]
            db.principals.extend(db_rows)

        return ActiveFault("ingestor-only", target.subdomain, undo)

    def _fault_destination_stale(self, target: Target) -> ActiveFault:
        """Permissions set after the destination was created: the destination stays denied until
        it is removed and added again (IoT Central's troubleshooting page)."""
        identity = self._app_identity(target)
        db_rows, _ = self._app_assignments(target, identity)
        if not db_rows:
            raise ValueError(f"app {target.subdomain!r} holds no role to have been granted late")
        dest = self.iotc.apps[target.subdomain].destinations[target.destination_id]
        previous = [a.added_at for a in db_rows]
        later = max(datetime.now(UTC), dest["_created"]) + timedelta(milliseconds=1)
        for a in db_rows:
            a.added_at = later
        dest["_binds_grant"] = True

        def undo() -> None:
            dest.pop("_binds_grant", None)
            for a, at in zip(db_rows, previous, strict=True):
                a.added_at = at

        return ActiveFault("destination-stale", target.subdomain, undo)

    def _fault_access_denied_code(self, target: Target) -> ActiveFault:
        """A stale permission whose only signal is ADX's `BadRequest_TableAccessDenied` code."""
        stale = self._fault_stale_permission(target)
        key = f"{target.database}/{target.table}"
        self.cluster.denial_codes[key] = "BadRequest_TableAccessDenied"
        self.iotc_error_styles[target.subdomain] = "code-only"

        def undo() -> None:
            stale.undo()
            self.cluster.denial_codes.pop(key, None)
            self.iotc_error_styles.pop(target.subdomain, None)

        return ActiveFault("access-denied-code", target.subdomain, undo)

    def _table_setting(self, target: Target, kind: str, name: str, value: Any) -> ActiveFault:
        """The principal is removed from a table with a query-side policy set: the repair must be
        verified without counting rows."""
        table = self.cluster.table(target.database, target.table)
        before = getattr(table, name)
        setattr(table, name, value)
        removed = self._fault_principal_removed(target)

        def undo() -> None:
            setattr(table, name, before)
            removed.undo()

        return ActiveFault(kind, target.subdomain, undo)

    def _fault_restricted_view(self, target: Target) -> ActiveFault:
        return self._table_setting(target, "restricted-view", "restricted_view_access", True)

    def _fault_row_level_security(self, target: Target) -> ActiveFault:
        policy = {"IsEnabled": True, "Query": "SandboxRls", "ChildEntities": None}
        return self._table_setting(target, "row-level-security", "row_level_security", policy)

    def _fault_ingestion_time_disabled(self, target: Target) -> ActiveFault:
        return self._table_setting(target, "ingestion-time-disabled", "ingestion_time_policy", False)

    def _fault_simulated_devices(self, target: Target) -> ActiveFault:
        """Only simulated devices: IoT Central does not export them with a managed identity."""
        app = self.iotc.apps[target.subdomain]
        before = {d["id"]: d["simulated"] for d in app.devices.values()}
        for device in app.devices.values():
            device["simulated"] = True
        removed = self._fault_principal_removed(target)

        def undo() -> None:
            for device_id, simulated in before.items():
                app.devices[device_id]["simulated"] = simulated
            removed.undo()

        return ActiveFault("simulated-devices", target.subdomain, undo)

    def _fault_unknown_identity(self, target: Target) -> ActiveFault:
        """IoT Central's identity was re-created and Entra does not know the new one yet: ARM
        names it, ADX refuses to add it, and the exporter's token is refused."""
        app = self.iotc.apps[target.subdomain]
        app.arm_principal_override = str(uuid.uuid4())

        def undo() -> None:
            app.arm_principal_override = None

        return ActiveFault("unknown-identity", target.subdomain, undo, {"object_id": app.arm_principal_override})

    def _fault_gateway_html(self, target: Target) -> ActiveFault:
        """Something between the healer and the app's API answers HTTP 200 with an HTML page."""
        self.iotc.gateway_html.add(target.subdomain)

        def undo() -> None:
            self.iotc.gateway_html.discard(target.subdomain)

        return ActiveFault("gateway-html", target.subdomain, undo)

    # ---------------------------------------------------------------- transport faults

    def set_transport(self, service: str, **params: Any) -> None:
        self.faults.set_transport(service, TransportFaults(**params))

    # ---------------------------------------------------------------- state (for people and /state)

    def state(self) -> dict[str, Any]:
        with self.cluster.lock, self.iotc.lock:
            return {
                "apps": {
                    app.subdomain: {
                        "identity_object_id": self.iotc.identity_of(app.subdomain).object_id,
                        "exports": {
                            e["id"]: {
                                "enabled": e.get("enabled"),
                                "status": e.get("status"),
                                "errors": e.get("errors", []),
                            }
                            for e in app.exports.values()
                        },
                    }
                    for app in self.iotc.apps.values()
                },
                "databases": {
                    db.name: {
                        "principals": [
                            {"role": a.role, "fqn": str(a.fqn), "notes": a.notes, "stale": a.stale}
                            for a in db.principals
                        ],
                        "tables": {
                            t.name: {
                                "rows": len(t.rows),
                                "principals": [{"role": a.role, "fqn": str(a.fqn)} for a in t.principals],
                            }
                            for t in db.tables.values()
                        },
                    }
                    for db in self.cluster.databases.values()
                },
                "failed_ingestion_rows": len(self.workspace.tables["FailedIngestion"]),
                "faults": [f"{k[0]}:{k[1]}" for k in self.active],
                "transport": {s: vars(self.faults.transport(s)) for s in SERVICES},
            }

    def _webhook(self, request: Request) -> Response:
        if request.path.rsplit("/", 1)[-1] != self.webhook_token:
            return _webhook_answer(403, "invalid_token")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
            return _webhook_answer(400, "no_text")
        with self.lock:
            self.notifications.append(body)
        return _webhook_answer(200, "ok")

    def _control(self, request: Request) -> Response:
        try:
            body = request.get_json(silent=True) if request.method == "POST" else None
            if request.path == "/state" and request.method == "GET":
                return json_response(self.state())
            if request.path == "/endpoints" and request.method == "GET":
                return json_response(self.endpoints())
            if request.path == "/healer-targets" and request.method == "GET":
                from sandbox.healer_config import targets_for

                return json_response(targets_for(self))
            if request.path.startswith("/webhook/incoming/") and request.method == "POST":
                return self._webhook(request)
            if request.path == "/webhook/received" and request.method == "GET":
                with self.lock:
                    return json_response(list(self.notifications))
            if request.path == "/exporter/tick" and request.method == "POST":
                return json_response(self.export_once())
            if request.path == "/faults" and request.method == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
                    return json_response({"error": "body must be JSON with 'kind'"}, 400)
                kind = body["kind"]
                if kind in SCENARIO_FAULTS:
                    self.inject(kind, str(body.get("app", "")))
                elif kind == "transport":
                    params = {k: v for k, v in body.items() if k not in ("kind", "service")}
                    self.set_transport(str(body.get("service", "")), **params)
                else:
                    return json_response({"error": f"kind must be one of {', '.join(SCENARIO_FAULTS)}, transport"}, 400)
                return json_response({"injected": kind}, 201)
            if request.path == "/faults/clear" and request.method == "POST":
                if not isinstance(body, dict):
                    return json_response({"error": "body must be JSON"}, 400)
                if body.get("kind") == "transport":
                    self.faults.clear_transport(body.get("service"))
                else:
                    self.clear(str(body.get("kind")), str(body.get("app")))
                return json_response({"cleared": body.get("kind")})
            return json_response({"error": f"no route {request.method} {request.path}"}, 404)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)


def _webhook_answer(status: int, text: str) -> Response:
    return Response(text, status=status, content_type="text/plain")


def _role_command(verb: str, database: str, table: str | None, change: str) -> str:
    """`.drop database ['db'] ingestors ('aadapp=…;…')`: a command as a person would type it."""
    scope = f"table ['{table}']" if table else f"database ['{database}']"
    role, _, rest = change.partition(" ")
    principals = rest if rest == "none" else "(" + ", ".join(f"'{p}'" for p in rest.strip("()").split(", ")) + ")"
    return f".{verb} {scope} {role} {principals}"
