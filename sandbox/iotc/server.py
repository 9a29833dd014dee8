"""IoT Central stand-in: the data-export API (2022-10-31-preview), app users, and the ARM view of
an app's system-assigned identity. Each app is served under `/{subdomain}/api/...`.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.entra import ARM_AUDIENCE, IOTC_AUDIENCE, AuthError, Directory, Identity
from sandbox.httpserver import json_response
from sandbox.iotc import data as iotc_data

API_VERSIONS = ("2022-10-31-preview", "2022-06-30-preview")
ARM_API_VERSION = "2021-06-01"
# Activity Logs - List (Azure Monitor REST, api-version 2015-04-01): GET /subscriptions/{id}/providers/
# Microsoft.Insights/eventtypes/management/values?$filter=…; $filter "is very restricted": only the
# documented patterns (a time range, optionally with one resource group, resource URI, provider or
# correlation id). The stand-in serves the resource-URI pattern and refuses anything else.
ACTIVITY_LOG_API_VERSION = "2015-04-01"
_ACTIVITY_FILTER = re.compile(
    r"^eventTimestamp ge '([^']+)' and eventTimestamp le '([^']+)' and resourceUri eq '([^']+)'$", re.IGNORECASE
)
ROLE_ADMINISTRATOR = "ca310b8d-2f4a-44e0-a36e-957c202cd8d4"
ROLE_BUILDER = "344138e9-8de4-4497-8c54-5237e96d6aaf"
ROLE_OPERATOR = "ae2c9854-393b-4f97-8c42-479d70ce626e"
ROLE_NAMES = {ROLE_ADMINISTRATOR: "Administrator", ROLE_BUILDER: "Builder", ROLE_OPERATOR: "Operator"}
DATA_EXPORT_ROLES = {ROLE_ADMINISTRATOR, ROLE_BUILDER}
MAX_DESTINATIONS = 10  # per app (IoT Central's documented limit)
_EXPORT_WRITABLE = {"displayName", "enabled", "source", "filter", "enrichments", "destinations"}
_EXPORT_READONLY = {"id", "status", "errors", "lastExportTime"}


# What a gateway in front of an API typically answers when it, not the API, handles the request.
GATEWAY_PAGE = (
    "<!DOCTYPE html><html><head><title>Service Unavailable</title></head>"
    "<body><h1>The service is temporarily unavailable</h1><p>Please try again later.</p></body></html>"
)
_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data(as_text=True))
    except ValueError as exc:
        raise ApiError(400, "InvalidRequestBody", "The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequestBody", "The request body must be a JSON object.")
    return body


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class App:
    subdomain: str
    identity_name: str
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "rg-iotc"
    application_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    telemetry: iotc_data.TelemetryStore = field(default_factory=iotc_data.TelemetryStore)
    # ARM reports this object id instead of the directory's (an identity Entra does not know yet).
    arm_principal_override: str | None = None
    # Object ids without Reader (or any role that reads the app) on its ARM resource.
    arm_denied: set[str] = field(default_factory=set)

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.IoTCentral/iotApps/{self.subdomain}"
        )


class IoTCentral:
    """All apps of the sandbox. Mutations go through one lock (the exporter runs in a thread)."""

    def __init__(self, directory: Directory, page_size: int = 4) -> None:
        self.directory = directory
        self.page_size = page_size
        self.lock = threading.RLock()
        self.apps: dict[str, App] = {}
        self.base_url = ""  # set when the server starts
        self.requests = 0
        self.query_throttle = iotc_data.QueryThrottle()
        self.queries: list[str] = []  # every query text answered or refused, in order
        self.activity_log: list[dict[str, Any]] = []  # ARM's record of writes to the apps, newest last
        # Whether DELETE of a destination an export still uses is refused (unverified; the
        # stricter answer by default).
        self.refuse_delete_in_use = True
        # What the query API's `$ts` is (undocumented): the enqueued time, or the device's
        # iothub-creation-time-utc when a message carries one ("creation").
        self.ts_reading = "enqueued"
        # How a component's capability asked for without an alias is named in an answer
        # (undocumented): `component.name` ("path") or `name` ("name").
        self.component_keys = "path"
        # Apps whose API something in the way (a gateway, a proxy's sign-in page) answers with HTTP
        # 200 and an HTML page instead of IoT Central's JSON: the "gateway-html" fault.
        self.gateway_html: set[str] = set()

    # ---------------------------------------------------------------- setup

    def add_app(self, subdomain: str, identity_name: str) -> App:
        with self.lock:
            app = App(subdomain, identity_name)
            self.apps[subdomain] = app
            return app

    def add_user(self, subdomain: str, identity: Identity, role: str = ROLE_ADMINISTRATOR) -> None:
        with self.lock:
            self.apps[subdomain].users[str(uuid.uuid4())] = {
                "type": "servicePrincipal",
                "tenantId": identity.tenant_id,
                "objectId": identity.object_id,
                "roles": [{"role": role}],
            }

    def put_destination(self, subdomain: str, dest_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            # "_created" (never served) lets the exporter model destinations that keep the
            # authorization they had when created (sandbox/fidelity.py: destination-stale).
            dest = {"id": dest_id, **copy.deepcopy(body), "status": "waiting", "_created": datetime.now(UTC)}
            self.apps[subdomain].destinations[dest_id] = dest
            return self._public(dest)

    def put_export(self, subdomain: str, export_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            export = {"id": export_id, **copy.deepcopy(body)}
            export["status"] = "starting" if export.get("enabled") else "notStarted"
            self.apps[subdomain].exports[export_id] = export
            return export

    def put_template(self, subdomain: str, template: dict[str, Any]) -> None:
        with self.lock:
            self.apps[subdomain].templates[template["@id"]] = copy.deepcopy(template)

    def put_device(self, subdomain: str, device_id: str, template_id: str, display_name: str = "") -> dict[str, Any]:
        with self.lock:
            device = {
                "id": device_id,
                "etag": str(uuid.uuid4()),
                "displayName": display_name or device_id,
                "template": template_id,
                "simulated": False,
                "provisioned": True,
                "enabled": True,
            }
            self.apps[subdomain].devices[device_id] = device
            return device

    def identity_of(self, subdomain: str) -> Identity:
        return self.directory.get(self.apps[subdomain].identity_name)

    # ---------------------------------------------------------------- HTTP

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.requests += 1
        try:
            parts = [p for p in request.path.split("/") if p]
            if parts[:1] == ["subscriptions"]:
                return self._arm(request, parts)
            if len(parts) < 2 or parts[1] != "api":
                raise ApiError(404, "NotFound", f"No route for '{request.path}'.")
            app = self.apps.get(parts[0])
            if app is None:
                raise ApiError(404, "NotFound", f"Application '{parts[0]}' was not found.")
            if app.subdomain in self.gateway_html:
                return Response(GATEWAY_PAGE, 200, content_type="text/html; charset=utf-8")
            return self._api(request, app, parts[2:])
        except AuthError as exc:
            return self._error(exc.status, exc.code, exc.message)
        except ApiError as exc:
            return self._error(exc.status, exc.code, exc.message)

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        body = {"error": {"code": code, "message": message, "requestId": str(uuid.uuid4()), "time": now_iso()}}
        return json_response(body, status)

    def _caller_roles(self, request: Request, app: App) -> set[str]:
        identity = self.directory.authenticate(request, (IOTC_AUDIENCE,))
        for user in app.users.values():
            if user["objectId"].lower() == identity.object_id.lower() and user["tenantId"] == identity.tenant_id:
                return {r["role"] for r in user["roles"]}
        raise ApiError(403, "Forbidden", "The caller is not a user of this application.")

    def _api(self, request: Request, app: App, path: list[str]) -> Response:
        version = request.args.get("api-version")
        if version is None:
            raise ApiError(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        if version not in API_VERSIONS:
            raise ApiError(400, "InvalidApiVersionParameter", f"The api-version '{version}' is not supported.")
        roles = self._caller_roles(request, app)
        with self.lock:
            if path[:1] == ["users"]:
                if ROLE_ADMINISTRATOR not in roles:
                    raise ApiError(403, "Forbidden", "Only an Administrator can manage users.")
                if len(path) == 2 and request.method == "PUT":
                    return self._put_user(request, app, path[1])
                if len(path) == 1 and request.method == "GET":
                    return self._page(request, app, [{"id": k, **v} for k, v in app.users.items()])
                if len(path) == 2 and request.method == "GET":
                    if path[1] not in app.users:
                        raise ApiError(404, "NotFound", f"User '{path[1]}' was not found.")
                    return json_response({"id": path[1], **app.users[path[1]]})
            if path[:1] in (["deviceTemplates"], ["devices"], ["query"]):
                return self._devices_api(request, app, path)
            if path[:1] != ["dataExport"]:
                raise ApiError(404, "NotFound", f"No route for '/api/{'/'.join(path)}'.")
            if not roles & DATA_EXPORT_ROLES:
                raise ApiError(403, "Forbidden", "The caller's role does not allow managing data export.")
            rest = path[1:]
            if rest == ["exports"] and request.method == "GET":
                return self._page(request, app, list(app.exports.values()))
            if rest == ["destinations"] and request.method == "GET":
                return self._page(request, app, [self._public(d) for d in app.destinations.values()])
            if len(rest) == 2 and rest[0] == "destinations" and request.method == "PUT":
                return self._put_destination(request, app, rest[1])
            if len(rest) == 2 and rest[0] == "destinations" and request.method == "DELETE":
                return self._delete_destination(app, rest[1])
            if len(rest) == 2 and rest[0] == "exports":
                export = app.exports.get(rest[1])
                if export is None:
                    raise ApiError(404, "NotFound", f"Data export '{rest[1]}' was not found.")
                if request.method == "GET":
                    return json_response(export)
                if request.method == "PATCH":
                    return self._patch_export(request, export, app)
            if len(rest) == 3 and rest[0] == "exports" and rest[2] == "destinations" and request.method == "GET":
                export = app.exports.get(rest[1])
                if export is None:
                    raise ApiError(404, "NotFound", f"Data export '{rest[1]}' was not found.")
                dests = [
                    self._public(app.destinations[d["id"]])
                    for d in export["destinations"]
                    if d["id"] in app.destinations
                ]
                return json_response({"value": dests})
            if len(rest) == 2 and rest[0] == "destinations" and request.method == "GET":
                dest = app.destinations.get(rest[1])
                if dest is None:
                    raise ApiError(404, "NotFound", f"Destination '{rest[1]}' was not found.")
                return json_response(self._public(dest))
        raise ApiError(405 if path else 404, "MethodNotAllowed", f"{request.method} is not supported on this resource.")

    def _devices_api(self, request: Request, app: App, path: list[str]) -> Response:
        """Any app user may read templates and devices and run queries (Operators included)."""
        if path == ["deviceTemplates"] and request.method == "GET":
            return self._page(request, app, list(app.templates.values()))
        if len(path) == 2 and path[0] == "deviceTemplates" and request.method == "GET":
            template = app.templates.get(path[1])
            if template is None:
                raise ApiError(404, "NotFound", f"Device template '{path[1]}' was not found.")
            return json_response(template)
        if path == ["devices"] and request.method == "GET":
            return self._page(request, app, list(app.devices.values()))
        if len(path) == 2 and path[0] == "devices" and request.method == "GET":
            device = app.devices.get(path[1])
            if device is None:
                raise ApiError(404, "NotFound", f"Device '{path[1]}' was not found.")
            return json_response(device)
        if path == ["query"] and request.method == "POST":
            return self._query(request, app)
        raise ApiError(405 if path else 404, "MethodNotAllowed", f"{request.method} is not supported on this resource.")

    def _query(self, request: Request, app: App) -> Response:
        try:
            body = json.loads(request.get_data(as_text=True))
        except ValueError as exc:
            raise ApiError(400, "InvalidRequestBody", "The request body is not valid JSON.") from exc
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise ApiError(400, "InvalidRequestBody", 'The request body must be {"query": "SELECT …"}.')
        text: str = body["query"]
        self.queries.append(text)
        try:
            self.query_throttle.admit(app.subdomain)
            now = datetime.now(UTC)
            query = iotc_data.parse_query(
                text,
                lambda t: iotc_data.template_capabilities(app.templates[t]) if t in app.templates else None,
                now,
            )
            # The store is ordered by enqueued time; a creation time is earlier, never by more than
            # the margin the devices here keep to.
            margin = iotc_data.CREATION_MARGIN if self.ts_reading == "creation" else timedelta(0)
            messages = app.telemetry.between(query.template, query.start, query.end + margin)
            return json_response(
                {"results": iotc_data.run_query(query, messages, self.ts_reading, self.component_keys)}
            )
        except iotc_data.QueryError as exc:
            response = self._error(exc.status, exc.code, exc.message)
            if exc.retry_after_s is not None:
                response.headers["Retry-After"] = str(max(1, round(exc.retry_after_s + 0.49)))
            return response

    @staticmethod
    def _public(dest: dict[str, Any]) -> dict[str, Any]:
        shown = copy.deepcopy({k: v for k, v in dest.items() if not k.startswith("_")})
        auth = shown.get("authorization") or {}
        if "clientSecret" in auth:
            auth["clientSecret"] = "*****"
        return shown

    def _page(self, request: Request, app: App, items: list[dict[str, Any]]) -> Response:
        try:
            start = int(request.args.get("$skiptoken", "0"))
        except ValueError as exc:
            raise ApiError(400, "InvalidContinuationToken", "The continuation token is not valid.") from exc
        if start < 0 or start > len(items):
            raise ApiError(400, "InvalidContinuationToken", "The continuation token is not valid.")
        page = items[start : start + self.page_size]
        body: dict[str, Any] = {"value": page}
        if start + self.page_size < len(items):
            query = urlencode({"api-version": request.args["api-version"], "$skiptoken": start + self.page_size})
            body["nextLink"] = f"{self.base_url}{request.path}?{query}"
        return json_response(body)

    def _put_destination(self, request: Request, app: App, dest_id: str) -> Response:
        body = _json_object(request)
        if not _ID.fullmatch(dest_id):
            raise ApiError(400, "InvalidRequestBody", f"'{dest_id}' is not a valid destination id.")
        kind = body.get("type")
        if kind != "dataexplorer@v1":
            raise ApiError(400, "InvalidRequestBody", "Only destinations of type 'dataexplorer@v1' are supported here.")
        for key in ("displayName", "clusterUrl", "database", "table", "authorization"):
            if not body.get(key):
                raise ApiError(400, "InvalidRequestBody", f"'{key}' is required.")
        auth = body["authorization"]
        if not isinstance(auth, dict) or auth.get("type") not in ("systemAssignedManagedIdentity", "servicePrincipal"):
            raise ApiError(
                400,
                "InvalidRequestBody",
                "'authorization.type' must be 'systemAssignedManagedIdentity' or 'servicePrincipal'.",
            )
        if auth["type"] == "servicePrincipal":
            secret = auth.get("clientSecret")
            if not auth.get("clientId") or not auth.get("tenantId") or not secret or set(str(secret)) == {"*"}:
                raise ApiError(400, "InvalidRequestBody", "A service principal needs clientId, tenantId, clientSecret.")
        if dest_id not in app.destinations and len(app.destinations) >= MAX_DESTINATIONS:
            # The limit is documented; the shape of the refusal is not (sandbox/fidelity.py).
            raise ApiError(
                400, "DestinationLimitExceeded", f"An application can have at most {MAX_DESTINATIONS} destinations."
            )
        writable = {k: v for k, v in body.items() if k not in ("id", "status", "errors")}
        return json_response(self.put_destination(app.subdomain, dest_id, writable))

    def _delete_destination(self, app: App, dest_id: str) -> Response:
        if dest_id not in app.destinations:
            raise ApiError(404, "NotFound", f"Destination '{dest_id}' was not found.")
        users = [e["id"] for e in app.exports.values() if any(d["id"] == dest_id for d in e.get("destinations", []))]
        if users and self.refuse_delete_in_use:
            # Unverified whether IoT Central refuses this; the stricter answer is modelled.
            raise ApiError(409, "Conflict", f"Destination '{dest_id}' is used by export(s) {', '.join(users)}.")
        del app.destinations[dest_id]
        return Response(status=204)

    def _patch_export(self, request: Request, export: dict[str, Any], app: App) -> Response:
        content_type = (request.mimetype or "").lower()
        if content_type not in ("application/merge-patch+json", "application/json"):
            raise ApiError(415, "UnsupportedMediaType", "Use Content-Type application/merge-patch+json.")
        try:
            patch = json.loads(request.get_data(as_text=True))
        except ValueError as exc:
            raise ApiError(400, "InvalidRequestBody", "The request body is not valid JSON.") from exc
        if not isinstance(patch, dict):
            raise ApiError(400, "InvalidRequestBody", "The request body must be a JSON object.")
        unknown = set(patch) - _EXPORT_WRITABLE - _EXPORT_READONLY
        if unknown:
            raise ApiError(400, "InvalidRequestBody", f"Unknown field(s): {', '.join(sorted(unknown))}.")
        if "enabled" in patch and not isinstance(patch["enabled"], bool):
            raise ApiError(400, "InvalidRequestBody", "'enabled' must be a boolean.")
        if "destinations" in patch:
            refs = patch["destinations"]
            if not isinstance(refs, list) or not all(
                isinstance(r, dict) and isinstance(r.get("id"), str) for r in refs
            ):
                raise ApiError(400, "InvalidRequestBody", "'destinations' must be a list of {id, transform?}.")
            missing = [r["id"] for r in refs if r["id"] not in app.destinations]
            if missing:
                raise ApiError(400, "InvalidRequestBody", f"Destination(s) not found: {', '.join(missing)}.")
        was_enabled = bool(export.get("enabled"))
        for key, value in patch.items():
            if key in _EXPORT_READONLY:
                continue
            if value is None:
                export.pop(key, None)
            else:
                export[key] = value
        if was_enabled and not export.get("enabled"):
            export["status"] = "notStarted"
            export.pop("errors", None)
        elif not was_enabled and export.get("enabled"):
            export["status"] = "starting"
            export.pop("errors", None)
        return json_response(export)

    def _put_user(self, request: Request, app: App, user_id: str) -> Response:
        try:
            body = json.loads(request.get_data(as_text=True))
        except ValueError as exc:
            raise ApiError(400, "InvalidRequestBody", "The request body is not valid JSON.") from exc
        if not isinstance(body, dict) or body.get("type") != "servicePrincipal":
            raise ApiError(400, "InvalidRequestBody", "Only users of type 'servicePrincipal' are supported here.")
        for key in ("tenantId", "objectId", "roles"):
            if key not in body:
                raise ApiError(400, "InvalidRequestBody", f"'{key}' is required.")
        roles = body["roles"]
        if not isinstance(roles, list) or not roles or not all(isinstance(r, dict) and "role" in r for r in roles):
            raise ApiError(400, "InvalidRequestBody", "'roles' must be a non-empty list of {role}.")
        user = {k: body[k] for k in ("type", "tenantId", "objectId", "roles")}
        app.users[user_id] = user
        return json_response({"id": user_id, **user})

    def record_write(self, subdomain: str, caller: str, at: datetime | None = None) -> dict[str, Any]:
        """An ARM write to the app (its identity switched off and on) as the activity log shows it."""
        app = self.apps[subdomain]
        when = (at or datetime.now(UTC)).astimezone(UTC)
        event = {
            "caller": caller,
            "channels": "Operation",
            "correlationId": str(uuid.uuid4()),
            "eventDataId": str(uuid.uuid4()),
            "eventName": {"value": "EndRequest", "localizedValue": "End request"},
            "category": {"value": "Administrative", "localizedValue": "Administrative"},
            "eventTimestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "id": f"{app.arm_id}/events/{uuid.uuid4()}/ticks/{int(when.timestamp() * 10**7)}",
            "level": "Informational",
            "operationId": str(uuid.uuid4()),
            "operationName": {
                "value": "Microsoft.IoTCentral/IoTApps/write",
                "localizedValue": "Create or update IoT Central Application",
            },
            "resourceGroupName": app.resource_group,
            "resourceProviderName": {"value": "Microsoft.IoTCentral", "localizedValue": "Microsoft.IoTCentral"},
            "resourceType": {"value": "Microsoft.IoTCentral/IoTApps", "localizedValue": "Microsoft.IoTCentral/IoTApps"},
            "resourceId": app.arm_id,
            "status": {"value": "Succeeded", "localizedValue": "Succeeded"},
            "subStatus": {"value": "OK", "localizedValue": "OK (HTTP Status Code: 200)"},
            "submissionTimestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "subscriptionId": app.subscription_id,
        }
        with self.lock:
            self.activity_log.append(event)
        return event

    def _activity_log(self, request: Request, subscription: str) -> Response:
        if request.args.get("api-version") != ACTIVITY_LOG_API_VERSION:
            raise ApiError(400, "InvalidApiVersionParameter", f"Use api-version={ACTIVITY_LOG_API_VERSION}.")
        match = _ACTIVITY_FILTER.match((request.args.get("$filter") or "").strip())
        if match is None:
            raise ApiError(
                400,
                "BadRequest",
                "The $filter is not supported here: use eventTimestamp ge '…' and eventTimestamp le '…' "
                "and resourceUri eq '…'.",
            )
        try:
            start = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
            end = datetime.fromisoformat(match.group(2).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"eventTimestamp is not a date: {exc}") from exc
        uri = match.group(3).lower()
        with self.lock:
            events = [
                e
                for e in self.activity_log
                if e["subscriptionId"] == subscription
                and e["resourceId"].lower() == uri
                and start <= datetime.fromisoformat(e["eventTimestamp"].replace("Z", "+00:00")) <= end
            ]
        return json_response({"value": list(reversed(events))})

    def _arm(self, request: Request, parts: list[str]) -> Response:
        caller = self.directory.authenticate(request, (ARM_AUDIENCE,))
        lowered = [p.lower() for p in parts]
        if lowered[2:] == ["providers", "microsoft.insights", "eventtypes", "management", "values"]:
            return self._activity_log(request, parts[1])
        if request.args.get("api-version") != ARM_API_VERSION:
            raise ApiError(400, "InvalidApiVersionParameter", f"Use api-version={ARM_API_VERSION}.")
        with self.lock:
            for app in self.apps.values():
                if request.path.lower() == app.arm_id.lower() and request.method == "GET":
                    if caller.object_id in app.arm_denied:
                        raise ApiError(
                            403,
                            "AuthorizationFailed",
                            f"The client '{caller.object_id}' with object id '{caller.object_id}' does not have "
                            f"authorization to perform action 'Microsoft.IoTCentral/IoTApps/read' over scope "
                            f"'{app.arm_id}' or the scope is invalid. If access was recently granted, please "
                            "refresh your credentials.",
                        )
                    identity = self.identity_of(app.subdomain)
                    principal_id = app.arm_principal_override or identity.object_id
                    return json_response(
                        {
                            "id": app.arm_id,
                            "name": app.subdomain,
                            "type": "Microsoft.IoTCentral/IoTApps",
                            "location": "westus2",
                            "sku": {"name": "ST2"},
                            "properties": {
                                "applicationId": app.application_id,
                                "displayName": app.subdomain,
                                "subdomain": app.subdomain,
                                "state": "created",
                            },
                            "identity": {
                                "type": "SystemAssigned",
                                "principalId": principal_id,
                                "tenantId": identity.tenant_id,
                            },
                        }
                    )
        raise ApiError(404, "ResourceNotFound", f"The resource '{request.path}' was not found.")


def transport_error(status: int, retry_after_s: float) -> Response:
    body = {
        "error": {
            "code": "TooManyRequests" if status == 429 else "ServiceUnavailable",
            "message": "Rate limit exceeded." if status == 429 else "The service is temporarily unavailable.",
            "requestId": str(uuid.uuid4()),
            "time": now_iso(),
        }
    }
    headers = {"Retry-After": str(max(1, round(retry_after_s)))} if status == 429 else {}
    return json_response(body, status, headers)
