"""Azure Monitor Logs: the Log Analytics stand-in, `POST /v1/workspaces/{id}/query` over the ADX
diagnostic tables.

Rows of `FailedIngestion` and `ADXJournal` are written by `sandbox/adx/diagnostics.py` (the data
export's refused batches and principal changes); queries run through the same strict KQL subset as the ADX stand-in and
anything outside it gets a 400 naming what is not supported.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import isodate  # type: ignore[import-untyped]
from werkzeug.wrappers import Request, Response

from sandbox.adx import kql
from sandbox.adx.server import kind_of
from sandbox.entra import LOGANALYTICS_AUDIENCE, AuthError, Directory
from sandbox.httpserver import json_response

SCHEMAS: dict[str, list[tuple[str, str]]] = {
    "FailedIngestion": [
        ("TenantId", "string"),
        ("TimeGenerated", "datetime"),
        ("OperationId", "string"),
        ("Database", "string"),
        ("Table", "string"),
        ("FailedOn", "datetime"),
        ("IngestionSourceId", "string"),
        ("IngestionSourcePath", "string"),
        ("RootActivityId", "string"),
        ("ErrorCode", "string"),
        ("FailureStatus", "string"),
        ("Details", "string"),
        ("OriginatesFromUpdatePolicy", "bool"),
        ("ShouldRetry", "bool"),
        ("SourceSystem", "string"),
        ("Type", "string"),
        ("_ResourceId", "string"),
    ],
    # Azure Monitor Logs table reference, "ADXJournal" (MicrosoftDocs azure-reference-other,
    # azure-monitor-ref/tables/adxjournal.md): the database column is DatabaseName here, unlike
    # `.show journal`'s Database.
    "ADXJournal": [
        ("TenantId", "string"),
        ("TimeGenerated", "datetime"),
        ("OperationTimestamp", "datetime"),
        ("DatabaseName", "string"),
        ("EntityName", "string"),
        ("UpdatedEntityName", "string"),
        ("EntityVersion", "string"),
        ("OriginalEntityVersion", "string"),
        ("EntityContainerName", "string"),
        ("Event", "string"),
        ("OriginalEntityState", "string"),
        ("UpdatedEntityState", "string"),
        ("ChangeCommand", "string"),
        ("Principal", "string"),
        ("User", "string"),
        ("CorrelationId", "string"),
        ("RootActivityId", "string"),
        ("SourceSystem", "string"),
        ("Type", "string"),
        ("_ResourceId", "string"),
        ("_SubscriptionId", "string"),
    ],
}


@dataclass
class Workspace:
    workspace_id: str
    readers: set[str] = field(default_factory=set)  # object ids with Log Analytics Reader
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in SCHEMAS})
    partial_error: bool = False


class LogAnalytics:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.lock = threading.RLock()
        self.workspaces: dict[str, Workspace] = {}
        self.queries: list[str] = []

    def add_workspace(self, workspace_id: str | None = None) -> Workspace:
        with self.lock:
            ws = Workspace(workspace_id or str(uuid.uuid4()))
            self.workspaces[ws.workspace_id] = ws
            return ws

    def append(self, workspace_id: str, table: str, row: dict[str, Any]) -> None:
        with self.lock:
            full: dict[str, Any] = {name: None for name, _ in SCHEMAS[table]}
            full.update(row)
            full["Type"] = table
            if full["TimeGenerated"] is None:
                full["TimeGenerated"] = datetime.now(UTC)
            full["SourceSystem"] = "Azure"
            self.workspaces[workspace_id].tables[table].append(full)

    # ---------------------------------------------------------------- HTTP

    def __call__(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if len(parts) != 4 or parts[0] != "v1" or parts[1] != "workspaces" or parts[3] != "query":
            return _error(404, "PathNotFoundError", f"The requested path '{request.path}' does not exist.")
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", "Use POST for queries.")
        try:
            identity = self.directory.authenticate(request, (LOGANALYTICS_AUDIENCE,))
        except AuthError as exc:
            return _error(401, "AuthorizationRequiredError", exc.message)
        with self.lock:
            ws = self.workspaces.get(parts[2])
            if ws is None:
                return _error(404, "WorkspaceNotFoundError", f"Workspace '{parts[2]}' was not found.")
            if identity.object_id not in ws.readers:
                return _error(
                    403,
                    "InsufficientAccessError",
                    "The provided credentials have insufficient access to perform the requested operation",
                )
            try:
                body = json.loads(request.get_data(as_text=True))
            except ValueError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                return _error(400, "BadArgumentError", "The request body must be JSON with a 'query' string.")
            self.queries.append(body["query"])
            try:
                window = _timespan(body.get("timespan"))
            except ValueError as exc:
                return _error(400, "BadArgumentError", f"'timespan' is not valid: {exc}")

            def lookup(name: str) -> tuple[list[str], list[dict[str, Any]]]:
                if name not in ws.tables:
                    raise kql.UnknownTableError(name)
                rows = ws.tables[name]
                if window is not None:
                    rows = [r for r in rows if window[0] <= r["TimeGenerated"] < window[1]]
                return [c for c, _ in SCHEMAS[name]], rows

            try:
                result = kql.run_query(body["query"], lookup)
            except kql.KqlError as exc:
                inner = "SemanticError" if isinstance(exc, kql.KqlSemanticError) else "SyntaxError"
                return _error(
                    400,
                    "BadArgumentError",
                    "The request had some invalid properties",
                    {"code": inner, "message": exc.message},
                )
            types: dict[str, str] = {}
            for schema in SCHEMAS.values():
                types.update(schema)
            columns = [
                {"name": c, "type": types.get(c) or kind_of([r.get(c) for r in result.rows])} for c in result.columns
            ]
            rows = [[_wire(r.get(c)) for c in result.columns] for r in result.rows]
            answer: dict[str, Any] = {"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]}
            if ws.partial_error:
                answer["tables"][0]["rows"] = rows[: len(rows) // 2]
                answer["error"] = {
                    "code": "PartialError",
                    "message": "There were some errors when processing your request.",
                    "details": [
                        {
                            "code": "EngineError",
                            "message": "Query result set has exceeded the internal limit.",
                            "innererror": {"code": "-2133196797", "message": "E_QUERY_RESULT_SET_TOO_LARGE"},
                        }
                    ],
                }
            return json_response(answer)


def _timespan(value: Any) -> tuple[datetime, datetime] | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 duration or interval")
    now = datetime.now(UTC)
    if "/" not in value:
        return now - _duration(value), now + timedelta(seconds=1)
    start_text, end_text = value.split("/", 1)
    start = isodate.parse_datetime(start_text) if not start_text.startswith("P") else None
    end = isodate.parse_datetime(end_text) if not end_text.startswith("P") else None
    if start is not None and end is not None:
        return start.astimezone(UTC), end.astimezone(UTC)
    if start is not None:
        return start.astimezone(UTC), start.astimezone(UTC) + _duration(end_text)
    if end is not None:
        return end.astimezone(UTC) - _duration(start_text), end.astimezone(UTC)
    raise ValueError("an interval needs at least one point in time")


def _duration(text: str) -> timedelta:
    parsed = isodate.parse_duration(text)
    if not isinstance(parsed, timedelta):
        raise ValueError("durations with months or years are not supported")
    return parsed


def _wire(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, timedelta):
        return str(value)
    return value


def _error(status: int, code: str, message: str, inner: dict[str, Any] | None = None) -> Response:
    error: dict[str, Any] = {"message": message, "code": code, "correlationId": str(uuid.uuid4())}
    if inner:
        error["innererror"] = inner
    return json_response({"error": error}, status)


def transport_error(status: int, retry_after_s: float) -> Response:
    if status == 429:
        return json_response(
            {"error": {"message": "Too many requests.", "code": "TooManyRequests"}},
            429,
            {"Retry-After": str(max(1, round(retry_after_s)))},
        )
    return json_response(
        {"error": {"message": "The service is temporarily unavailable.", "code": "ServiceUnavailable"}},
        status,
    )
