"""IoT Central adapter: the data-export API through an azure-core pipeline, and ARM's view of an
app's managed identity (which object id IoT Central writes as *now*)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.principals import PrincipalRef

API_VERSION = "2022-10-31-preview"
ARM_API_VERSION = "2021-06-01"
IOTC_SCOPE = "https://apps.azureiotcentral.com/.default"
ARM_SCOPE = "https://management.azure.com/.default"
ACTIVITY_LOG_API_VERSION = "2015-04-01"
REQUESTS_PER_SECOND = 20.0  # IoT Central's documented data-plane limit per app
# The query API allows about one request per second per app; a little slower, so the service's
# own clock never sees two inside one second.
QUERY_INTERVAL_S = 1.05


EXPORT_READ_ONLY = frozenset({"id", "status", "errors", "lastExportTime"})


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


class RateLimiter:
    """Requests per key (an app) spaced at least 1/rate seconds apart, across all threads."""

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def acquire(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next.get(key, now))
            self._next[key] = start + 1.0 / self.rate
        if start > now:
            self._sleep(start - now)


def _session() -> Any:
    import requests

    session = requests.Session()
    # A pool per app host (many apps), each as deep as the cycle's concurrency (requests: 10 and 10).
    adapter = requests.adapters.HTTPAdapter(pool_connections=256, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _loopback(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "http://localhost"))


class IoTCentralAdapter:
    def __init__(
        self,
        base_url_template: str,
        credential: Any,
        arm_url: str = "https://management.azure.com",
        rate_per_app: float = REQUESTS_PER_SECOND,
        timeout_s: float = 30.0,
        retry_budget_s: float = 60.0,
    ) -> None:
        self._timeout = timeout_s
        self._budget = retry_budget_s
        self._template = base_url_template
        self._credential = credential
        self._arm_url = arm_url.rstrip("/")
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._limiter = RateLimiter(rate_per_app)
        self._query_limiter = RateLimiter(1.0 / QUERY_INTERVAL_S)
        self.requests = 0
        self.queries = 0

    def _client(self, scope: str) -> Any:
        """One pipeline per token scope for every app: one token, one connection pool (a client
        per app would hold a thousand sessions for a thousand apps)."""
        with self._lock:
            client = self._clients.get(scope)
            if client is None:
                from azure.core import PipelineClient
                from azure.core.pipeline.policies import BearerTokenCredentialPolicy, HeadersPolicy, UserAgentPolicy
                from azure.core.pipeline.transport import RequestsTransport

                from shared.timeouts import bounded_retry_policy

                client = PipelineClient(
                    base_url="",
                    policies=[
                        HeadersPolicy(),
                        UserAgentPolicy("iotc-adx-healer"),
                        # Retries 408/429/5xx, honouring Retry-After, within one budget per call.
                        bounded_retry_policy(self._budget),
                        BearerTokenCredentialPolicy(self._credential, scope),
                    ],
                    # azure-core's defaults are 300 s to connect and to read.
                    transport=RequestsTransport(
                        session=_session(), connection_timeout=self._timeout, read_timeout=self._timeout
                    ),
                )
                self._clients[scope] = client
            return client

    def _call(
        self,
        base_url: str,
        scope: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        content_type: str | None = None,
        limit_key: str | None = None,
    ) -> Any:
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.core.rest import HttpRequest

        client = self._client(scope)
        url = path if path.startswith("http") else base_url.rstrip("/") + path
        headers = {"Content-Type": content_type} if content_type else None
        request = HttpRequest(method, url, params=params, json=json_body, headers=headers)
        if limit_key:
            self._limiter.acquire(limit_key)
        self.requests += 1
        try:
            response = client.send_request(request, enforce_https=not _loopback(base_url))
            response.raise_for_status()
        except HttpResponseError as exc:
            code, message = "HttpError", str(exc.message or exc)
            try:
                body = json.loads(exc.response.text()) if exc.response is not None else {}
                code = body["error"]["code"]
                message = body["error"]["message"]
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
            raise IotcError(exc.status_code, code, message) from exc
        except AzureError as exc:
            raise IotcError(None, type(exc).__name__, str(exc)[:300]) from exc
        text = response.text()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:  # a gateway's page, a proxy's error: not IoT Central's answer
            kind = response.headers.get("Content-Type") or "no content type"
            where = path.split("?", 1)[0]
            raise IotcError(
                response.status_code,
                "UnexpectedBody",
                f"{method} {where} answered {response.status_code} ({kind}, {len(text)} characters) "
                "with a body that is not JSON",
            ) from exc

    def _app(self, app: str, method: str, path: str, **kwargs: Any) -> Any:
        base = self._template.format(subdomain=app)
        params = {"api-version": API_VERSION} if not path.startswith("http") else None
        return self._call(base, IOTC_SCOPE, method, path, params=params, limit_key=app, **kwargs)

    # ---------------------------------------------------------------- data export

    def pages(self, app: str, path: str) -> Iterator[dict[str, Any]]:
        page = self._app(app, "GET", path)
        while True:
            yield from page.get("value", [])
            next_link = page.get("nextLink")
            if not next_link:
                return
            page = self._app(app, "GET", next_link)

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
        export = self.export(app, export_id)
        dest = self.destination(app, destination_id)
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
