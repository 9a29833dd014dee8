"""Ingestion of backfilled rows with azure-kusto-ingest.

Queued ingestion (`QueuedIngestClient`: `.get ingestion resources` on the cluster's ingestion
endpoint, blob upload, queue message) carries the run's `ingest-by:` tag (one per run, not one per
chunk: IngestionProperties.ingest_by_tags) and, for the run's first chunk only, `ingestIfNotExists`
with it (a first chunk sent again after a crash finds the tag and is not ingested twice; later
chunks rely on the engine's read-back, see shared/backfill/engine.py). Rows go as multijson and are
mapped by column name, as IoT Central's own ADX export writes them (it has no mapping setting).

Streaming (`StreamingIngestClient`, one attempt) only where the table's streaming policy is on and
the table has a JSON mapping that maps each column from the field of its own name: streaming JSON
needs a pre-created mapping, and streamed data carries no tags, so a streamed chunk relies on being
synchronous instead (it is in the table when the call returns; a redone window is compared with the
table before anything is sent again). A streaming call refused outright (HTTP 4xx: nothing was
ingested) falls back to queued ingestion, which carries the tags; any other failure (a timeout, a
5xx, a dropped connection: the chunk may have landed) fails the window visibly and is never sent
again blindly — the managed client's own retries and fallback are not used for that reason.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any

APPROXIMATE_TAG = "iotc-adx-healer:approximate"


class IngestUncertain(RuntimeError):
    """A streamed chunk whose fate is unknown: the window is not done; the read-back decides."""


class Ingestor:
    def __init__(self, cluster_url: str, credential: Any) -> None:
        self.cluster_url = cluster_url
        self._credential = credential
        self._lock = threading.Lock()
        self._queued: Any = None
        self._streaming: Any = None
        self.chunks = 0

    def _kcsb(self) -> Any:
        from azure.kusto.data import KustoConnectionStringBuilder

        return KustoConnectionStringBuilder.with_azure_token_credential(self.cluster_url, self._credential)

    def _client(self, streaming: bool) -> Any:
        with self._lock:
            if streaming:
                if self._streaming is None:
                    from azure.kusto.ingest import KustoStreamingIngestClient

                    self._streaming = KustoStreamingIngestClient(self._kcsb())
                return self._streaming
            if self._queued is None:
                from azure.kusto.ingest import QueuedIngestClient

                self._queued = QueuedIngestClient(self._kcsb())
            return self._queued

    def ingest(
        self,
        database: str,
        table: str,
        rows: list[dict[str, Any]],
        tag: str,
        *,
        streaming: bool,
        mapping: str | None = None,
        approximate: bool = False,
        if_not_exists: bool = False,
    ) -> str:
        """Send one chunk; returns how it went ("queued" or "streamed")."""
        from azure.kusto.data.data_format import DataFormat, IngestionMappingKind
        from azure.kusto.data.exceptions import KustoApiError
        from azure.kusto.ingest import IngestionProperties, StreamDescriptor

        # multijson takes an array of records too: one encoder call for the chunk, not one per row.
        body = json.dumps(rows, separators=(",", ":"), default=str).encode()
        extra = [APPROXIMATE_TAG] if approximate else []
        self.chunks += 1
        if streaming and mapping:
            streamed = IngestionProperties(
                database=database,
                table=table,
                data_format=DataFormat.MULTIJSON,
                ingestion_mapping_reference=mapping,
                ingestion_mapping_kind=IngestionMappingKind.JSON,
            )
            try:
                self._client(True).ingest_from_stream(StreamDescriptor(io.BytesIO(body), size=len(body)), streamed)
                return "streamed"
            except KustoApiError as exc:
                status = exc.http_response.status_code if exc.http_response is not None else None
                if status is None or not 400 <= status < 500 or status in (408, 429):
                    raise IngestUncertain(f"streaming into {table} failed ({status}): {exc}") from exc
                # Refused outright: nothing was ingested; queued ingestion carries the tags.
            except Exception as exc:  # the SDK's other errors: whether the chunk landed is unknown
                raise IngestUncertain(f"streaming into {table} failed: {exc}") from exc
        properties = IngestionProperties(
            database=database,
            table=table,
            data_format=DataFormat.MULTIJSON,
            ingest_by_tags=[tag],
            ingest_if_not_exists=[tag] if if_not_exists else [],
            additional_tags=extra,
        )
        self._client(False).ingest_from_stream(StreamDescriptor(io.BytesIO(body), size=len(body)), properties)
        return "queued"
