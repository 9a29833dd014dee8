"""Durable state in Azure Storage: per-target state with an ETag-guarded lease, the journal of
every side effect, the run history (azure-data-tables), and the remediation queue
(azure-storage-queue)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from shared.domain.state import Conflict, LeasedStates, TargetState, parse_time, time_text

if TYPE_CHECKING:
    from azure.data.tables import TableClient
    from azure.storage.queue import QueueClient

T = TypeVar("T")

log = logging.getLogger(__name__)
_EPOCH_MS_MAX = 10**13
# Bounded time for storage calls too (the SDKs' defaults: 300 s to read, minutes of backoff).
STORAGE_TIMEOUT_S = 10


def _table_missing(exc: Exception) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    # Azurite answers a create on a missing table without an error code; Azure says TableNotFound.
    return isinstance(exc, ResourceNotFoundError) and str(getattr(exc, "error_code", None)) in (
        "TableNotFound",
        "None",
        "TableErrorCode.TABLE_NOT_FOUND",
    )


def creating(table: TableClient, write: Callable[[], T]) -> T:
    """Write; a table that does not exist yet is created (once: the first write), then written.
    Cold starts create nothing: reading a missing table is an empty answer."""
    from azure.core.exceptions import ResourceExistsError

    try:
        return write()
    except Exception as exc:
        if not _table_missing(exc):
            raise
    with contextlib.suppress(ResourceExistsError):
        table.create_table()
    return write()


def _reading(read: Callable[[], list[T]]) -> list[T]:
    try:
        return read()
    except Exception as exc:
        if _table_missing(exc):
            return []
        raise


class StateStore(LeasedStates):
    """The state, journal, history, alert and notification tables (azure-data-tables)."""

    def __init__(
        self,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        prefix: str = "healer",
    ) -> None:
        from azure.data.tables import TableServiceClient

        if connection_string:
            self._service = TableServiceClient.from_connection_string(
                connection_string,
                connection_timeout=STORAGE_TIMEOUT_S,
                read_timeout=STORAGE_TIMEOUT_S,
                retry_total=3,
                retry_backoff_max=4,
            )
        elif account_url:
            self._service = TableServiceClient(
                endpoint=account_url,
                credential=credential,
                connection_timeout=STORAGE_TIMEOUT_S,
                read_timeout=STORAGE_TIMEOUT_S,
                retry_total=3,
                retry_backoff_max=4,
            )
        else:
            raise ValueError("storage needs a connection string or an account URL")
        self.state = self._service.get_table_client(f"{prefix}state")
        self.journal = self._service.get_table_client(f"{prefix}journal")
        self.history = self._service.get_table_client(f"{prefix}history")
        self.alerts = self._service.get_table_client(f"{prefix}alerts")
        self.notifications = self._service.get_table_client(f"{prefix}notifications")

    def ensure(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        for table in (self.state, self.journal, self.history, self.alerts, self.notifications):
            with contextlib.suppress(ResourceExistsError):
                table.create_table()

    # ---------------------------------------------------------------- target state (ETag-guarded)

    def load(self, key: str) -> TargetState:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self.state.get_entity("target", key)
        except ResourceNotFoundError:  # no such row, or no table yet
            return TargetState(key=key)
        return TargetState.from_entity(dict(entity), entity.metadata.get("etag"))

    def state_rows(self) -> list[tuple[dict[str, Any], str | None]]:
        """Every target's raw state row and its ETag."""
        return _reading(
            lambda: [(dict(e), e.metadata.get("etag")) for e in self.state.query_entities("PartitionKey eq 'target'")]
        )

    def save(self, state: TargetState) -> TargetState:
        """Write only if nobody wrote since `state` was read; raises Conflict otherwise."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

        try:
            if state.etag is None:
                meta = creating(self.state, lambda: self.state.create_entity(state.to_entity()))
            else:
                meta = self.state.update_entity(
                    state.to_entity(),
                    mode=UpdateMode.REPLACE,
                    etag=state.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise Conflict(state.key) from exc
        state.etag = meta.get("etag")
        return state

    # ---------------------------------------------------------------- journal and history

    def write_journal(self, key: str, run_id: str, step: str, status: str, data: dict[str, Any], now: datetime) -> None:
        """Upsert: a redelivered step rewrites the same row instead of adding a second one."""
        from azure.data.tables import UpdateMode

        entity = {
            "PartitionKey": key,
            "RowKey": f"{run_id}:{step}:{status}",
            "RunId": run_id,
            "Step": step,
            "Status": status,
            "At": time_text(now),
            "Data": json.dumps(data, default=str),
        }
        creating(self.journal, lambda: self.journal.upsert_entity(entity, mode=UpdateMode.REPLACE))

    def read_journal(self, key: str, run_id: str | None = None) -> list[dict[str, Any]]:
        query = "PartitionKey eq @key"
        params: dict[str, Any] = {"key": key}
        if run_id:
            query += " and RunId eq @run"
            params["run"] = run_id
        rows = _reading(lambda: [dict(e) for e in self.journal.query_entities(query, parameters=params)])
        for row in rows:
            row["Data"] = json.loads(row.get("Data") or "{}")
        return sorted(rows, key=lambda r: r["At"])

    def append_history(self, key: str, run_id: str, record: dict[str, Any], now: datetime) -> None:
        from azure.data.tables import UpdateMode

        inverted = _EPOCH_MS_MAX - int(now.timestamp() * 1000)
        entity: dict[str, Any] = {
            "PartitionKey": key,
            "RowKey": f"{inverted:013d}:{run_id}",
            "RunId": run_id,
            "At": time_text(now),
        }
        entity.update(
            {k: v if isinstance(v, str | int | float | bool) else json.dumps(v, default=str) for k, v in record.items()}
        )
        creating(self.history, lambda: self.history.upsert_entity(entity, mode=UpdateMode.REPLACE))

    def read_history(self, key: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            entities = (
                self.history.query_entities("PartitionKey eq @key", parameters={"key": key})
                if key
                else self.history.list_entities()
            )
            rows = []
            for entity in entities:
                rows.append(dict(entity))
                if key and len(rows) >= limit:
                    break
            return rows

        return sorted(_reading(read), key=lambda r: r["At"], reverse=True)[:limit]

    # ---------------------------------------------------------------- retention

    def prune(self, now: datetime, keep: timedelta, at_most: int = 2000) -> int:
        """Delete journal, history and alert rows older than `keep` (at most `at_most` per call, so a
        timer run stays short; the rest goes next timer run). A pass that finished is not repeated
        for a day across instances: a marker row in the state table says when it last finished."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            marker = self.state.get_entity("meta", "retention")
            if (last := parse_time(marker.get("At"))) and now - last < timedelta(days=1):
                return 0
        except ResourceNotFoundError:
            pass
        before = (now - keep).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        deleted = 0
        for table in (self.journal, self.history, self.alerts):
            try:
                for row in table.query_entities(f"Timestamp lt datetime'{before}'", select=["PartitionKey", "RowKey"]):
                    if deleted >= at_most:
                        break
                    table.delete_entity(row["PartitionKey"], row["RowKey"])
                    deleted += 1
            except Exception as exc:
                if not _table_missing(exc):
                    raise
        if deleted >= at_most:
            return deleted  # more to do: no marker, so the next timer run goes on
        from azure.data.tables import UpdateMode

        creating(
            self.state,
            lambda: self.state.upsert_entity(
                {"PartitionKey": "meta", "RowKey": "retention", "At": time_text(now)}, mode=UpdateMode.REPLACE
            ),
        )
        return deleted


