"""What an operator sees of one export, read through the real SDK clients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sandbox import sdk
from sandbox.stage import Target
from sandbox.world import World


@dataclass(frozen=True)
class Symptoms:
    export_status: str
    destination_status: str
    error_code: str
    error_message: str
    failed_ingestion_rows: int
    principal_listed: bool

    @property
    def broken(self) -> bool:
        return self.export_status != "healthy" or self.destination_status != "healthy"


class Observer:
    """Reads IoT Central, Log Analytics and ADX as the healer would: real clients over loopback."""

    def __init__(self, world: World) -> None:
        sdk.use_sandbox_identity(world)
        endpoints = world.endpoints()
        self.world = world
        self.cred = sdk.credential()
        self.kusto = sdk.kusto_client(endpoints["kusto_cluster_url"], self.cred)
        self.logs = sdk.logs_client(endpoints["loganalytics_endpoint"], self.cred)
        self.workspace = endpoints["loganalytics_workspace_id"]
        self.iotc_base = endpoints["iotcentral_base_url"]
        self._iotc: dict[str, Any] = {}

    def iotc(self, subdomain: str) -> Any:
        if subdomain not in self._iotc:
            self._iotc[subdomain] = sdk.iotc_client(self.iotc_base.format(subdomain=subdomain), self.cred)
        return self._iotc[subdomain]

    def failed_ingestion(self, target: Target) -> int:
        from azure.monitor.query import LogsQueryStatus

        query = f"FailedIngestion | where Database == '{target.database}' and Table == '{target.table}' | count"
        result = self.logs.query_workspace(self.workspace, query, timespan=timedelta(hours=1), enforce_https=False)
        if result.status != LogsQueryStatus.SUCCESS:
            raise RuntimeError(f"Log Analytics answered {result.status}")
        return int(result.tables[0].rows[0][0])

    def principal_listed(self, target: Target) -> bool:
        from azure.kusto.data.exceptions import KustoServiceError

        identity = self.world.iotc.identity_of(target.subdomain)
        try:
            rows = self.kusto.execute_mgmt(target.database, f".show database {target.database} principals")
        except KustoServiceError as exc:  # a missing database answers 404: nobody is listed there
            if getattr(exc.http_response, "status_code", None) == 404:
                return False
            raise
        ids = {identity.object_id.lower(), identity.client_id.lower()}
        return any(str(r["PrincipalObjectId"]).lower() in ids for r in rows.primary_results[0])

    def read(self, target: Target) -> Symptoms:
        client = self.iotc(target.subdomain)
        export = sdk.iotc_get(client, f"/api/dataExport/exports/{target.export_id}")
        dest = sdk.iotc_get(client, f"/api/dataExport/destinations/{target.destination_id}")
        errors = dest.get("errors") or export.get("errors") or [{}]
        return Symptoms(
            export_status=str(export.get("status")),
            destination_status=str(dest.get("status")),
            error_code=str(errors[0].get("code", "")),
            error_message=str(errors[0].get("message", "")),
            failed_ingestion_rows=self.failed_ingestion(target),
            principal_listed=self.principal_listed(target),
        )
