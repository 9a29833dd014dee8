"""The sandbox's state, apart from its servers, faults and control API: what scenarios, the control
routes and the healer's configuration read and change (they name this, never the World, which
composes them all and is named by none of them)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.adx.diagnostics import Diagnostics
from sandbox.adx.model import Cluster
from sandbox.entra import Directory, new_identity
from sandbox.faults import Faults, TransportFaults
from sandbox.httpserver import ServiceServer
from sandbox.iotc.delivery import TELEMETRY_COLUMNS, Delivery
from sandbox.iotc.exporter import Fleet
from sandbox.iotc.server import ROLE_ADMINISTRATOR, IoTCentral
from sandbox.monitor import LogAnalytics

# Switches: behaviour of the stand-ins that no primary source settles, or that varies; each has
# a ledger entry (sandbox/fidelity.py) and is tested both ways. Each is an attribute of the
# cluster, the IoT Central stand-in or its data export (World.delivery).
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
HEALER = "healer"


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
    """A scenario fault in place, with how to undo it."""

    kind: str
    subdomain: str
    undo: Callable[[], None]
    detail: dict[str, Any] = field(default_factory=dict)


class Stage:
    """What the sandbox is: its services' state (Entra ID, ADX, IoT Central with its data export,
    Log Analytics), the apps and exports a scenario starts from, and the servers' addresses once
    started. Faults, the control API and the servers themselves are the World's (sandbox/world.py)."""

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
        # ADX's Journal and FailedIngestion logs go to the workspace, as its diagnostic settings send them.
        self.diagnostics = Diagnostics(self.cluster, self.la, self.workspace.workspace_id)
        self.delivery = Delivery(self.iotc, self.cluster, self.directory, self.diagnostics.failed_ingestion)
        # The test receiver of HEALER_NOTIFY_WEBHOOK (sandbox/control.py); the secret is the URL's last segment.
        self.webhook_token = uuid.uuid4().hex
        self.notifications: list[dict[str, Any]] = []
        self.servers: dict[str, ServiceServer] = {}
        self.ingestion: Any = None  # sandbox.adx.ingestion.IngestionService after attach_storage
        self.sp_secrets: dict[str, str] = {}

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
            grantee = f"aadapp={granted_id};{writer.tenant_id}"
            self.cluster.grant(database, role, grantee, f"IoT Central {subdomain} data export")
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
        fleet: Fleet,
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
        self.delivery.fleets[subdomain] = fleet
        return target

    def attach_storage(self, connection_string: str, account_key: str) -> None:
        """Queued ingestion through Azurite (blob + queue), with the data-management worker running."""
        from sandbox.adx.ingestion import IngestionService

        failed = self.diagnostics.failed_ingestion
        self.ingestion = IngestionService(self.cluster, connection_string, account_key, failed).setup()
        self.cluster.ingestion = self.ingestion
        self.ingestion.start()

    def target(self, subdomain: str) -> Target:
        for t in self.targets:
            if t.subdomain == subdomain:
                return t
        raise KeyError(f"no target for app '{subdomain}'")

    # ---------------------------------------------------------------- the data export

    def export_once(self) -> dict[str, str]:
        """Every enabled export pushes one batch to each ADX destination; returns status per export."""
        return self.delivery.export_once()

    def start_exporter(self, interval_s: float = 1.0) -> None:
        self.delivery.start(interval_s)

    def stop_exporter(self) -> None:
        self.delivery.stop()

    def set_transport(self, service: str, **params: Any) -> None:
        self.faults.set_transport(service, TransportFaults(**params))