def alert_recorded(store: StateStore, key: str) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        store.alerts.get_entity("alert", key)
    except ResourceNotFoundError:  # no such alert, or no table yet
        return False
    return True


def record_alert(store: StateStore, key: str, data: dict[str, Any], now: datetime) -> bool:
    """True the first time an alert (id + condition) is seen; False for a repeat."""
    from azure.core.exceptions import ResourceExistsError

    entity = {"PartitionKey": "alert", "RowKey": key, "At": time_text(now)}
    entity.update({k: json.dumps(v, default=str) if not isinstance(v, str) else v for k, v in data.items()})
    try:
        creating(store.alerts, lambda: store.alerts.create_entity(entity))
    except ResourceExistsError:
        return False
    return True


def queue_client(
    name: str, connection_string: str | None, account_url: str | None = None, credential: Any = None
) -> Any:
    from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, ExponentialRetry, QueueClient

    # The Functions host reads queue messages as base64 (host.json messageEncoding).
    encode, decode = BinaryBase64EncodePolicy(), BinaryBase64DecodePolicy()
    retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3)
    if connection_string:
        return QueueClient.from_connection_string(
            connection_string,
            name,
            message_encode_policy=encode,
            message_decode_policy=decode,
            connection_timeout=STORAGE_TIMEOUT_S,
            read_timeout=STORAGE_TIMEOUT_S,
            retry_policy=retry,
        )
    return QueueClient(
        account_url or "",
        name,
        credential=credential,
        message_encode_policy=encode,
        message_decode_policy=decode,
        connection_timeout=STORAGE_TIMEOUT_S,
        read_timeout=STORAGE_TIMEOUT_S,
        retry_policy=retry,
    )


class RemediationQueue:
    """The queue the queue trigger reads. Delays are visibility timeouts: nobody waits in-process.
    Messages that must never be acted on go to `<name>-deadletter` with the reason."""

    def __init__(
        self, name: str, connection_string: str | None = None, account_url: str | None = None, credential: Any = None
    ) -> None:
        if not (connection_string or account_url):
            raise ValueError("the queue needs a connection string or an account URL")
        self.name = name
        self.client = queue_client(name, connection_string, account_url, credential)
        self.dead = queue_client(f"{name}-deadletter", connection_string, account_url, credential)
        # Where the Functions host moves a message after maxDequeueCount failed deliveries.
        self.poison = queue_client(f"{name}-poison", connection_string, account_url, credential)

    def ensure(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        for client in (self.client, self.dead):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()

    def send(self, body: str, delay_s: float = 0) -> None:
        delay = max(0, round(delay_s)) or None
        _queue_creating(self.client, lambda: self.client.send_message(body.encode(), visibility_timeout=delay))

    def poisoned(self) -> int:
        """How many messages the host moved to `<name>-poison` (approximate, as Azure counts)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return int(self.poison.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0  # nothing was ever poisoned

    def dead_letter(self, body: bytes | str, reason: str, now: datetime) -> None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        envelope = {"reason": reason, "at": time_text(now), "body": text[:8000]}
        _queue_creating(self.dead, lambda: self.dead.send_message(json.dumps(envelope).encode()))


def _queue_creating(client: QueueClient, send: Callable[[], object]) -> None:
    """Send; a queue that does not exist yet is created by the first send (not at every cold start)."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    try:
        send()
        return
    except ResourceNotFoundError as exc:
        if str(getattr(exc, "error_code", "")) != "QueueNotFound":
            raise
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    send()
