"""The recovery sweep: the first thing every timer run does. Two jobs, from the state alone:

- Obligations (shared/runs/obligations.py): re-add a dropped principal whose re-add is overdue,
  re-check a re-add done but not settled (a late drop may have landed), re-enable an export the
  healer disabled, settle a destination copy (finish its re-point or delete it) — for targets
  configured, discovered or since removed, in observe mode too — and discharge each once settled.
  While a discharge is refused the target backs off (5 s, doubling, at most 15 min).
- Recovery owners (RECOVERY, one per phase not at rest): a run whose lease lapsed is released,
  queued again, finished or verified again, as its phase says; an escalated run's phase is left to
  people (its obligations are not).

Targets are swept concurrently (HEALER_SWEEP_CONCURRENCY, at most PER_CLUSTER per cluster and per
app) and nothing new is begun once HEALER_SWEEP_BUDGET_SECONDS have passed: the rest is reported
deferred and swept next cycle. Each target is isolated: one that fails (or whose row cannot be
read) is reported, and escalated when a principal is dropped, and never stops the others."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.messages import RemediationMessage
from shared.runs import obligations, phases
from shared.runs.backfill import resolve_window
from shared.runs.base import RunStopped, Services, Status
from shared.runs.fencing import Run
from shared.runs.remedies.recreate import RecreateDestination, settle_copy
from shared.runs.remedies.refresh import ReaddAbandoned, ReaddBlocked, escalate_blocked, readd_roles
from shared.runs.remedy import Step
from shared.state import PendingCopy, PendingEnable, PendingReadd, TargetState
from shared.targets import Target

if TYPE_CHECKING:  # the engine calls the sweep (a hand-over, the timer); the sweep only uses it
    from shared.runs.engine import Healer

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # not reached before the sweep's budget ran out
    backing_off: list[str] = field(default_factory=list)


def overdue(state: TargetState, now: datetime, grace_s: float) -> bool:
    pending = state.pending_readd
    return pending is not None and now >= pending.due + timedelta(seconds=grace_s)


def stalled(state: TargetState, now: datetime, grace_s: float) -> bool:
    """A run phase nobody works on: the lease lapsed and the phase is older than the grace."""
    if state.leased(now) or state.phase_at is None:
        return False
    return now >= state.phase_at + timedelta(seconds=grace_s)


def overdue_readds(services: Services, states: list[TargetState] | None = None) -> list[str]:
    """Targets whose dropped principal is past its re-add time plus the grace (for /api/health)."""
    now, grace = services.clock(), services.settings.sweep_grace_seconds
    return [s.key for s in (services.store.all_states() if states is None else states) if overdue(s, now, grace)]


def _work(state: TargetState, now: datetime, grace: float) -> bool:
    """Does this target need the sweep at all (cheap, from the state alone)?"""
    if state.unreadable:
        return True
    pending = state.pending_readd
    if pending is not None and not pending.abandoned and (overdue(state, now, grace) or pending.readded_at):
        return True
    if (state.pending_enable is not None or _copy_owed(state)) and not state.leased(now):
        return True
    return state.phase in RECOVERY and stalled(state, now, grace)


def _copy_owed(state: TargetState) -> bool:
    """A copy the sweep settles: its run is no longer re-creating (that run's own phases, or their
    recovery owner, finish the re-creation first)."""
    owed = state.pending_copy
    if owed is None:
        return False
    return state.run_id != owed.run_id or state.phase not in RecreateDestination.phases


def sweep(healer: Healer, states: list[TargetState] | None = None) -> SweepReport:
    """Every target that needs it, concurrently: at most HEALER_SWEEP_CONCURRENCY at once and at
    most PER_CLUSTER per cluster and per app (IoT Central allows 20 requests/s per app; the
    adapter's own limiter paces them). No new target is begun once HEALER_SWEEP_BUDGET_SECONDS
    have passed (well inside functionTimeout): the rest is reported deferred and done next cycle."""
    services = healer.s
    report = SweepReport()
    now, grace = services.clock(), services.settings.sweep_grace_seconds
    todo = [s for s in (services.store.all_states() if states is None else states) if _work(s, now, grace)]
    if not todo:
        return report
    started = time.monotonic()
    budget = services.settings.sweep_budget_seconds
    lock = threading.Lock()
    limits: dict[str, threading.BoundedSemaphore] = {}

    def limit(name: str) -> threading.BoundedSemaphore:
        with lock:
            return limits.setdefault(name, threading.BoundedSemaphore(PER_CLUSTER))

    def one(state: TargetState) -> None:
        if time.monotonic() - started >= budget or (services.clock() - now).total_seconds() >= budget:
            with lock:
                report.deferred.append(state.key)
            return
        where = _where(healer, state)
        for name in where:
            limit(name).acquire()
        try:
            part = _sweep_one(healer, state)
        finally:
            for name in reversed(where):
                limit(name).release()
        with lock:
            for name in ("done", "errors", "overdue", "backing_off"):
                getattr(report, name).extend(getattr(part, name))

    workers = max(1, min(services.settings.sweep_concurrency, len(todo)))
    if workers == 1:
        for state in todo:
            one(state)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, todo))
    if report.deferred:
        log.warning("sweep budget of %ss spent: %d target(s) deferred to the next cycle", budget, len(report.deferred))
    return report


PER_CLUSTER = 4


def _where(healer: Healer, state: TargetState) -> list[str]:
    """The cluster and the app a target's sweep talks to (each bounded), in a fixed order."""
    names = []
    if state.pending_readd is not None:
        names.append(f"cluster:{state.pending_readd.cluster_url}")
    elif (target := _known(healer, state)) is not None:
        names.append(f"cluster:{target.cluster_url}")
    app = state.pending_enable.app if state.pending_enable else state.key.split(":", 1)[0]
    names.append(f"app:{app}")
    return sorted(set(names))


def _known(healer: Healer, state: TargetState) -> Target | None:
    try:
        return healer.known(state.key, state)
    except Exception:
        return None


def _sweep_one(healer: Healer, state: TargetState) -> SweepReport:
    services, report = healer.s, SweepReport()
    now, grace = services.clock(), services.settings.sweep_grace_seconds
    if state.unreadable:  # isolated to its target: reported, nothing acts on it
        report.errors.append(f"{state.key}: state unreadable: {state.unreadable}")
        return report
    owes = state.pending_readd is not None or state.pending_enable is not None or state.pending_copy is not None
    if owes and obligations.backing_off(state, now):
        report.backing_off.append(state.key)
        assert state.retry_at is not None
        log.info("sweep of %s backs off until %s", state.key, state.retry_at.isoformat())
        return report
    blocked = False
    try:
        pending = state.pending_readd
        if pending is not None and not pending.abandoned and pending.readded_at is None and overdue(state, now, grace):
            report.overdue.append(state.key)
            log.error(
                "%s: re-add of run %s overdue since %s; the sweep re-adds it",
                state.key,
                pending.run_id,
                pending.due.isoformat(),
            )
            lines, blocked = _readd(healer, state, pending)
            report.done.extend(lines)
        elif pending is not None and not pending.abandoned and pending.readded_at is not None:
            report.done.extend(_recheck_readd(healer, state, pending))
        # An escalated run is left to people: its phase is not carried on (a poisoned backfill is
        # not queued again forever), but what it owes is still discharged (a copy, a re-enable).
        escalated = services.store.load(state.key).escalated if report.done else state.escalated
        owner = not escalated or state.phase in RecreateDestination.phases
        if owner and state.phase in RECOVERY and stalled(state, now, grace) and (pending is None or pending.readded_at):
            report.done.extend(recover(healer, state))
        if state.pending_enable is not None and not state.leased(now):
            report.done.extend(_reenable(healer, state, state.pending_enable))
        if _copy_owed(state) and not state.leased(now):
            assert state.pending_copy is not None
            report.done.extend(_settle_copy(healer, state, state.pending_copy))
    except RunStopped as stopped:  # someone else is on it, or finished it meanwhile
        log.info("sweep of %s stood back: %s", state.key, stopped)
    except Exception as exc:  # one target's failure never stops the sweep of the others
        log.exception("sweep of %s failed", state.key)
        report.errors.append(f"{state.key}: {type(exc).__name__}: {exc}"[:500])
        blocked = True
        if state.pending_readd is not None:
            try:
                reason = f"re-add pending: {type(exc).__name__}: {exc}"
                escalate_blocked(services, state.key, None, reason)
                blocked = False  # escalate_blocked backed off already
            except Exception:
                log.exception("could not escalate %s", state.key)
    if blocked and owes:
        try:
            services.store.update(state.key, lambda st: obligations.back_off(st, now))
        except Exception:
            log.exception("could not record the back-off of %s", state.key)
    return report


def _recheck_readd(healer: Healer, state: TargetState, pending: PendingReadd) -> list[str]:
    """A re-add that was done but not settled: re-apply it (a late drop may have landed since),
    and discharge the record once no drop of its run can land any more."""
    run = _stand_in(healer, state.key, pending.run_id)
    if run.acquire(exclusive=True) is None:
        return []
    try:
        readd_roles(healer.s, run, pending, None)
    except ReaddBlocked as blocked:
        escalate_blocked(healer.s, state.key, run.holder, str(blocked), abandon=isinstance(blocked, ReaddAbandoned))
        return [f"{state.key}: {blocked}"]
    now = healer.s.clock()

    def checked(st: TargetState) -> None:
        obligations.readded(st, pending.run_id, now)
        obligations.succeeded(st)
        if st.pending_readd is None and st.escalated and st.escalation_reason.startswith("re-add pending"):
            st.escalated, st.escalation_reason = False, ""
        if st.lease_owner == run.holder:
            st.lease_owner, st.lease_until = "", None

    after = healer.s.store.update(state.key, checked, name=f"{run.holder}:recheck")
    if after.pending_readd is None:
        return [f"{state.key}: discharged the re-add of run {pending.run_id}"]
    return []


def _reenable(healer: Healer, state: TargetState, enable: PendingEnable) -> list[str]:
    """Re-enable an export from its record alone (configured, discovered or since removed)."""
    run = _stand_in(healer, state.key, enable.run_id)
    if run.acquire(exclusive=True) is None:
        return []
    iotc = healer.s.iotc
    answer = run.effect(
        "enable-export",
        None,
        lambda: iotc.set_enabled(enable.app, enable.export_id, True),
        app=enable.app,
        export=enable.export_id,
    )
    now = healer.s.clock()
    observed = not isinstance(answer, dict) or answer.get("enabled", True) is not False

    def enabled(st: TargetState) -> None:
        if observed:
            obligations.enabled(st, now)
            obligations.succeeded(st)
        if st.lease_owner == run.holder:
            st.lease_owner, st.lease_until = "", None

    after = healer.s.store.update(state.key, enabled, name=f"{run.holder}:reenable")
    return [f"{state.key}: re-enabled the export"] + (
        [f"{state.key}: discharged the re-enable of run {enable.run_id}"] if after.pending_enable is None else []
    )


def _settle_copy(healer: Healer, state: TargetState, owed: PendingCopy) -> list[str]:
    """A destination copy whose run has moved on: finish its re-point or delete it (again, if a
    late create landed), from the record alone; discharged once settled."""
    run = _stand_in(healer, state.key, owed.run_id)
    if run.acquire(exclusive=True) is None:
        return []
    try:
        did = settle_copy(healer.s, run, state.key, owed)
    finally:

        def release(st: TargetState) -> None:
            if st.lease_owner == run.holder:
                st.lease_owner, st.lease_until = "", None

        healer.s.store.update(state.key, release, name=f"{run.holder}:release")
    after = healer.s.store.load(state.key)
    lines = [f"{state.key}: {did} (run {owed.run_id})"]
    if after.pending_copy is None:
        lines.append(f"{state.key}: discharged the destination copy of run {owed.run_id}")
    return lines


def recover(healer: Healer, state: TargetState) -> list[str]:
    """What the recovery owner of the state's phase does for a run whose lease lapsed."""
    owner = RECOVERY.get(state.phase)
    return owner(healer, state) if owner is not None else []


def _message(
    key: str, run_id: str, step: str, reason: str, correlation_id: str | None = None, **fields: object
) -> RemediationMessage:
    return RemediationMessage.model_validate(
        {
            "target": key,
            "run_id": run_id,
            "step": step,
            "trigger": "sweep",
            "reason": f"recovery sweep: {reason}",
            "correlation_id": run_id if correlation_id is None else correlation_id,
            **fields,
        }
    )


def _stand_in(healer: Healer, key: str, run_id: str) -> Run:
    """The sweep's hands on a run, never under the run's own name: a late message of the run must
    not act beside it (the lease goes back to the run when verification is scheduled)."""
    return Run(healer.s, key, run_id, f"sweep-{uuid.uuid4().hex[:12]}")


def _queue_again(healer: Healer, state: TargetState, msg: RemediationMessage, extra_s: float = 0) -> bool:
    """Hand a stalled run to a message of its own: the run's lease is taken under its own name,
    so later sweeps leave the run to this message. False when the target is unknown or held."""
    if healer.known(state.key, state) is None:
        return False
    if Run(healer.s, state.key, state.run_id).acquire(extra_s=extra_s, exclusive=True) is None:
        return False
    healer.s.queue.send(msg.to_json())
    return True


def _finish_recreate(healer: Healer, state: TargetState) -> list[str]:
    msg = _message(state.key, state.run_id, "start", "finish re-creating the destination")
    target = healer.known(state.key, state)
    step = Step(healer, _stand_in(healer, state.key, state.run_id), target, msg)
    if step.run.acquire(exclusive=True) is None:
        return []
    if target is None or healer.s.settings.observe_only or state.escalated:  # only discharge: no new change
        did = RecreateDestination.discharge(step, state)
        step.run.finish(_skipped)
        return [f"{state.key}: {did} (run {state.run_id})"]
    RecreateDestination().resume(step, state)
    return [f"{state.key}: finished re-creating the destination (run {state.run_id})"]


def _resume_toggle(healer: Healer, state: TargetState) -> list[str]:
    """Queue the run again when whoever toggled its export died half-way (the export may be off;
    the run's own message resumes the toggle: disable, enable, then verification). The run's
    lease is taken under its own name so later sweeps leave the toggle to this message."""
    if not _queue_again(healer, state, _message(state.key, state.run_id, "start", "finish toggling the export")):
        return []
    return [f"{state.key}: queued run {state.run_id} again to finish toggling the export"]


def _continue_backfill(healer: Healer, state: TargetState) -> list[str]:
    """Queue the stalled backfill's next invocation. Every invocation renews the run's lease for
    its budget, so a lapsed one means no message is being worked on; the run takes its lease
    again here, so later sweeps leave it to this message. The backfill's progress is in the
    journal: the invocation resumes at the window it stopped in (and measures the gap first if
    that was never done)."""
    gap = state.gap or {}
    start = end = None
    if gap.get("start") and gap.get("end"):  # measured (or asked for by hand)
        start, end = resolve_window(None, None, state, healer.s.clock())
    msg = _message(
        state.key,
        state.run_id,
        "backfill",
        "continue the backfill",
        window_start=start,
        window_end=end,
        backfill_mode="on" if gap.get("backfill") == "on" else "plan",
    )
    if not _queue_again(healer, state, msg, healer.s.settings.backfill_invocation_seconds):
        return []
    return [f"{state.key}: queued the backfill of run {state.run_id} again"]


def _readd(healer: Healer, state: TargetState, pending: PendingReadd) -> tuple[list[str], bool]:
    msg = _message(state.key, pending.run_id, "readd", "re-add overdue", pending.correlation_id)
    step = Step(healer, _stand_in(healer, state.key, pending.run_id), healer.known(state.key, state), msg)
    if step.run.acquire(exclusive=True) is None:
        return [], False  # the run itself is re-adding right now
    outcome = healer.finish_readd(step, pending, verb="recovery sweep: re-added overdue")
    if outcome.status == "escalated":
        return [f"{state.key}: {outcome.detail}"], False  # escalate_blocked backed off already
    return [f"{state.key}: re-added overdue snapshot of run {pending.run_id}"], False


def _skipped(state: TargetState) -> None:
    state.last_outcome = Status.SKIPPED.value


def _release(healer: Healer, state: TargetState) -> list[str]:
    """Planned, nothing acted: end the run (a later start plans afresh)."""
    run = _stand_in(healer, state.key, state.run_id)
    if run.acquire(exclusive=True) is None:
        return []
    run.finish()
    return [f"{state.key}: ended run {state.run_id}, which had planned and acted on nothing"]


def _finish_add(healer: Healer, state: TargetState) -> list[str]:
    if not _queue_again(healer, state, _message(state.key, state.run_id, "start", "finish adding the role")):
        return []
    return [f"{state.key}: queued run {state.run_id} again to finish its add"]


def _verify_again(healer: Healer, state: TargetState) -> list[str]:
    """Verifying with nobody on it (its message lost, or a write's answer lost): verify again."""
    msg = _message(state.key, state.run_id, "verify", "verify again", action_at=state.phase_at)
    if not _queue_again(healer, state, msg, healer.s.settings.verify_poll_seconds):
        return []
    return [f"{state.key}: queued the verification of run {state.run_id} again"]


def _readd_owner(healer: Healer, state: TargetState) -> list[str]:
    """A refresh's phases own a re-add record: the sweep re-adds it once overdue (above)."""
    return []


# Every phase that is not at rest, and what the sweep does when its lease lapsed.
RECOVERY: dict[str, Callable[[Healer, TargetState], list[str]]] = {
    phases.PLANNED: _release,
    phases.ADDING: _finish_add,
    phases.PREPARED: _finish_recreate,
    phases.CREATED: _finish_recreate,
    phases.REPOINTED: _finish_recreate,
    phases.SNAPSHOTTED: _readd_owner,
    phases.DROPPED: _readd_owner,
    phases.READDING: _readd_owner,
    phases.TOGGLING: _resume_toggle,
    phases.VERIFYING: _verify_again,
    phases.BACKFILLING: _continue_backfill,
}
