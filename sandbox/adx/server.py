"""HTTP face of the ADX stand-in: `/v1/rest/mgmt` (v1 tables) and `/v2/rest/query` (v2 frames)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.adx import kql
from sandbox.adx.executor import Frame, execute
from sandbox.adx.model import Cluster, KustoFault, forbidden, table_not_found
from sandbox.entra import KUSTO_AUDIENCE, AuthError, Directory, Identity
from sandbox.httpserver import json_response

# v2 `ColumnType` → v1 `DataType` (the .NET type names v1 responses carry).
_V1_TYPES = {
    "string": "String",
    "long": "Int64",
    "int": "Int32",
    "real": "Double",
    "double": "Double",
    "datetime": "DateTime",
    "bool": "Boolean",
    "boolean": "Boolean",
    "guid": "Guid",
    "timespan": "TimeSpan",
    "dynamic": "Object",
}
_CLOUD_METADATA = {
    "AzureAD": {
        "LoginEndpoint": "https://login.microsoftonline.com",
        "LoginMfaRequired": False,
        "KustoClientAppId": "db662dc1-0cfe-4e1c-a843-19a68e65be58",
        "KustoClientRedirectUri": "https://microsoft/kustoclient",
        "KustoServiceResourceId": KUSTO_AUDIENCE,
        "FirstPartyAuthorityUrl": "https://login.microsoftonline.com/f8cdef31-a31e-4b4a-93e4-5f571e91255a",
    },
    "dSTS": {"CloudEndpointSuffix": "windows.net", "DstsRealm": "realm://dsts.core.windows.net"},
}
_GENERIC_MESSAGES = {
    400: "Request is invalid and cannot be executed.",
    401: "Unauthorized",
    403: "Caller is not authorized to perform this action",
    429: "The request was throttled.",
    500: "Internal server error.",
    503: "Service temporarily unavailable.",
}


def _wire(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, timedelta):
        total = int(value.total_seconds())
        sign = "-" if total < 0 else ""
        total = abs(total)
        days, rem = divmod(total, 86400)
        hours, rem = divmod(rem, 3600)
        minutes, seconds = divmod(rem, 60)
        return (
            f"{sign}{days}.{hours:02}:{minutes:02}:{seconds:02}"
            if days
            else f"{sign}{hours:02}:{minutes:02}:{seconds:02}"
        )
    return value


def kind_of(values: list[Any]) -> str:
    """The Kusto scalar type of a computed column, from its first non-null value."""
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int):
            return "long"
        if isinstance(v, float):
            return "real"
        if isinstance(v, datetime):
            return "datetime"
        if isinstance(v, timedelta):
            return "timespan"
        if isinstance(v, dict | list):
            return "dynamic"
        return "string"
    return "string"


def error_body(
    status: int, code: str, error_type: str, message: str, permanent: bool, request_id: str
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            # A not-found answer names the entity in `message` too (the published 404 sample).
            "message": message if status == 404 else _GENERIC_MESSAGES.get(status, "Request failed."),
            "@type": error_type,
            "@message": message,
            "@context": {
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "serviceAlias": "SANDBOX",
                "machineName": "KEngine000000",
                "processName": "Kusto.WinSvc.Svc",
                "clientRequestId": request_id,
                "activityId": str(uuid.uuid4()),
            },
            "@permanent": permanent,
        }
    }


def transport_error(status: int, retry_after_s: float) -> Response:
    """What the front end answers when it throttles or fails (fault injection)."""
    if status == 429:
        body = error_body(
            429,
            "TooManyRequests",
            "Kusto.DataNode.Exceptions.ControlCommandThrottledException",
            "The control command was aborted due to throttling. Retrying after some backoff might succeed.",
            False,
            "",
        )
        return json_response(body, 429, {"Retry-After": str(max(1, round(retry_after_s)))})
    body = error_body(
        status,
        "ServiceUnavailable",
        "Kusto.Common.Svc.Exceptions.ServiceUnavailableException",
        "The service is temporarily unavailable.",
        False,
        "",
    )
    return json_response(body, status)


class KustoService:
    def __init__(self, cluster: Cluster, directory: Directory) -> None:
        self.cluster = cluster
        self.directory = directory

    def __call__(self, request: Request) -> Response:
        request_id = request.headers.get("x-ms-client-request-id", "")
        if request.path == "/v1/rest/auth/metadata" and request.method == "GET":
            return json_response(_CLOUD_METADATA)
        if request.path.startswith("/v1/rest/ingest/"):
            return self._stream(request, request_id)
        if request.path not in ("/v1/rest/mgmt", "/v2/rest/query"):
            return json_response({"error": {"code": "NotFound", "message": f"'{request.path}' does not exist."}}, 404)
        if request.method != "POST":
            return json_response({"error": {"code": "MethodNotAllowed", "message": "Use POST."}}, 405)
        try:
            caller = self.directory.authenticate(request, (KUSTO_AUDIENCE, self.cluster.url))
        except AuthError as exc:
            return json_response(
                error_body(
                    401,
                    exc.code,
                    "Kusto.Data.Exceptions.UnauthorizedException",
                    exc.message,
                    True,
                    request_id,
                ),
                401,
            )
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("csl"), str):
            return self._fault(
                KustoFault(
                    400,
                    "BadRequest_InvalidBody",
                    "Kusto.Data.Exceptions.KustoBadRequestException",
                    "The request body must be JSON with 'db' and 'csl'.",
                    True,
                ),
                request_id,
            )
        database = body.get("db") or None
        csl: str = body["csl"]
        with self.cluster.lock:
            self.cluster.command_log.append((caller.fqn, request.path, csl))
        try:
            if request.path == "/v1/rest/mgmt":
                if not csl.lstrip().startswith("."):
                    raise KustoFault(
                        400,
                        "BadRequest_SyntaxError",
                        "Kusto.Data.Exceptions.SyntaxException",
                        "Syntax error: the management endpoint accepts control commands only.",
                    )
                return json_response(self._v1(execute(self.cluster, caller, database, csl)))
            return json_response(self._query(caller, database, csl))
        except KustoFault as fault:
            return self._fault(fault, request_id)
        except kql.KqlError as exc:
            return self._fault(
                KustoFault(
                    400,
                    "General_BadRequest",
                    "Kusto.Data.Exceptions.KustoBadRequestException",
                    f"Request is invalid and cannot be processed: {exc.kind}: {exc.code}: {exc.message}",
                ),
                request_id,
            )

    def _stream(self, request: Request, request_id: str) -> Response:
        from sandbox.adx.ingestion import streaming_ingest

        if request.method != "POST":
            return json_response({"error": {"code": "MethodNotAllowed", "message": "Use POST."}}, 405)
        parts = [p for p in request.path.split("/") if p][3:]
        try:
            caller = self.directory.authenticate(request, (KUSTO_AUDIENCE, self.cluster.url))
        except AuthError as exc:
            fault = KustoFault(401, exc.code, "Kusto.Data.Exceptions.UnauthorizedException", exc.message)
            return self._fault(fault, request_id)
        try:
            if len(parts) != 2:
                raise KustoFault(
                    400,
                    "BadRequest_InvalidUri",
                    "Kusto.Data.Exceptions.KustoBadRequestException",
                    "Use /v1/rest/ingest/{database}/{table}.",
                )
            body = streaming_ingest(
                self.cluster,
                caller,
                parts[0],
                parts[1],
                request.get_data(),
                request.args.get("streamFormat", ""),
                request.args.get("mappingName"),
            )
        except KustoFault as fault:
            return self._fault(fault, request_id)
        return json_response(body)

    def _fault(self, fault: KustoFault, request_id: str) -> Response:
        return json_response(
            error_body(fault.status, fault.code, fault.error_type, fault.message, fault.permanent, request_id),
            fault.status,
        )

    @staticmethod
    def _v1(frame: Frame) -> dict[str, Any]:
        return {
            "Tables": [
                {
                    "TableName": "Table_0",
                    "Columns": [
                        {"ColumnName": name, "DataType": _V1_TYPES[kind], "ColumnType": kind}
                        for name, kind in frame.columns
                    ],
                    "Rows": [[_wire(v) for v in row] for row in frame.rows],
                }
            ]
        }

    def _query(self, caller: Identity, database: str | None, csl: str) -> list[dict[str, Any]]:
        if csl.lstrip().startswith("."):
            raise KustoFault(
                400,
                "BadRequest_SyntaxError",
                "Kusto.Data.Exceptions.SyntaxException",
                "Syntax error: control commands must be sent to the management endpoint.",
            )
        if not database:
            raise KustoFault(
                400,
                "BadRequest_NoDatabaseName",
                "Kusto.Data.Exceptions.KustoBadRequestException",
                "The request does not name a database.",
            )
        with self.cluster.lock:
            self.cluster.database(database)
            self.cluster.require_reader(caller, database, "Query")

            schema: dict[str, str] = {}

            def lookup(name: str) -> tuple[list[str], list[dict[str, Any]]]:
                try:
                    table = self.cluster.table(database, name)
                except KustoFault:
                    raise kql.UnknownTableError(name) from None
                schema.update(table.columns)
                if table.restricted_view_access and "unrestrictedviewers" not in self.cluster.db_roles_of(
                    caller, database
                ):
                    # Restricted view access: even a Database Admin needs UnrestrictedViewer to query.
                    raise forbidden(caller, "Query", f"{self.cluster.url}/{database}/{name}")
                if table.row_level_security:
                    # The sandbox's RLS predicate lets the healer see no row (a count is then wrong).
                    return [c for c, _ in table.columns], []
                return [c for c, _ in table.columns], table.rows

            try:
                result = kql.run_query(csl, lookup)
            except kql.UnknownTableError as exc:
                raise KustoFault(
                    400,
                    "General_BadRequest",
                    "Kusto.Data.Exceptions.KustoBadRequestException",
                    f"Request is invalid and cannot be processed: Semantic error: SEM0100: {exc.message}",
                ) from exc
        columns = []
        for name in result.columns:
            kind = schema.get(name) or kind_of([r.get(name) for r in result.rows])
            if name == "Count" or name.startswith("count_"):
                kind = "long"
            columns.append({"ColumnName": name, "ColumnType": kind})
        rows = [[_wire(r.get(c)) for c in result.columns] for r in result.rows]
        now = _wire(datetime.now(UTC))
        return [
            {"FrameType": "DataSetHeader", "IsProgressive": False, "Version": "v2.0"},
            {
                "FrameType": "DataTable",
                "TableId": 0,
                "TableKind": "QueryProperties",
                "TableName": "@ExtendedProperties",
                "Columns": [
                    {"ColumnName": "TableId", "ColumnType": "int"},
                    {"ColumnName": "Key", "ColumnType": "string"},
                    {"ColumnName": "Value", "ColumnType": "dynamic"},
                ],
                "Rows": [[1, "Visualization", '{"Visualization":null}']],
            },
            {
                "FrameType": "DataTable",
                "TableId": 1,
                "TableKind": "PrimaryResult",
                "TableName": "PrimaryResult",
                "Columns": columns,
                "Rows": rows,
            },
            {
                "FrameType": "DataTable",
                "TableId": 2,
                "TableKind": "QueryCompletionInformation",
                "TableName": "QueryCompletionInformation",
                "Columns": [
                    {"ColumnName": "Timestamp", "ColumnType": "datetime"},
                    {"ColumnName": "ClientRequestId", "ColumnType": "string"},
                    {"ColumnName": "ActivityId", "ColumnType": "guid"},
                    {"ColumnName": "SubActivityId", "ColumnType": "guid"},
                    {"ColumnName": "ParentActivityId", "ColumnType": "guid"},
                    {"ColumnName": "Level", "ColumnType": "int"},
                    {"ColumnName": "LevelName", "ColumnType": "string"},
                    {"ColumnName": "StatusCode", "ColumnType": "int"},
                    {"ColumnName": "StatusCodeName", "ColumnType": "string"},
                    {"ColumnName": "EventType", "ColumnType": "int"},
                    {"ColumnName": "EventTypeName", "ColumnType": "string"},
                    {"ColumnName": "Payload", "ColumnType": "string"},
                ],
                "Rows": [
                    [
                        now,
                        "",
                        str(uuid.uuid4()),
                        str(uuid.uuid4()),
                        str(uuid.uuid4()),
                        4,
                        "Info",
                        0,
                        "S_OK (0)",
                        4,
                        "QueryInfo",
                        '{"Count":1,"Text":"Query completed successfully"}',
                    ]
                ],
            },
            {"FrameType": "DataSetCompletion", "HasErrors": False, "Cancelled": False},
        ]


__all__ = ["KustoService", "table_not_found", "transport_error"]
