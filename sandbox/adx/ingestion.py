"""ADX queued ingestion the way azure-kusto-ingest sees it, on Azurite, plus streaming ingestion.

Queued (azure-kusto-ingest 6.0.4, `_resource_manager.py`, `ingest_client.py`,
`ingestion_blob_info.py`): the client sends `.get ingestion resources` (rows of
`ResourceTypeName`, `StorageRoot`: `SecuredReadyForAggregationQueue`, `TempStorage`,
`FailedIngestionsQueue`, `SuccessfulIngestionsQueue`, `IngestionsStatusTable`, each a SAS URL) and
`.get kusto identity token` (`AuthorizationContext`) to the ingestion endpoint, uploads the data to
a `TempStorage` container, and puts a JSON message (base64 text) on a ready-for-aggregation queue:
`{Id, BlobPath, RawDataSize, DatabaseName, TableName, RetainBlobOnSuccess, FlushImmediately,
ReportLevel, ReportMethod, AdditionalProperties: {authorizationContext, format, tags,
ingestIfNotExists, ingestionMappingReference, …}}` where `tags` and `ingestIfNotExists` are JSON
arrays as strings. The ingestion worker here plays ADX's data-management service: it takes the
message, reads the blob, authorizes the identity behind the authorization context, honours
`ingestIfNotExists` against the table's `ingest-by:` extent tags ("Ingestion properties", ADX
docs: data is not ingested if an extent already has an ingest-by tag listed there), ingests by
column name, and records the tags. A refused blob becomes a FailedIngestion row.

Streaming (`KustoClient.execute_streaming_ingest`): `POST /v1/rest/ingest/{db}/{table}
?streamFormat=…[&mappingName=…]`, gzip body. Only tables whose streaming ingestion policy is
enabled accept it; extent tags cannot be set on streamed data (ADX docs, "Configure streaming
ingestion", limitations), so a streamed chunk carries none. JSON needs a pre-created mapping
(`mappingName`, a Json mapping of the table; "Configure streaming ingestion": JSON formats need
one): the records are mapped by its column paths. The refusal's code without one is unverified.

Unverified here: which roles may run `.get ingestion resources` (any Admin or Ingestor of a
database, here), the error code for a table without the streaming policy, and the body of a
streaming answer.
"""

from __future__ import annotations

import gzip
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.adx.model import Cluster, KustoFault
from sandbox.entra import Identity

log = logging.getLogger(__name__)
CONTAINER = "ingestion-temp"
READY_QUEUE = "readyforaggregation-secured"
FAILED_QUEUE = "failedingestions"
SUCCESS_QUEUE = "successfulingestions"
STATUS_TABLE = "ingestionsstatus"


