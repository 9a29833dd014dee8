"""Durable state in Azure Storage: per-target state with an ETag-guarded lease, the journal of
every side effect, the run history (azure-data-tables), and the remediation queue
(azure-storage-queue)."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from azure.data.tables import TableClient
    from azure.storage.queue import QueueClient

T = TypeVar("T")

log = logging.getLogger(__name__)
_EPOCH_MS_MAX = 10**13
# Bounded time for storage calls too (the SDKs' defaults: 300 s to read, minutes of backoff).
STORAGE_TIMEOUT_S = 10


# Stored records ignore fields they do not know: a row written by a newer version is still read
# (and its obligations still discharged) by an older one.
STORED = ConfigDict(extra="ignore", frozen=True)


class Dropped(BaseModel):
    """One role assignment a refresh dropped, exactly as it was listed (re-added as is)."""

    model_config = STORED

    role: str
    fqn: str
    notes: str = ""


class PendingReadd(BaseModel):
    """Everything needed to put a dropped principal back, from this record alone: the sweep can
    finish a re-add for a target that is no longer configured or discovered."""

    model_config = STORED

    run_id: str
    cluster_url: str
    database: str
    principal: str
    snapshot: tuple[Dropped, ...]
    dropped_at: datetime
    due: datetime
    correlation_id: str
    trigger: str = "timer"
    # Set when the re-add can never succeed (the principal is unknown to Entra past the retry
    # window): the record stays for people, nothing retries it any more.
    abandoned: str = ""
    # The obligation rule (shared/runs/obligations.py): a drop issued by this run may land until
    # `land_by`; the record is discharged only once the principal is listed again after that.
    land_by: datetime | None = None
    readded_at: datetime | None = None  # the run re-added it; the sweep discharges the record


class PendingEnable(BaseModel):
    """An export the healer disabled (or is about to): re-enable it from this record alone, even
    once its target has left the configuration."""

    model_config = STORED

    run_id: str
    app: str
    export_id: str
    since: datetime
    land_by: datetime | None = None  # a disable issued by the run may land until then
    enabled_at: datetime | None = None  # the run enabled it again; the sweep discharges the record


class RunData(BaseModel):
    """What a remedy keeps to resume its phase, typed (no JSON inside strings)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    # add-role: the add this run makes, and since when it has been retried
    role: str = ""
    fqn: str = ""
    notes: str = ""
    since: datetime | None = None
    # recreate-destination: the copy (shared/recreate_destination.py DestinationCopy), and whether
    # the principal was listed when the copy was made (verification counts it as listed)
    destination_copy: dict[str, Any] | None = Field(
        default=None, validation_alias=AliasChoices("destination_copy", "copy")
    )
    listed: bool = False
    # which delivery of the run holds a claimed phase (the export toggle)
    claim: str = ""

    @field_validator("destination_copy", mode="before")
    @classmethod
    def _copy(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and value else value or None  # rows of 0.x kept JSON text

    @field_validator("listed", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return value if isinstance(value, bool) else value in ("yes", "true", "1")  # rows of 0.x said "yes"/""

    @field_validator("since", mode="before")
    @classmethod
    def _since(cls, value: Any) -> Any:
        return value or None


def _dt(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


def _parse_dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(value) if value else None


@dataclass
class TargetState:
    """What the healer remembers about one target between invocations."""

    key: str
    lease_owner: str = ""
    lease_until: datetime | None = None
    cooldown_until: datetime | None = None
    attempts: list[datetime] = field(default_factory=list)
    escalated: bool = False
    escalation_reason: str = ""
    last_outcome: str = ""
    last_run_id: str = ""
    last_diagnosis: str = ""
    pending_readd: PendingReadd | None = None  # snapshot of a dropped principal not yet re-added
    pending_enable: PendingEnable | None = None  # an export the healer disabled and has not re-enabled yet
    queued_until: datetime | None = None  # a start message is on its way (dedups timer, alerts, HTTP)
    queued_run: str = ""
    discovered: dict[str, Any] | None = None  # a target found through discovery, for the queue side
    # The run state machine: which run is in progress on this target and how far it got. Changed
    # only by ETag-guarded updates of the run holding the lease (shared/runs/fencing.py).
    run_id: str = ""
    phase: str = ""
    phase_at: datetime | None = None
    run_data: RunData = field(default_factory=RunData)  # what a remedy needs to resume its phase
    last_manual_at: datetime | None = None  # the last manual heal that was queued (rate limit)
    gap: dict[str, Any] | None = None  # the last measured export gap and its backfill
    last_root_cause: dict[str, Any] | None = None  # shared/root_cause.py, of the last diagnosis that had one
    destination_id: str = ""  # the destination the healer re-created in place of the target's
    healed_at: datetime | None = None  # the last verified healing: older evidence starts nothing
    # Back-off of the sweep's discharge attempts while they are refused (no admin role, outage).
    retry_at: datetime | None = None
    tries: int = 0
    # The last write's name (run, step, nonce): a retried write whose first attempt landed finds
    # its own name and is done, never a conflict.
    write_id: str = ""
    unreadable: str = ""  # why this row could not be read (the sweep reports it; nothing acts on it)
    etag: str | None = None

    def leased(self, now: datetime, by: str | None = None) -> bool:
        held = bool(self.lease_owner) and self.lease_until is not None and self.lease_until > now
        return held and (by is None or self.lease_owner != by)

    def why_busy(self, now: datetime, *, manual: bool = False) -> str:
        """Why no new remediation may start now ("" if one may). Manual requests skip the cooldown."""
        if self.escalated:
            return f"escalated: {self.escalation_reason}"
        if self.leased(now):
            return "a remediation is in progress"
        if self.queued_until and self.queued_until > now:
            return "a remediation is already queued"
        if self.cooldown_until and self.cooldown_until > now and not manual:
            return f"cooling down until {self.cooldown_until:%H:%M:%S}Z"
        return ""

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": "target",
            "RowKey": self.key,
            "LeaseOwner": self.lease_owner,
            "LeaseUntil": _dt(self.lease_until),
            "CooldownUntil": _dt(self.cooldown_until),
            "Attempts": json.dumps([_dt(a) for a in self.attempts]),
            "Escalated": self.escalated,
            "EscalationReason": self.escalation_reason,
            "LastOutcome": self.last_outcome,
            "LastRunId": self.last_run_id,
            "LastDiagnosis": self.last_diagnosis,
            "PendingReadd": self.pending_readd.model_dump_json() if self.pending_readd else "",
            "EnableObligation": self.pending_enable.model_dump_json() if self.pending_enable else "",
            "QueuedUntil": _dt(self.queued_until),
            "QueuedRun": self.queued_run,
            "Discovered": json.dumps(self.discovered) if self.discovered else "",
            "RunId": self.run_id,
            "Phase": self.phase,
            "PhaseAt": _dt(self.phase_at),
            "RunData": self.run_data.model_dump_json(exclude_defaults=True) if self.run_data != RunData() else "",
            "LastManualAt": _dt(self.last_manual_at),
            "Gap": json.dumps(self.gap) if self.gap else "",
            "LastRootCause": json.dumps(self.last_root_cause) if self.last_root_cause else "",
            "DestinationId": self.destination_id,
            "HealedAt": _dt(self.healed_at),
            "RetryAt": _dt(self.retry_at),
            "Tries": self.tries,
            "WriteId": self.write_id,
        }

    @staticmethod
    def from_entity(entity: dict[str, Any], etag: str | None) -> TargetState:
        return TargetState(
            key=entity["RowKey"],
            lease_owner=entity.get("LeaseOwner", ""),
            lease_until=_parse_dt(entity.get("LeaseUntil")),
            cooldown_until=_parse_dt(entity.get("CooldownUntil")),
            attempts=[d for d in (_parse_dt(a) for a in json.loads(entity.get("Attempts") or "[]")) if d],
            escalated=bool(entity.get("Escalated", False)),
            escalation_reason=entity.get("EscalationReason", ""),
            last_outcome=entity.get("LastOutcome", ""),
            last_run_id=entity.get("LastRunId", ""),
            last_diagnosis=entity.get("LastDiagnosis", ""),
            pending_readd=PendingReadd.model_validate_json(entity["PendingReadd"])
            if entity.get("PendingReadd")
            else None,
            pending_enable=PendingEnable.model_validate_json(entity["EnableObligation"])
            if entity.get("EnableObligation")
            else None,
            queued_until=_parse_dt(entity.get("QueuedUntil")),
            queued_run=entity.get("QueuedRun", ""),
            discovered=json.loads(entity["Discovered"]) if entity.get("Discovered") else None,
            run_id=entity.get("RunId", ""),
            phase=entity.get("Phase", ""),
            phase_at=_parse_dt(entity.get("PhaseAt")),
            run_data=RunData.model_validate_json(entity["RunData"]) if entity.get("RunData") else RunData(),
            last_manual_at=_parse_dt(entity.get("LastManualAt")),
            gap=json.loads(entity["Gap"]) if entity.get("Gap") else None,
            last_root_cause=json.loads(entity["LastRootCause"]) if entity.get("LastRootCause") else None,
            destination_id=entity.get("DestinationId", ""),
            healed_at=_parse_dt(entity.get("HealedAt")),
            retry_at=_parse_dt(entity.get("RetryAt")),
            tries=int(entity.get("Tries") or 0),
            write_id=entity.get("WriteId", ""),
            etag=etag,
        )


def _table_missing(exc: Exception) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    # Azurite answers a create on a missing table without an error code; Azure says TableNotFound.
    return isinstance(exc, ResourceNotFoundError) and str(getattr(exc, "error_code", None)) in (
        "TableNotFound",
        "None",
        "TableErrorCode.TABLE_NOT_FOUND",
    )


def _creating(table: TableClient, write: Callable[[], T]) -> T:
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


class Conflict(Exception):
    """Someone else changed the entity first (ETag mismatch or it already exists)."""


class StateStore:
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

    def all_states(self) -> list[TargetState]:
        """Every target's state. A row that cannot be read is isolated to its target: it comes back
        marked `unreadable` with the reason, and the others are read as usual."""
        states = []
        for entity, etag in self.state_rows():
            try:
                states.append(TargetState.from_entity(entity, etag))
            except Exception as exc:
                key = str(entity.get("RowKey", "?"))
                log.error("state of %s is unreadable: %s", key, exc)
                states.append(TargetState(key=key, unreadable=f"{type(exc).__name__}: {exc}"[:500], etag=etag))
        return states

    def save(self, state: TargetState) -> TargetState:
        """Write only if nobody wrote since `state` was read; raises Conflict otherwise."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

        try:
            if state.etag is None:
                meta = _creating(self.state, lambda: self.state.create_entity(state.to_entity()))
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

    def update(self, key: str, mutate: Callable[[TargetState], None], name: str = "") -> TargetState:
        """Load, apply `mutate(state)`, save with the ETag; retried when another writer won.

        Idempotent: the write carries its own name (`name`, e.g. run and step, plus a nonce). When a
        save's answer is lost and the retry meets a changed ETag (the SDK retried a PUT that had
        landed: 412), the row is read again; if it carries this write's name, the write is done and
        is not applied a second time."""
        write_id = f"{name or 'write'}#{uuid.uuid4().hex[:12]}"
        for _ in range(10):
            state = self.load(key)
            if state.write_id == write_id:
                return state  # an earlier attempt of this very write landed
            mutate(state)
            state.write_id = write_id
            try:
                return self.save(state)
            except Conflict:
                landed = self.load(key)
                if landed.write_id == write_id:
                    return landed
                continue
        raise Conflict(key)

    def acquire(self, key: str, owner: str, now: datetime, hold: timedelta) -> TargetState | None:
        """Take the target's lease for `owner` (or extend it); None if another run holds it."""
        write_id = f"{owner}:acquire#{uuid.uuid4().hex[:12]}"
        for _ in range(5):
            state = self.load(key)
            if state.write_id == write_id:
                return state
            if state.leased(now, by=owner):
                return None
            state.lease_owner = owner
            state.lease_until = now + hold
            state.queued_until, state.queued_run = None, ""
            state.write_id = write_id
            try:
                return self.save(state)
            except Conflict:
                landed = self.load(key)
                if landed.write_id == write_id:
                    return landed
                continue
        return None

    def release(self, state: TargetState) -> TargetState:
        state.lease_owner = ""
        state.lease_until = None
        return self.save(state)

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
            "At": _dt(now),
            "Data": json.dumps(data, default=str),
        }
        _creating(self.journal, lambda: self.journal.upsert_entity(entity, mode=UpdateMode.REPLACE))

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
            "At": _dt(now),
        }
        entity.update(
            {k: v if isinstance(v, str | int | float | bool) else json.dumps(v, default=str) for k, v in record.items()}
        )
        _creating(self.history, lambda: self.history.upsert_entity(entity, mode=UpdateMode.REPLACE))

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
            if (last := _parse_dt(marker.get("At"))) and now - last < timedelta(days=1):
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

        _creating(
            self.state,
            lambda: self.state.upsert_entity(
                {"PartitionKey": "meta", "RowKey": "retention", "At": _dt(now)}, mode=UpdateMode.REPLACE
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

    entity = {"PartitionKey": "alert", "RowKey": key, "At": _dt(now)}
    entity.update({k: json.dumps(v, default=str) if not isinstance(v, str) else v for k, v in data.items()})
    try:
        _creating(store.alerts, lambda: store.alerts.create_entity(entity))
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
        envelope = {"reason": reason, "at": _dt(now), "body": text[:8000]}
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
