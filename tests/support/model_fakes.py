"""In-memory stand-ins for the stateful model test: storage with real ETag semantics (the state
store's own update/acquire logic runs on top), a queue with visibility delays on a fake clock, and
an ADX/IoT Central pair that models one stale principal. Only what the run machine calls."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from shared.adapters.iotcentral_model import ExportStatus, IotcError
from shared.adapters.kusto_errors import AdxError
from shared.adapters.storage import RemediationQueue, StateStore
from shared.domain.principals import Assignment
from shared.domain.state import Conflict, TargetState

START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class MemoryStore(StateStore):
    """The state store over dicts: ETags are counters; journal rows get a global sequence number."""

    def __init__(self) -> None:  # no SDK clients
        self.entities: dict[str, tuple[dict[str, Any], int]] = {}
        self.journal_rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.history_rows: list[dict[str, Any]] = []
        self.notifications = cast(Any, MemoryTable())  # what shared.reporting.notify claims incidents in
        self.seq = itertools.count()
        self.etags = itertools.count(1)
        # Storage faults: a write that lands but whose answer is lost (decides per written state).
        self.lose_answer: Callable[[TargetState], bool] | None = None
        self.lost_answers = 0

    def load(self, key: str) -> TargetState:
        found = self.entities.get(key)
        if found is None:
            return TargetState(key=key)
        return TargetState.from_entity(copy.deepcopy(found[0]), str(found[1]))

    def state_rows(self) -> list[tuple[dict[str, Any], str | None]]:
        return [(copy.deepcopy(self.entities[k][0]), str(self.entities[k][1])) for k in sorted(self.entities)]

    def save(self, state: TargetState) -> TargetState:
        current = self.entities.get(state.key)
        if state.etag is None and current is not None:
            raise Conflict(state.key)
        if state.etag is not None and (current is None or str(current[1]) != state.etag):
            raise Conflict(state.key)
        etag = next(self.etags)
        self.entities[state.key] = (copy.deepcopy(state.to_entity()), etag)
        if self.lose_answer is not None and self.lose_answer(state):
            # The write landed; its answer did not. azure-core retries the PUT on the read timeout,
            # and the retry meets the new ETag: 412, which the store sees as a conflict.
            self.lost_answers += 1
            raise Conflict(state.key)
        state.etag = str(etag)
        return state

    def write_journal(self, key: str, run_id: str, step: str, status: str, data: dict[str, Any], now: datetime) -> None:
        row = {
            "RunId": run_id,
            "Step": step,
            "Status": status,
            "At": now.isoformat(),
            "Data": data,
            "Seq": next(self.seq),
        }
        self.journal_rows[(key, f"{run_id}:{step}:{status}")] = row

    def read_journal(self, key: str, run_id: str | None = None) -> list[dict[str, Any]]:
        rows = [
            copy.deepcopy(r)
            for (k, _), r in self.journal_rows.items()
            if k == key and (not run_id or r["RunId"] == run_id)
        ]
        return sorted(rows, key=lambda r: r["Seq"])

    def append_history(self, key: str, run_id: str, record: dict[str, Any], now: datetime) -> None:
        self.history_rows.append({"key": key, "RunId": run_id, "At": now.isoformat(), **record})

    def read_history(self, key: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, like the table's inverted-time row keys."""
        rows = [copy.deepcopy(r) for r in reversed(self.history_rows) if key is None or r["key"] == key]
        return rows[:limit]

    def prune(self, now: datetime, keep: timedelta, at_most: int = 2000) -> int:
        return 0


@dataclass
class Message:
    id: int
    body: str
    visible_at: datetime
    dequeue_count: int = 0


class MemoryQueue(RemediationQueue):
    def __init__(self, clock: FakeClock) -> None:  # no SDK clients
        self.name = "model"
        self.clock = clock
        self.messages: dict[int, Message] = {}
        self.dead_letters: list[str] = []
        self.poison_list: list[str] = []  # what the host moved to `<queue>-poison`
        self.ids = itertools.count()

    def send(self, body: str, delay_s: float = 0) -> None:
        n = next(self.ids)
        self.messages[n] = Message(n, body, self.clock() + timedelta(seconds=max(0, round(delay_s))))

    def dead_letter(self, body: bytes | str, reason: str, now: datetime) -> None:
        self.dead_letters.append(reason)

    def poisoned(self) -> int:
        return len(self.poison_list)

    def visible(self) -> list[Message]:
        return sorted((m for m in self.messages.values() if m.visible_at <= self.clock()), key=lambda m: m.id)