def parse_records(data: bytes) -> list[dict[str, Any]]:
    """JSON / multijson: objects one after another (or an array of them); gzip is undone first."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode("utf-8-sig")
    decoder = json.JSONDecoder()
    records: list[dict[str, Any]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return records
        value, pos = decoder.raw_decode(text, pos)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("a JSON record is not an object")
            records.append(item)


class IngestionService:
    def __init__(
        self,
        cluster: Cluster,
        connection_string: str,
        account_key: str,
        on_failure: Callable[[str, str, KustoFault, str], None],
    ) -> None:
        self.cluster = cluster
        self.connection_string = connection_string
        self.account_key = account_key
        self.on_failure = on_failure
        self._tokens: dict[str, Identity] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ingested_blobs = 0
        self.skipped_blobs = 0  # ingestIfNotExists found the tag
        self.failed_blobs = 0

    # ---------------------------------------------------------------- resources

    def setup(self) -> IngestionService:
        import contextlib

        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import TableServiceClient
        from azure.storage.blob import BlobServiceClient
        from azure.storage.queue import QueueServiceClient

        with contextlib.suppress(ResourceExistsError):
            BlobServiceClient.from_connection_string(self.connection_string).create_container(CONTAINER)
        queues = QueueServiceClient.from_connection_string(self.connection_string)
        for name in (READY_QUEUE, FAILED_QUEUE, SUCCESS_QUEUE):
            with contextlib.suppress(ResourceExistsError):
                queues.create_queue(name)
        with contextlib.suppress(ResourceExistsError):
            TableServiceClient.from_connection_string(self.connection_string).create_table(STATUS_TABLE)
        return self

    def resources(self) -> list[list[Any]]:
        from azure.data.tables import TableSasPermissions, generate_table_sas
        from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
        from azure.storage.queue import QueueSasPermissions, QueueServiceClient, generate_queue_sas

        expiry = datetime.now(UTC) + timedelta(hours=6)
        blob = BlobServiceClient.from_connection_string(self.connection_string)
        queue = QueueServiceClient.from_connection_string(self.connection_string)
        account = str(blob.account_name)
        container_sas = generate_container_sas(
            account,
            CONTAINER,
            account_key=self.account_key,
            permission=ContainerSasPermissions(write=True),
            expiry=expiry,
        )
        rows: list[list[Any]] = [["TempStorage", f"{blob.url.rstrip('/')}/{CONTAINER}?{container_sas}"]]
        for kind, name, permission in (
            ("SecuredReadyForAggregationQueue", READY_QUEUE, QueueSasPermissions(add=True)),
            ("FailedIngestionsQueue", FAILED_QUEUE, QueueSasPermissions(read=True, process=True)),
            ("SuccessfulIngestionsQueue", SUCCESS_QUEUE, QueueSasPermissions(read=True, process=True)),
        ):
            sas = generate_queue_sas(account, name, self.account_key, permission=permission, expiry=expiry)
            rows.append([kind, f"{queue.url.rstrip('/')}/{name}?{sas}"])
        table_sas = generate_table_sas(
            _named_key(account, self.account_key), STATUS_TABLE, permission=TableSasPermissions(add=True), expiry=expiry
        )
        table_url = _table_endpoint(self.connection_string)
        rows.append(["IngestionsStatusTable", f"{table_url.rstrip('/')}/{STATUS_TABLE}?{table_sas}"])
        return rows

    def identity_token(self, caller: Identity) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = caller
        return token

    # ---------------------------------------------------------------- the data-management worker

    def process_once(self) -> int:
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy

        queue = QueueClient.from_connection_string(
            self.connection_string, READY_QUEUE, message_decode_policy=TextBase64DecodePolicy()
        )
        handled = 0
        for message in queue.receive_messages(messages_per_page=32, visibility_timeout=30, max_messages=32):
            try:
                self._ingest_message(json.loads(message.content))
            except Exception:  # a malformed message is dropped, as the service would fail it
                log.exception("sandbox ingestion: a queued message could not be handled")
            queue.delete_message(message)
            handled += 1
        return handled

    def _ingest_message(self, body: dict[str, Any]) -> None:
        from azure.storage.blob import BlobClient

        props = body.get("AdditionalProperties") or {}
        database, table, path = body["DatabaseName"], body["TableName"], body["BlobPath"]
        identity = self._tokens.get(str(props.get("authorizationContext")))
        source = path.split("?", 1)[0]
        if identity is None:
            fault = KustoFault(401, "Unauthorized", "Kusto.Common.Svc.Exceptions.UnauthorizedException", "Bad token.")
            self.failed_blobs += 1
            self.on_failure(database, table, fault, source)
            return
        data = BlobClient.from_blob_url(path, credential=self.account_key).download_blob().readall()
        tags = json.loads(props["tags"]) if props.get("tags") else []
        if_not_exists = json.loads(props["ingestIfNotExists"]) if props.get("ingestIfNotExists") else []
        try:
            count = self.cluster.ingest(
                identity, database, table, parse_records(data), source, tags=tags, if_not_exists=if_not_exists
            )
        except KustoFault as fault:
            self.failed_blobs += 1
            self.on_failure(database, table, fault, source)
            return
        if count == 0 and if_not_exists:
            self.skipped_blobs += 1
        else:
            self.ingested_blobs += 1

    def start(self, interval_s: float = 0.2) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.process_once()
                except Exception:  # Azurite going away at shutdown
                    log.debug("sandbox ingestion worker: poll failed", exc_info=True)

        self._thread = threading.Thread(target=loop, name="sandbox-ingestion", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _named_key(account: str, key: str) -> Any:
    from azure.core.credentials import AzureNamedKeyCredential

    return AzureNamedKeyCredential(account, key)


def _table_endpoint(connection_string: str) -> str:
    for part in connection_string.split(";"):
        if part.startswith("TableEndpoint="):
            return part.split("=", 1)[1]
    raise ValueError("the connection string names no TableEndpoint")


def _mapped(records: list[dict[str, Any]], mapping: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records through a JSON mapping's `$.name` / `$['name']` paths (other paths are not modelled)."""
    import re

    out = []
    for record in records:
        row: dict[str, Any] = {}
        for column in mapping:
            path = str((column.get("Properties") or {}).get("Path") or column.get("path") or "")
            match = re.fullmatch(r"\$\.(\w+)|\$\['([^']+)'\]", path)
            if match:
                row[str(column.get("column") or column.get("Column"))] = record.get(match.group(1) or match.group(2))
        out.append(row)
    return out


