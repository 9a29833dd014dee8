"""Ingestion of backfilled rows with azure-kusto-ingest.

Queued ingestion (`QueuedIngestClient`: `.get ingestion resources` on the cluster's ingestion
endpoint, blob upload, queue message) carries `ingestIfNotExists` and an `ingest-by:` tag per chunk
(IngestionProperties.ingest_if_not_exists / ingest_by_tags): a chunk retried after a crash finds
its tag on the extent that already holds it and is not ingested again. Rows go as multijson and are
mapped by column name, as IoT Central's own ADX export writes them (it has no mapping setting).

Managed streaming (`ManagedStreamingIngestClient`) is used only where the table's streaming
ingestion policy is on. Streaming cannot set extent tags, so a streamed chunk relies on being
synchronous instead: it is in the table when the call returns, and a retried chunk is first
compared with the table (dedupe) before anything is sent again. When streaming fails transiently
the client falls back to queued ingestion, which carries the tags.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any


class Ingestor:
    def __init__(self, cluster_url: str, credential: Any) -> None:
        self.cluster_url = cluster_url
        self._credential = credential
        self._lock = threading.Lock()
        self._queued: Any = None
        self._managed: Any = None
        self.chunks = 0

    def _kcsb(self) -> Any:
        from azure.kusto.data import KustoConnectionStringBuilder

        return KustoConnectionStringBuilder.with_azure_token_credential(self.cluster_url, self._credential)

    def _client(self, streaming: bool) -> Any:
        with self._lock:
            if streaming:
                if self._managed is None:
                    from azure.kusto.ingest import ManagedStreamingIngestClient

                    self._managed = ManagedStreamingIngestClient(self._kcsb())
                return self._managed
            if self._queued is None:
                from azure.kusto.ingest import QueuedIngestClient

                self._queued = QueuedIngestClient(self._kcsb())
            return self._queued

    def ingest(self, database: str, table: str, rows: list[dict[str, Any]], tag: str, *, streaming: bool) -> str:
        """Send one chunk; returns how it went ("queued" or "streamed")."""
        from azure.kusto.data.data_format import DataFormat
        from azure.kusto.ingest import IngestionProperties, StreamDescriptor

        body = "\n".join(json.dumps(r, separators=(",", ":"), default=str) for r in rows).encode()
        properties = IngestionProperties(
            database=database,
            table=table,
            data_format=DataFormat.MULTIJSON,
            ingest_by_tags=[tag],
            ingest_if_not_exists=[tag],
        )
        client = self._client(streaming)
        result = client.ingest_from_stream(StreamDescriptor(io.BytesIO(body), size=len(body)), properties)
        self.chunks += 1
        status = str(getattr(result, "status", ""))
        return "streamed" if streaming and "QUEUED" not in status.upper() else "queued"
