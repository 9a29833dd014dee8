"""The state the healer keeps per target, and the lease/ETag algorithm over it, apart from any
storage: a record of what is owed (obligations), the run's phase and typed data, the lease, and
the ETag-guarded read-modify-write that every change goes through (idempotent: each write names
itself). `shared/adapters/storage.py` stores it in Azure Table storage; the tests keep it in memory."""

from __future__ import annotations

import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger(__name__)

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


class PendingCopy(BaseModel):
    """A destination copy the healer created (or is about to): from this record alone, either its
    re-point is finished (the export sends to the copy: the old destination goes) or the copy is
    deleted (the export still sends to the old one), so no orphan is left behind."""

    model_config = STORED

    run_id: str
    app: str
    export_id: str
    old_id: str
    new_id: str
    since: datetime
    land_by: datetime | None = None  # a create or re-point issued by the run may land until then
    settled_at: datetime | None = None  # observed with one destination left; discharged once settled


class RunData(BaseModel):
    """What a remedy keeps to resume its phase, typed (no JSON inside strings)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    # add-role: the add this run makes, and since when it has been retried
    role: str = ""
    fqn: str = ""
    notes: str = ""
    since: datetime | None = None
    # recreate-destination: the copy (shared/runs/remedies/recreate_calls.py DestinationCopy), and whether
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


def time_text(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


def parse_time(value: Any) -> datetime | None:
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
    pending_copy: PendingCopy | None = None  # a destination copy whose re-point or deletion is owed
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
    last_root_cause: dict[str, Any] | None = None  # shared/reporting/root_cause.py, of the last diagnosis that had one
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
            "LeaseUntil": time_text(self.lease_until),
            "CooldownUntil": time_text(self.cooldown_until),
            "Attempts": json.dumps([time_text(a) for a in self.attempts]),
            "Escalated": self.escalated,
            "EscalationReason": self.escalation_reason,
            "LastOutcome": self.last_outcome,
            "LastRunId": self.last_run_id,
            "LastDiagnosis": self.last_diagnosis,
            "PendingReadd": self.pending_readd.model_dump_json() if self.pending_readd else "",
            "EnableObligation": self.pending_enable.model_dump_json() if self.pending_enable else "",
            "CopyObligation": self.pending_copy.model_dump_json() if self.pending_copy else "",
            "QueuedUntil": time_text(self.queued_until),
            "QueuedRun": self.queued_run,
            "Discovered": json.dumps(self.discovered) if self.discovered else "",
            "RunId": self.run_id,
            "Phase": self.phase,
            "PhaseAt": time_text(self.phase_at),
            "RunData": self.run_data.model_dump_json(exclude_defaults=True) if self.run_data != RunData() else "",
            "LastManualAt": time_text(self.last_manual_at),
            "Gap": json.dumps(self.gap) if self.gap else "",
            "LastRootCause": json.dumps(self.last_root_cause) if self.last_root_cause else "",
            "DestinationId": self.destination_id,
            "HealedAt": time_text(self.healed_at),
            "RetryAt": time_text(self.retry_at),
            "Tries": self.tries,
            "WriteId": self.write_id,
        }

    @staticmethod
    def from_entity(entity: dict[str, Any], etag: str | None) -> TargetState:
        return TargetState(
            key=entity["RowKey"],
            lease_owner=entity.get("LeaseOwner", ""),
            lease_until=parse_time(entity.get("LeaseUntil")),
            cooldown_until=parse_time(entity.get("CooldownUntil")),
            attempts=[d for d in (parse_time(a) for a in json.loads(entity.get("Attempts") or "[]")) if d],
            escalated=bool(entity.get("Escalated", False)),
            escalation_reason=entity.get("EscalationReason", ""),
            last_outcome=entity.get("LastOutcome", ""),
            last_run_id=entity.get("LastRunId", ""),
            last_diagnosis=entity.get("LastDiagnosis", ""),
            pending_readd=PendingReadd.model_validate_json(entity["PendingReadd"])
            if entity.get("PendingReadd")
            else None,
            pending_copy=PendingCopy.model_validate_json(entity["CopyObligation"])
            if entity.get("CopyObligation")
            else None,
            pending_enable=PendingEnable.model_validate_json(entity["EnableObligation"])
            if entity.get("EnableObligation")
            else None,
            queued_until=parse_time(entity.get("QueuedUntil")),
            queued_run=entity.get("QueuedRun", ""),
            discovered=json.loads(entity["Discovered"]) if entity.get("Discovered") else None,
            run_id=entity.get("RunId", ""),
            phase=entity.get("Phase", ""),
            phase_at=parse_time(entity.get("PhaseAt")),
            run_data=RunData.model_validate_json(entity["RunData"]) if entity.get("RunData") else RunData(),
            last_manual_at=parse_time(entity.get("LastManualAt")),
            gap=json.loads(entity["Gap"]) if entity.get("Gap") else None,
            last_root_cause=json.loads(entity["LastRootCause"]) if entity.get("LastRootCause") else None,
            destination_id=entity.get("DestinationId", ""),
            healed_at=parse_time(entity.get("HealedAt")),
            retry_at=parse_time(entity.get("RetryAt")),
            tries=int(entity.get("Tries") or 0),
            write_id=entity.get("WriteId", ""),
            etag=etag,
        )


class Conflict(Exception):
    """Someone else changed the entity first (ETag mismatch or it already exists)."""


class _Held(Exception):
    """Another holder's lease is live: nothing to take."""


class LeasedStates(ABC):
    """Target states with an ETag per row: what every backend provides (load, save, the raw rows)
    and the algorithm built on it (isolated reads, idempotent updates, the lease)."""

    @abstractmethod
    def load(self, key: str) -> TargetState: ...

    @abstractmethod
    def save(self, state: TargetState) -> TargetState:
        """Write only if nobody wrote since `state` was read; raises Conflict otherwise."""

    @abstractmethod
    def state_rows(self) -> list[tuple[dict[str, Any], str | None]]:
        """Every target's raw state row and its ETag."""

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

    def update(
        self, key: str, mutate: Callable[[TargetState], None], name: str = "", attempts: int = 10
    ) -> TargetState:
        """Load, apply `mutate(state)`, save with the ETag; retried when another writer won.

        Idempotent: the write carries its own name (`name`, e.g. run and step, plus a nonce). When a
        save's answer is lost and the retry meets a changed ETag (the SDK retried a PUT that had
        landed: 412), the row is read again; if it carries this write's name, the write is done and
        is not applied a second time."""
        write_id = f"{name or 'write'}#{uuid.uuid4().hex[:12]}"
        for _ in range(attempts):
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

        def take(state: TargetState) -> None:
            if state.leased(now, by=owner):
                raise _Held(key)
            state.lease_owner = owner
            state.lease_until = now + hold
            state.queued_until, state.queued_run = None, ""

        try:
            return self.update(key, take, name=f"{owner}:acquire", attempts=5)
        except (_Held, Conflict):
            return None

    def release(self, state: TargetState) -> TargetState:
        state.lease_owner = ""
        state.lease_until = None
        return self.save(state)
