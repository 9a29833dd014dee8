"""The recovery sweep: the first thing every timer run does. Two jobs, from the state alone:

- Obligations (records: shared/runs/obligations.py; their discharge: shared/runs/discharge.py):
  re-add a dropped principal whose re-add is overdue, re-check a re-add done but not settled (a
  late drop may have landed), re-enable an export the healer disabled, settle a destination copy
  (finish its re-point or delete it) — for targets configured, discovered or since removed, in
  observe mode too — and discharge each once settled. While a discharge is refused the target
  backs off (5 s, doubling, at most 15 min).
- Recovery owners (RECOVERY in shared/runs/recovery.py, one per phase not at rest): a run whose
  lease lapsed is released, queued again, finished or verified again, as its phase says; an
  escalated run's phase is left to people (its obligations are not).

Targets are swept concurrently (HEALER_SWEEP_CONCURRENCY, at most PER_CLUSTER per cluster and per
app) and nothing new is begun once HEALER_SWEEP_BUDGET_SECONDS have passed: the rest is reported
deferred and swept next cycle. Each target is isolated: one that fails (or whose row cannot be
read) is reported, and escalated when a principal is dropped, and never stops the others."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.domain.state import TargetState
from shared.domain.targets import Target
from shared.runs import discharge, obligations, recovery
from shared.runs.base import RunStopped, Services
from shared.runs.remedies.recreate import RecreateDestination
from shared.runs.remedies.refresh import escalate_blocked
from shared.runs.remedy import Machine

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
    return state.phase in recovery.RECOVERY and stalled(state, now, grace)


def _copy_owed(state: TargetState) -> bool:
    """A copy the sweep settles: its run is no longer re-creating (that run's own phases, or their
    recovery owner, finish the re-creation first)."""
    owed = state.pending_copy
    if owed is None:
        return False
    return state.run_id != owed.run_id or state.phase not in RecreateDestination.phases


def sweep(healer: Machine, states: list[TargetState] | None = None) -> SweepReport:
    """Every target that needs it, concurrently: at most HEALER_SWEEP_CONCURRENCY at once and at
    most PER_CLUSTER per cluster and per app (IoT Central allows 20 requests/s per app; the
    adapter's own limiter paces them). No new target is begun once HEALER_SWEEP_BUDGET_SECONDS
    have passed (well inside functionTimeout): the rest is reported deferred and done next cycle."""
    services = healer.services
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


def _where(healer: Machine, state: TargetState) -> list[str]:
    """The cluster and the app a target's sweep talks to (each bounded), in a fixed order."""
    names = []
    if state.pending_readd is not None:
        names.append(f"cluster:{state.pending_readd.cluster_url}")
    elif (target := _known(healer, state)) is not None:
        names.append(f"cluster:{target.cluster_url}")
    app = state.pending_enable.app if state.pending_enable else state.key.split(":", 1)[0]
    names.append(f"app:{app}")
    return sorted(set(names))


def _known(healer: Machine, state: TargetState) -> Target | None:
    try:
        return healer.known(state.key, state)
    except Exception:
        return None


def _sweep_one(healer: Machine, state: TargetState) -> SweepReport:
    services, report = healer.services, SweepReport()
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
            lines, blocked = discharge.readd_overdue(healer, state, pending)
            report.done.extend(lines)
        elif pending is not None and not pending.abandoned and pending.readded_at is not None:
            report.done.extend(discharge.recheck_readd(healer, state, pending))
        # An escalated run is left to people: its phase is not carried on (a poisoned backfill is
        # not queued again forever), but what it owes is still discharged (a copy, a re-enable).
        escalated = services.store.load(state.key).escalated if report.done else state.escalated
        owner = not escalated or state.phase in RecreateDestination.phases
        stalled_run = state.phase in recovery.RECOVERY and stalled(state, now, grace)
        if owner and stalled_run and (pending is None or pending.readded_at):
            report.done.extend(recovery.recover(healer, state))
        if state.pending_enable is not None and not state.leased(now):
            report.done.extend(discharge.reenable(healer, state, state.pending_enable))
        if _copy_owed(state) and not state.leased(now):
            assert state.pending_copy is not None
            report.done.extend(discharge.settle(healer, state, state.pending_copy))
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