@dataclass
class AdxModel:
    """One database, the healer, and the principals. `stale` principals are listed yet denied
    until dropped and re-added (what a refresh is for)."""

    clock: FakeClock
    database: str
    rows: list[Assignment] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)
    healer_admin: bool = True
    failing: bool = False  # every call fails as a transient error (throttling, 5xx)
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (verb, role, fqn)
    refused: int = 0  # role changes refused for want of Database Admin
    before_command: Any = None  # called with the verb right before a role change lands
    seconds_per_call: float = 0.0  # each role change takes this long on the fake clock
    actor: Any = None  # who sends each role change (the model's run ids), kept beside `log`
    who: list[str] = field(default_factory=list)

    def _call(self) -> None:
        if self.seconds_per_call:
            self.clock.advance(self.seconds_per_call)
        if self.failing:
            raise AdxError("ServiceError", "the cluster is unavailable", transient=True, status=503)

    def holds(self, fqn: str) -> list[Assignment]:
        return [a for a in self.rows if a.fqn.lower() == fqn.lower()]

    def can_ingest(self, fqn: str) -> bool:
        return any(a.role in ("ingestors", "admins") for a in self.holds(fqn)) and fqn.lower() not in self.stale


class MemoryTable:
    """The notifications table (azure-data-tables TableClient: create, get, merge): a row per
    incident id; creating one that exists is refused, as the service refuses it (409)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def create_entity(self, entity: dict[str, Any]) -> dict[str, Any]:
        from azure.core.exceptions import ResourceExistsError

        key = (entity["PartitionKey"], entity["RowKey"])
        if key in self.rows:
            raise ResourceExistsError("The specified entity already exists.")
        self.rows[key] = dict(entity)
        return {}

    def get_entity(self, partition_key: str, row_key: str) -> dict[str, Any]:
        return dict(self.rows[(partition_key, row_key)])

    def update_entity(self, entity: dict[str, Any], **options: Any) -> dict[str, Any]:
        key = (entity["PartitionKey"], entity["RowKey"])
        self.rows[key] = {**self.rows.get(key, {}), **entity}
        return {}


class FakeKusto:
    """KustoAdapter's surface over AdxModel."""

    def __init__(self, model: AdxModel) -> None:
        self.m = model

    def database_principals(self, database: str) -> list[Assignment]:
        self.m._call()
        if not self.m.healer_admin:
            self.m.refused += 1
            raise AdxError("Forbidden", "principal is not authorized", transient=False, status=403)
        return list(self.m.rows)

    def table_principals(self, database: str, table: str) -> list[Assignment]:
        self.m._call()
        return []

    # The backfill's gap: the model's table has no ingestion history (the gap falls back to the lookback).
    def last_ingestion_before(self, database: str, table: str, before: datetime) -> datetime | None:
        self.m._call()
        return None

    def first_ingestion_since(self, database: str, table: str, since: datetime) -> datetime | None:
        self.m._call()
        return None

    def database_listing(self, database: str) -> tuple[list[Assignment], list[str]]:
        return self.database_principals(database), []

    def table_listing(self, database: str, table: str) -> tuple[list[Assignment], list[str]]:
        return self.table_principals(database, table), []

    def streaming_ingestion(self, database: str, table: str) -> bool:
        self.m._call()
        return True

    def tables(self, database: str) -> list[str]:
        self.m._call()
        return ["DeviceTelemetry"]

    def own_roles(self, database: str) -> set[str]:
        self.m._call()
        return {"admins"} if self.m.healer_admin else {"viewers"}

    def policy_enabled(self, database: str, table: str, policy: str) -> bool:
        self.m._call()
        return False

    def rows_since(self, database: str, table: str, since: datetime) -> int:
        self.m._call()
        return 1 if any(self.m.can_ingest(a.fqn) for a in self.m.rows) else 0

    def set_role(
        self,
        database: str,
        role: str,
        fqn: str,
        *,
        present: bool,
        notes: str | None = None,
        table: str | None = None,
        current: list[Assignment] | None = None,
    ) -> list[Assignment]:
        listing = current if current is not None else self.database_principals(database)
        holds = any(a.role == role and a.fqn.lower() == fqn.lower() for a in listing)
        if holds == present:
            return listing
        self.m._call()
        if not self.m.healer_admin:
            self.m.refused += 1
            raise AdxError("Forbidden", "principal is not authorized", transient=False, status=403)
        if self.m.before_command is not None:
            self.m.before_command("add" if present else "drop")  # a command in flight (a late act)
        if present:
            if not any(a.role == role and a.fqn.lower() == fqn.lower() for a in self.m.rows):
                self.m.rows.append(Assignment("database", role, fqn, "", "", notes or ""))
            self.m.log.append(("add", role, fqn.lower()))
            self.m.who.append(self.m.actor() if self.m.actor else "")
        else:
            self.m.rows = [a for a in self.m.rows if not (a.role == role and a.fqn.lower() == fqn.lower())]
            self.m.stale.discard(fqn.lower())
            self.m.log.append(("drop", role, fqn.lower()))
            self.m.who.append(self.m.actor() if self.m.actor else "")
        return list(self.m.rows)