def streaming_ingest(
    cluster: Cluster,
    caller: Identity,
    database: str,
    table: str,
    data: bytes,
    stream_format: str,
    mapping_name: str | None = None,
) -> dict[str, Any]:
    """`POST /v1/rest/ingest/{db}/{table}`: synchronous, no extent tags."""
    if stream_format.lower() not in ("json", "multijson"):
        raise KustoFault(
            400,
            "BadRequest_FormatNotSupported",
            "Kusto.Data.Exceptions.KustoBadRequestException",
            f"The stand-in streams json and multijson only, not '{stream_format}'.",
        )
    with cluster.lock:
        t = cluster.table(database, table)
        # The effective policy: the table's own, else its database's (streaming-ingestion-policy.md).
        if not (t.streaming_ingestion or cluster.database(database).streaming_ingestion):
            raise KustoFault(
                400,
                "BadRequest_StreamingIngestionPolicyNotEnabled",
                "Kusto.DataNode.Exceptions.StreamingIngestionPolicyNotEnabledException",
                f"Streaming ingestion policy is not enabled for table '{table}' in database '{database}'.",
            )
        mapping = next(
            (m for m in t.mappings if m.get("Name") == mapping_name and str(m.get("Kind", "")).lower() == "json"),
            None,
        )
        if mapping is None:
            raise KustoFault(
                400,
                "BadRequest_MappingReferenceIsRequired",
                "Kusto.DataNode.Exceptions.IngestionMappingNotFoundException",
                f"Streaming ingestion of '{stream_format}' needs a pre-created Json mapping"
                + (f"; '{mapping_name}' is not one of table '{table}'." if mapping_name else "."),
            )
        columns = mapping.get("Mapping")
        columns = json.loads(columns) if isinstance(columns, str) else list(columns or [])
    try:
        records = _mapped(parse_records(data), columns)
    except ValueError as exc:
        raise KustoFault(
            400, "BadRequest_InvalidData", "Kusto.Data.Exceptions.KustoBadRequestException", str(exc)
        ) from exc
    count = cluster.ingest(caller, database, table, records, f"streaming:{uuid.uuid4()}")
    return {
        "Tables": [
            {
                "TableName": "Table_0",
                "Columns": [{"ColumnName": "ConsumedRecordsCount", "DataType": "Int64", "ColumnType": "long"}],
                "Rows": [[count]],
            }
        ]
    }
