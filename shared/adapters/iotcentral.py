"""IoT Central adapter: the data-export API (exports, destinations, users), devices and the query
API, through the transport's azure-core pipeline; and ARM's view of an app (its managed identity,
which object id IoT Central writes as *now*; its application id; who last wrote it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.iotcentral_model import ExportStatus, IotcError, export_status
from shared.adapters.iotcentral_transport import IotcTransport
from shared.domain.principals import PrincipalRef

ARM_API_VERSION = "2021-06-01"
ARM_SCOPE = "https://management.azure.com/.default"
ACTIVITY_LOG_API_VERSION = "2015-04-01"
EXPORT_READ_ONLY = frozenset({"id", "status", "errors", "lastExportTime"})


class IoTCentralAdapter(IotcTransport):
    # ---------------------------------------------------------------- data export

    def exports(self, app: str) -> list[dict[str, Any]]:
        return list(self.pages(app, "/api/dataExport/exports"))

    def destinations(self, app: str) -> list[dict[str, Any]]:
        return list(self.pages(app, "/api/dataExport/destinations"))

    def export(self, app: str, export_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._app(app, "GET", f"/api/dataExport/exports/{export_id}")
        return result

    def destination(self, app: str, destination_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._app(app, "GET", f"/api/dataExport/destinations/{destination_id}")
        return result

    def status(self, app: str, export_id: str, destination_id: str) -> ExportStatus:
        return export_status(
            export_id, self.export(app, export_id), destination_id, self.destination(app, destination_id)
        )

    def set_enabled(self, app: str, export_id: str, enabled: bool) -> dict[str, Any]:
        return self._patch_export(app, export_id, {"enabled": enabled})

    def set_destinations(
        self, app: str, export_id: str, refs: list[dict[str, Any]], based_on: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Point an export at these destinations (each `{id, transform?}`), nothing else changed.

        Exports have no ETag, so this is a read-modify-write: with `based_on` (the destinations the
        change was made from) the export is read again right before the write and a concurrent edit
        is refused (ConcurrentEdit), never overwritten."""
        if based_on is not None:
            current = self.export(app, export_id).get("destinations") or []
            if current != based_on:
                raise IotcError(
                    409,
                    "ConcurrentEdit",
                    f"export {export_id} of {app}: its destinations changed since they were read "
                    f"({based_on} -> {current}); not overwritten",
                )
        return self._patch_export(app, export_id, {"destinations": refs})

    def _patch_export(self, app: str, export_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        # Read-only fields (status, errors, lastExportTime, id) are never sent back.
        changes = {k: v for k, v in changes.items() if k not in EXPORT_READ_ONLY}
        result: dict[str, Any] = self._app(
            app,
            "PATCH",
            f"/api/dataExport/exports/{export_id}",
            json_body=changes,
            content_type="application/merge-patch+json",
        )
        return result

    def put_destination(self, app: str, destination_id: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._app(
            app,
            "PUT",
            f"/api/dataExport/destinations/{destination_id}",
            json_body=body,
            content_type="application/json",
        )
        return result

    def has_destination(self, app: str, destination_id: str) -> bool:
        """Whether the app has this destination (a 404 says it has not)."""
        try:
            self.destination(app, destination_id)
        except IotcError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def delete_destination(self, app: str, destination_id: str) -> bool:
        """True if it was deleted now, False if it was already gone."""
        try:
            self._app(app, "DELETE", f"/api/dataExport/destinations/{destination_id}")
        except IotcError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def put_user(self, app: str, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._app(
            app, "PUT", f"/api/users/{user_id}", json_body=body, content_type="application/json"
        )
        return result

    # ---------------------------------------------------------------- devices and the query API

    def device_templates(self, app: str) -> list[dict[str, Any]]:
        return list(self.pages(app, "/api/deviceTemplates"))

    def devices(self, app: str) -> list[dict[str, Any]]:
        return list(self.pages(app, "/api/devices"))

    def query(self, app: str, text: str) -> list[dict[str, Any]]:
        """`POST /api/query`: at most one per QUERY_INTERVAL_S per app from this process."""
        self._query_limiter.acquire(app)
        self.queries += 1
        body = self._app(app, "POST", "/api/query", json_body={"query": text}, content_type="application/json")
        results = (body or {}).get("results")
        if not isinstance(results, list):
            raise IotcError(None, "InvalidResponse", "the query answer has no 'results' list")
        return [r for r in results if isinstance(r, dict)]

    # ---------------------------------------------------------------- ARM

    def identity_changed_at(self, resource_id: str, now: datetime, days: int = 7) -> tuple[str, str] | None:
        """When the app was last written through ARM (switching its identity off and on is such a
        write), and by whom: the newest successful `Microsoft.IoTCentral/IoTApps/write` in the
        activity log (Activity Logs - List, api-version 2015-04-01; `$filter` by time range and
        `resourceUri`, the only shapes the API accepts). None if there is none in `days`."""
        subscription = resource_id.strip("/").split("/")[1]
        start = (now - timedelta(days=days)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        end = (now + timedelta(minutes=5)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # clock skew
        body = self._call(
            self._arm_url,
            ARM_SCOPE,
            "GET",
            f"/subscriptions/{subscription}/providers/Microsoft.Insights/eventtypes/management/values",
            params={
                "api-version": ACTIVITY_LOG_API_VERSION,
                "$filter": (
                    f"eventTimestamp ge '{start}' and eventTimestamp le '{end}' and resourceUri eq '{resource_id}'"
                ),
                "$select": "eventTimestamp,operationName,status,caller,resourceId",
            },
        )
        writes = [
            e
            for e in (body or {}).get("value", [])
            if str((e.get("operationName") or {}).get("value", "")).lower() == "microsoft.iotcentral/iotapps/write"
            and str((e.get("status") or {}).get("value", "")).lower() == "succeeded"
        ]
        if not writes:
            return None
        newest = max(writes, key=lambda e: str(e.get("eventTimestamp", "")))
        return str(newest.get("eventTimestamp", "")), str(newest.get("caller", ""))

    def application_id(self, resource_id: str) -> str:
        """The app's GUID (`properties.applicationId`): the `applicationId` of exported messages."""
        body = self._call(self._arm_url, ARM_SCOPE, "GET", resource_id, params={"api-version": ARM_API_VERSION})
        return str(((body or {}).get("properties") or {}).get("applicationId", ""))

    def current_identity(self, resource_id: str) -> PrincipalRef | None:
        """The system-assigned identity IoT Central has now (None if the app has none)."""
        body = self._call(self._arm_url, ARM_SCOPE, "GET", resource_id, params={"api-version": ARM_API_VERSION})
        identity = (body or {}).get("identity") or {}
        if not identity.get("principalId"):
            return None
        return PrincipalRef(tenant_id=str(identity["tenantId"]), object_id=str(identity["principalId"]))