class FakeIotc:
    """IoT Central's export status follows whether the principal can ingest. One export, its
    destinations (a re-created one authenticates afresh: the stale permission is gone for it)."""

    def __init__(self, model: AdxModel, fqn: str) -> None:
        self.m = model
        self.fqn = fqn
        self.enabled = True
        self.destinations: dict[str, dict[str, Any]] = {
            "adx-1": {
                "id": "adx-1",
                "displayName": "ADX",
                "type": "dataexplorer@v1",
                "clusterUrl": "https://model.westeurope.kusto.windows.net",
                "database": "devicedata",
                "table": "DeviceTelemetry",
                "authorization": {"type": "systemAssignedManagedIdentity"},
            }
        }
        self.refs: list[dict[str, Any]] = [{"id": "adx-1"}]
        # Whether IoT Central refuses an export that references a destination that does not exist
        # is not documented: the model draws both.
        self.refuses_unknown_ids = False

    def status(self, app: str, export_id: str, destination_id: str) -> ExportStatus:
        ok = self.m.can_ingest(self.fqn)
        errors = () if ok else (("Forbidden", "Principal lacks required permissions"),)
        status = "healthy" if ok else "error"
        dest = self.destinations.get(destination_id, {})
        return ExportStatus(export_id, self.enabled, status, errors, destination_id, status, errors, dict(dest))

    def current_identity(self, resource_id: str) -> None:
        return None

    def _command(self, verb: str) -> None:
        if self.m.before_command is not None:
            self.m.before_command(verb)

    def set_enabled(self, app: str, export_id: str, enabled: bool) -> dict[str, Any]:
        self._command("enable" if enabled else "disable")
        self.enabled = enabled
        return {"enabled": enabled}

    def device_templates(self, app: str) -> list[dict[str, Any]]:
        return []  # no telemetry to query: a backfill walks its phase and finds nothing to send

    def export(self, app: str, export_id: str) -> dict[str, Any]:
        return {"id": export_id, "enabled": self.enabled, "destinations": copy.deepcopy(self.refs)}

    def destination(self, app: str, destination_id: str) -> dict[str, Any]:
        if destination_id not in self.destinations:
            raise IotcError(404, "NotFound", f"destination {destination_id} not found")
        return copy.deepcopy(self.destinations[destination_id])

    def has_destination(self, app: str, destination_id: str) -> bool:
        return destination_id in self.destinations

    def put_destination(self, app: str, destination_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._command("create")
        self.destinations[destination_id] = {**copy.deepcopy(body), "id": destination_id}
        self.m.stale.discard(self.fqn.lower())
        return {**body, "id": destination_id, "status": "starting"}

    def set_destinations(
        self, app: str, export_id: str, refs: list[dict[str, Any]], based_on: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        self._command("repoint")  # an edit made here lands between the adapter's read and its write
        if based_on is not None and self.refs != based_on:
            raise IotcError(409, "ConcurrentEdit", f"export {export_id}: its destinations changed; not overwritten")
        missing = [r.get("id") for r in refs if r.get("id") not in self.destinations]
        if self.refuses_unknown_ids and missing:
            raise IotcError(422, "InvalidDestination", f"export {export_id}: destinations {missing} do not exist")
        self.refs = copy.deepcopy(refs)
        return self.export(app, export_id)

    def delete_destination(self, app: str, destination_id: str) -> bool:
        self._command("delete")
        return self.destinations.pop(destination_id, None) is not None


class Harness:
    """A healer on the in-memory stand-ins, with a worker that handles due messages in order."""

    def __init__(self, services_factory: Any, adx: AdxModel, clock: FakeClock, store: MemoryStore, queue: MemoryQueue):
        self.adx, self.clock, self.store, self.queue = adx, clock, store, queue
        self.services = services_factory
        from shared.runs import Healer

        self.healer = Healer(self.services)
        self.outcomes: list[str] = []

    def deliver(self, body: str) -> str:
        from shared.domain.messages import parse_message

        outcome = self.healer.handle(parse_message(body)).status
        self.outcomes.append(outcome)
        return outcome

    def run_due(self) -> list[str]:
        """Handle every message due now (and those they send that are due now)."""
        seen: list[str] = []
        while due := self.queue.visible():
            message = due[0]
            del self.queue.messages[message.id]
            seen.append(self.deliver(message.body))
        return seen
