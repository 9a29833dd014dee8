"""Remediation as a durable step machine: start → (add | snapshot → drop → wait → re-add) → verify.

Every side effect is preceded by an intent and followed by a result in the journal. A target's
state entity (ETag-guarded) holds the lease, the cooldown, the failed attempts, the escalation
flag and - between a drop and its re-add - the exact snapshot of what was dropped. Whatever a
message asks for, a pending re-add is done first: a principal is never left dropped.

The wait between drop and re-add is a queue message with a visibility delay, never a sleep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.diagnosis import AdxState, Diagnosis, Evidence, diagnose, healer_is_admin
from shared.iotcentral import IoTCentralAdapter, IotcError
from shared.kusto import AdxError, KustoAdapter
from shared.messages import RemediationMessage, new_run
from shared.plan import Action, Plan, make_plan
from shared.principals import INGESTING_DB_ROLES, Assignment, PrincipalRef
from shared.settings import Settings
from shared.storage import RemediationQueue, StateStore, TargetState
from shared.targets import Target
from shared.verification import verify

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UnknownTarget(ValueError):
    pass


@dataclass
class Services:
    settings: Settings
    targets: dict[str, Target]
    store: StateStore
    queue: RemediationQueue
    kusto: Callable[[str], KustoAdapter]
    iotc: IoTCentralAdapter
    clock: Callable[[], datetime] = utcnow
    # Called after every side effect and journal write; tests make it raise to simulate a crash.
    checkpoint: Callable[[str], None] = field(default=lambda name: None)
    credential: Any = None


@dataclass
class Outcome:
    status: str  # planned | healthy | waiting | healed | not-healed | escalated | skipped | recovered
    detail: str
    plan: Plan | None = None


@dataclass
class Reading:
    """Everything diagnosis read, kept so the repair reuses it instead of reading again."""

    target: Target
    adx: AdxState
    diagnosis: Diagnosis
    notes: list[str]


class Healer:
    def __init__(self, services: Services) -> None:
        self.s = services

    # ------------------------------------------------------------------ reading and planning

    def read(self, target: Target) -> Reading:
        kusto = self.s.kusto(target.cluster_url)
        notes: list[str] = []
        evidence: list[Evidence] = []
        try:
            status = self.s.iotc.status(target.app, target.export_id, target.destination_id)
            evidence = [Evidence("iotcentral", code, message) for code, message in status.all_errors()]
            if not status.enabled:
                notes.append("the export is disabled in IoT Central")
        except IotcError as exc:
            notes.append(f"IoT Central status unavailable: {exc}")
        current: PrincipalRef | None = None
        if target.iotc_resource_id:
            try:
                current = self.s.iotc.current_identity(target.iotc_resource_id)
            except IotcError as exc:
                notes.append(f"IoT Central identity unavailable from ARM: {exc}")
        principals = [p for p in (current, target.principal.ref()) if p is not None]
        adx = self._read_adx(kusto, target, principals)
        diagnosis = diagnose(target.principal.ref(), current, adx, evidence, target.database, target.table)
        diagnosis.notes.extend(notes)
        return Reading(target, adx, diagnosis, notes)

    @staticmethod
    def _read_adx(kusto: KustoAdapter, target: Target, principals: list[PrincipalRef]) -> AdxState:
        db, table = target.database, target.table
        try:
            db_rows = kusto.database_principals(db)
        except AdxError as exc:
            if exc.not_found:
                return AdxState(False, False, [], [], set())
            if exc.forbidden:  # the healer cannot even read: it is certainly not an admin
                return AdxState(True, True, [], [], set())
            raise
        own = kusto.own_roles(db)
        try:  # a policy read also proves the table exists
            rls = kusto.policy_enabled(db, table, "row_level_security")
        except AdxError as exc:
            if exc.not_found:
                return AdxState(True, False, db_rows, [], own)
            raise
        rva = kusto.policy_enabled(db, table, "restricted_view_access")
        # Table-level roles matter only when the database-level ones cannot ingest (one read saved).
        ingests = any(
            a.scope == "database" and a.role in INGESTING_DB_ROLES and a.held_by(p) for a in db_rows for p in principals
        )
        table_rows = [] if ingests else kusto.table_principals(db, table)
        return AdxState(True, True, db_rows, table_rows, own, rls, rva)

    def plan(self, target: Target, correlation_id: str = "dry-run") -> tuple[Reading, Plan]:
        reading = self.read(target)
        plan = make_plan(
            target,
            reading.diagnosis,
            toggle_export=self.s.settings.toggle_export,
            correlation_id=correlation_id,
        )
        return reading, plan

    def target(self, key: str) -> Target:
        target = self.s.targets.get(key)
        if target is None:
            discovered = self.s.store.load(key).discovered
            if discovered is None:
                raise UnknownTarget(f"target={key!r} is not configured or discovered")
            target = Target.model_validate(discovered)
        return target

    # ------------------------------------------------------------------ the step machine

    def handle(self, msg: RemediationMessage) -> Outcome:
        target = self.target(msg.target)
        state = self.s.store.load(target.key)
        if state.pending_readd:
            return self._recover(target, msg)
        if state.pending_enable and (not state.leased(self.s.clock()) or state.lease_owner == msg.run_id):
            self._reenable(target, msg.run_id)
        if msg.step == "start":
            return self._start(target, msg, state)
        if state.last_run_id == msg.run_id and state.lease_owner != msg.run_id:
            # A duplicate of a step whose run already ended (a redelivered message can fork the
            # verification chain); carrying it on would hold the lease against the next run.
            return Outcome("skipped", f"run {msg.run_id} already ended")
        if msg.step == "readd":  # nothing pending: the re-add already happened
            return self._schedule_verify(target, msg, msg.action_at or self.s.clock())
        return self._verify(target, msg)

    def _journal(self, target: Target, run_id: str, step: str, status: str, **data: Any) -> None:
        self.s.store.write_journal(target.key, run_id, step, status, data, self.s.clock())
        self.s.checkpoint(f"journal:{step}:{status}")

    def _history(self, target: Target, msg: RemediationMessage, outcome: Outcome, plan: Plan | None = None) -> Outcome:
        record: dict[str, Any] = {
            "Target": str(target),
            "Trigger": msg.trigger,
            "CorrelationId": msg.correlation_id,
            "Mode": self.s.settings.mode,
            "Outcome": outcome.status,
            "Detail": outcome.detail[:8000],
        }
        if plan is not None:
            record["Diagnosis"] = str(plan.diagnosis.kind)
            record["Summary"] = plan.diagnosis.summary[:2000]
            record["Actions"] = [a.to_dict() for a in plan.actions]
            record["Notes"] = plan.diagnosis.notes
        self.s.store.append_history(target.key, msg.run_id, record, self.s.clock())
        log.info("remediation %s %s: %s (%s)", target.key, msg.run_id, outcome.status, outcome.detail)
        return outcome

    def _hold(self, target: Target, run_id: str, extra_s: float = 0) -> TargetState | None:
        hold = timedelta(seconds=self.s.settings.lease_seconds + extra_s)
        return self.s.store.acquire(target.key, run_id, self.s.clock(), hold)

    def _finish(self, target: Target, run_id: str, mutate: Callable[[TargetState], None]) -> None:
        def apply(state: TargetState) -> None:
            mutate(state)
            state.last_run_id = run_id
            if state.lease_owner == run_id:
                state.lease_owner, state.lease_until = "", None

        self.s.store.update(target.key, apply)

    def _start(self, target: Target, msg: RemediationMessage, state: TargetState) -> Outcome:
        settings, now = self.s.settings, self.s.clock()
        if state.escalated:
            return self._history(target, msg, Outcome("skipped", f"escalated: {state.escalation_reason}"))
        manual = msg.trigger in ("http", "cli")
        if state.cooldown_until and now < state.cooldown_until and state.lease_owner != msg.run_id and not manual:
            return self._history(
                target, msg, Outcome("skipped", f"cooling down until {state.cooldown_until:%H:%M:%S}Z")
            )
        window = now - timedelta(seconds=settings.attempt_window_seconds)
        if len([a for a in state.attempts if a > window]) >= settings.max_attempts:
            reason = f"{settings.max_attempts} failed attempts within {settings.attempt_window_seconds}s"
            self.s.store.update(target.key, lambda st: _escalate(st, reason))
            return self._history(target, msg, Outcome("escalated", reason))
        if self._hold(target, msg.run_id) is None:
            return self._history(target, msg, Outcome("skipped", "another remediation holds this target"))
        resumed = self._resume_add(target, msg)
        if resumed is not None:
            return resumed

        reading, plan = self.plan(target, msg.correlation_id)
        self._journal(target, msg.run_id, "plan", "done", plan=plan.to_dict(), trigger=msg.trigger)
        kind = str(plan.diagnosis.kind)
        if settings.observe_only:
            self._finish(target, msg.run_id, lambda st: _set(st, last_outcome="planned", last_diagnosis=kind))
            return self._history(
                target, msg, Outcome("planned", "observe mode: plan recorded, nothing changed", plan), plan
            )
        if plan.escalates:
            reason = plan.actions[0].reason
            self._finish(target, msg.run_id, lambda st: _escalate(st, reason, kind))
            return self._history(target, msg, Outcome("escalated", reason, plan), plan)
        if not plan.actions:
            self._finish(target, msg.run_id, lambda st: _set(st, last_outcome="healthy", last_diagnosis=kind))
            return self._history(target, msg, Outcome("healthy", plan.diagnosis.summary, plan), plan)

        first = plan.actions[0]
        if first.kind == "add-role":
            return self._add(reading, msg, first, plan)
        return self._drop(reading, msg, first, plan)

    # ------------------------------------------------------------------ add

    def _add(self, reading: Reading, msg: RemediationMessage, action: Action, plan: Plan) -> Outcome:
        target = reading.target
        kusto = self.s.kusto(target.cluster_url)
        now = self.s.clock()
        self._journal(target, msg.run_id, "add", "intent", role=action.role, fqn=action.fqn, notes=action.notes)
        listing = kusto.set_role(
            target.database,
            action.role,
            action.fqn,
            present=True,
            notes=action.notes,
            current=reading.adx.database_principals,
        )
        self.s.checkpoint("effect:add")
        listed = _holds(listing, action.role, action.fqn)
        self._journal(target, msg.run_id, "add", "done", listed=listed)
        self._history(target, msg, Outcome("waiting", f"added {action.role} for {action.fqn}; verifying", plan), plan)
        return self._schedule_verify(target, msg, now)

    def _resume_add(self, target: Target, msg: RemediationMessage) -> Outcome | None:
        """A redelivered start whose add already began: finish that add, do not diagnose afresh
        (the export still reports the old failure until its next batch)."""
        journal = self.s.store.read_journal(target.key, msg.run_id)
        intent = next((r for r in journal if r["Step"] == "add" and r["Status"] == "intent"), None)
        if intent is None:
            return None
        data = intent["Data"]
        if not any(r["Step"] == "add" and r["Status"] == "done" for r in journal):
            listing = self.s.kusto(target.cluster_url).set_role(
                target.database, data["role"], data["fqn"], present=True, notes=data["notes"] or None
            )
            self.s.checkpoint("effect:add")
            self._journal(target, msg.run_id, "add", "done", listed=_holds(listing, data["role"], data["fqn"]))
        return self._schedule_verify(target, msg, datetime.fromisoformat(str(intent["At"])))

    # ------------------------------------------------------------------ refresh: snapshot → drop

    def _drop(self, reading: Reading, msg: RemediationMessage, action: Action, plan: Plan) -> Outcome:
        target, settings = reading.target, self.s.settings
        kusto = self.s.kusto(target.cluster_url)
        if not healer_is_admin(reading.adx.healer_roles):  # rule 1: never drop what cannot be put back
            raise RuntimeError("refusing to drop: the healer is not Database Admin")
        snapshot = [_snap(a) for a in action.snapshot]
        now = self.s.clock()
        due = now + timedelta(seconds=settings.refresh_wait_seconds)
        self._journal(target, msg.run_id, "snapshot", "done", snapshot=snapshot)
        pending = {
            "run_id": msg.run_id,
            "snapshot": snapshot,
            "dropped_at": now.isoformat(),
            "due": due.isoformat(),
            "correlation_id": msg.correlation_id,
            "trigger": msg.trigger,
        }
        self.s.store.update(
            target.key, lambda st: _set(st, pending_readd=pending, last_diagnosis=str(plan.diagnosis.kind))
        )
        self.s.checkpoint("state:pending-readd")
        listing: list[Assignment] | None = reading.adx.database_principals
        for item in snapshot:
            step = f"drop-{item['role']}"
            self._journal(target, msg.run_id, step, "intent", **item)
            listing = kusto.set_role(target.database, item["role"], item["fqn"], present=False, current=listing)
            self.s.checkpoint(f"effect:{step}")
            self._journal(target, msg.run_id, step, "done", listed=_holds(listing, item["role"], item["fqn"]))
        self._hold(target, msg.run_id, extra_s=settings.refresh_wait_seconds)
        self.s.queue.send(msg.next("readd", action_at=now).to_json(), delay_s=settings.refresh_wait_seconds)
        self.s.checkpoint("enqueue:readd")
        detail = (
            f"dropped {', '.join(i['role'] for i in snapshot)} of {action.snapshot[0].fqn}; re-add due {due:%H:%M:%S}Z"
        )
        return self._history(target, msg, Outcome("waiting", detail, plan), plan)

    # ------------------------------------------------------------------ re-add (also the recovery path)

    def readd_pending(self, target: Target) -> tuple[str, bool] | None:
        """Re-add the pending snapshot exactly; returns (run id, listed) or None if nothing was pending."""
        state = self.s.store.load(target.key)
        pending = state.pending_readd
        if not pending:
            return None
        kusto = self.s.kusto(target.cluster_url)
        run_id = str(pending["run_id"])
        listed = True
        for item in pending["snapshot"]:
            step = f"readd-{item['role']}"
            self._journal(target, run_id, step, "intent", **item)
            # set_role reads first: a re-add that landed before a crash is not sent twice.
            listing = kusto.set_role(
                target.database, item["role"], item["fqn"], present=True, notes=item["notes"] or None
            )
            self.s.checkpoint(f"effect:{step}")
            ok = _holds(listing, item["role"], item["fqn"])
            listed = listed and ok
            self._journal(target, run_id, step, "done", listed=ok)
        self.s.store.update(target.key, lambda st: _set(st, pending_readd=None))
        self.s.checkpoint("state:readd-cleared")
        return run_id, listed

    def _recover(self, target: Target, msg: RemediationMessage) -> Outcome:
        state = self.s.store.load(target.key)
        pending = state.pending_readd or {}
        run_id = str(pending.get("run_id", msg.run_id))
        owner_msg = (
            msg
            if run_id == msg.run_id
            else msg.model_copy(
                update={
                    "run_id": run_id,
                    "correlation_id": str(pending.get("correlation_id", msg.correlation_id)),
                }
            )
        )
        self._hold(target, run_id)
        done = self.readd_pending(target)
        dropped_at = datetime.fromisoformat(str(pending.get("dropped_at"))) if pending.get("dropped_at") else None
        verb = "re-added" if msg.step == "readd" and run_id == msg.run_id else "recovered: re-added first"
        self._history(
            target,
            owner_msg,
            Outcome(
                "waiting",
                f"{verb} {len(pending.get('snapshot', []))} role(s); listed again: {bool(done and done[1])}",
            ),
        )
        outcome = self._schedule_verify(target, owner_msg, dropped_at or self.s.clock())
        if run_id != msg.run_id:
            self._history(target, msg, Outcome("skipped", f"superseded: finished run {run_id} first"))
        return outcome

    # ------------------------------------------------------------------ export toggle and verify

    def _toggle_export(self, target: Target, run_id: str) -> None:
        self._journal(target, run_id, "toggle", "intent")
        self.s.store.update(target.key, lambda st: _set(st, pending_enable=True))
        self.s.iotc.set_enabled(target.app, target.export_id, False)
        self.s.checkpoint("effect:disable-export")
        self.s.iotc.set_enabled(target.app, target.export_id, True)
        self.s.checkpoint("effect:enable-export")
        self.s.store.update(target.key, lambda st: _set(st, pending_enable=False))
        self._journal(target, run_id, "toggle", "done")

    def _reenable(self, target: Target, run_id: str) -> None:
        """An export the healer disabled is enabled again before anything else happens."""
        self._journal(target, run_id, "reenable", "intent")
        self.s.iotc.set_enabled(target.app, target.export_id, True)
        self.s.store.update(target.key, lambda st: _set(st, pending_enable=False))
        self._journal(target, run_id, "reenable", "done")

    def _schedule_verify(self, target: Target, msg: RemediationMessage, action_at: datetime) -> Outcome:
        settings = self.s.settings
        if settings.toggle_export and not self._journal_has(target, msg.run_id, "toggle", "done"):
            self._toggle_export(target, msg.run_id)
        until = self.s.clock() + timedelta(seconds=settings.verify_deadline_seconds)
        self._hold(target, msg.run_id, extra_s=settings.verify_poll_seconds)
        self.s.queue.send(
            msg.next("verify", action_at=action_at, verify_until=until).to_json(),
            delay_s=settings.verify_poll_seconds,
        )
        self.s.checkpoint("enqueue:verify")
        return Outcome("waiting", f"verification scheduled until {until:%H:%M:%S}Z")

    def _journal_has(self, target: Target, run_id: str, step: str, status: str) -> bool:
        return any(r["Step"] == step and r["Status"] == status for r in self.s.store.read_journal(target.key, run_id))

    def _verify(self, target: Target, msg: RemediationMessage) -> Outcome:
        settings, now = self.s.settings, self.s.clock()
        journal = self.s.store.read_journal(target.key, msg.run_id)
        changes = [
            r for r in journal if r["Status"] == "done" and (r["Step"] == "add" or r["Step"].startswith("readd-"))
        ]
        listed = bool(changes) and all(r["Data"].get("listed") for r in changes)
        action_at = msg.action_at or now
        result = verify(target, self.s.kusto(target.cluster_url), self.s.iotc, action_at, listed)
        self._journal(target, msg.run_id, "verify", "done", healed=result.healed, detail=result.detail)
        if result.healed:
            cooldown = now + timedelta(seconds=settings.cooldown_seconds)
            self._finish(target, msg.run_id, lambda st: _set(st, last_outcome="healed", cooldown_until=cooldown))
            return self._history(target, msg, Outcome("healed", result.detail))
        if msg.verify_until and now < msg.verify_until:
            self._hold(target, msg.run_id, extra_s=settings.verify_poll_seconds)
            self.s.queue.send(msg.to_json(), delay_s=settings.verify_poll_seconds)
            self.s.checkpoint("enqueue:verify-again")
            return Outcome("waiting", f"not yet: {result.detail}")
        window = now - timedelta(seconds=settings.attempt_window_seconds)

        def failed(state: TargetState) -> None:
            state.attempts = [a for a in state.attempts if a > window] + [now]
            state.last_outcome = "not-healed"
            if len(state.attempts) >= settings.max_attempts:
                _escalate(state, f"not healed after {len(state.attempts)} attempts: {result.detail}")

        self._finish(target, msg.run_id, failed)
        state = self.s.store.load(target.key)
        if state.escalated:
            return self._history(target, msg, Outcome("escalated", state.escalation_reason))
        retry = new_run(target.key, "retry", msg.correlation_id, f"retry after: {result.detail}"[:500])
        self.s.queue.send(retry.to_json(), delay_s=settings.verify_poll_seconds)
        return self._history(target, msg, Outcome("not-healed", f"{result.detail}; retry scheduled"))

    # ------------------------------------------------------------------ recovery sweep

    def sweep(self) -> list[str]:
        """Re-add every dropped principal whose re-add is overdue; re-enable exports left disabled."""
        now = self.s.clock()
        grace = timedelta(seconds=self.s.settings.sweep_grace_seconds)
        done = []
        for state in self.s.store.all_states():
            target = self.s.targets.get(state.key)
            if target is None:
                continue
            if state.pending_readd:
                due = datetime.fromisoformat(str(state.pending_readd["due"]))
                if now >= due + grace:
                    run_id = str(state.pending_readd["run_id"])
                    msg = RemediationMessage(
                        target=target.key,
                        run_id=run_id,
                        step="readd",
                        trigger="sweep",
                        reason="recovery sweep: re-add overdue",
                        correlation_id=str(state.pending_readd.get("correlation_id", run_id)),
                    )
                    self._recover(target, msg)
                    done.append(f"{target.key}: re-added overdue snapshot of run {run_id}")
            if state.pending_enable and not state.leased(now):
                self._reenable(target, state.last_run_id or "sweep")
                done.append(f"{target.key}: re-enabled the export")
        return done


# ---------------------------------------------------------------------- small helpers


def _set(state: TargetState, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(state, name, value)


def _escalate(state: TargetState, reason: str, diagnosis: str = "") -> None:
    state.escalated = True
    state.escalation_reason = reason[:1000]
    state.last_outcome = "escalated"
    if diagnosis:
        state.last_diagnosis = diagnosis


def _snap(assignment: Assignment) -> dict[str, str]:
    return {"role": assignment.role, "fqn": assignment.fqn, "notes": assignment.notes}


def _holds(listing: list[Assignment], role: str, fqn: str) -> bool:
    return any(a.scope == "database" and a.role == role and a.fqn.lower() == fqn.lower() for a in listing)
