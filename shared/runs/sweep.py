"""The recovery sweep: the first thing every timer run does. It re-adds every dropped principal
whose re-add is overdue, from the state record alone (configured, discovered or since removed),
finishes a destination re-creation whose run stopped half-way (its messages lost: a copy left
behind would count against IoT Central's 10 destinations per app), queues again a backfill whose
next message was lost (a worker that died between handing over from verification and queueing the
backfill), queues again a run whose export toggle died half-way with no message left to resume
it, and re-enables exports the healer left disabled. Each target is isolated: one that fails is
escalated with the reason and retried next time, and never stops the others."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.messages import RemediationMessage
from shared.runs.backfill import Backfill, resolve_window
from shared.runs.base import TOGGLING, RunStopped, Services
from shared.runs.fencing import Run
from shared.runs.machine import Healer
from shared.runs.recreate import RecreateDestination
from shared.runs.refresh import escalate_blocked
from shared.runs.remedy import Step
from shared.storage import PendingReadd, TargetState

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)


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


def sweep(healer: Healer, states: list[TargetState] | None = None) -> SweepReport:
    services = healer.s
    report = SweepReport()
    now, grace = services.clock(), services.settings.sweep_grace_seconds
    for state in services.store.all_states() if states is None else states:
        try:
            if state.pending_readd is not None and not state.pending_readd.abandoned and overdue(state, now, grace):
                report.overdue.append(state.key)
                log.error(
                    "%s: re-add of run %s overdue since %s; the sweep re-adds it",
                    state.key,
                    state.pending_readd.run_id,
                    state.pending_readd.due.isoformat(),
                )
                report.done.extend(_readd(healer, state, state.pending_readd))
            if state.phase in RecreateDestination.phases and stalled(state, now, grace):
                report.done.extend(_finish_recreate(healer, state))
            if state.phase in Backfill.phases and stalled(state, now, grace):
                report.done.extend(_continue_backfill(healer, state))
            if state.phase == TOGGLING and stalled(state, now, grace):
                report.done.extend(_resume_toggle(healer, state))
            if state.pending_enable and not state.leased(now):
                target = healer.known(state.key, state)
                if target is not None:
                    services.iotc.set_enabled(target.app, target.export_id, True)
                    services.store.update(state.key, lambda st: setattr(st, "pending_enable", False))
                    report.done.append(f"{state.key}: re-enabled the export")
        except RunStopped as stopped:  # someone else is on it, or finished it meanwhile
            log.info("sweep of %s stood back: %s", state.key, stopped)
        except Exception as exc:  # one target's failure never stops the sweep of the others
            log.exception("sweep of %s failed", state.key)
            report.errors.append(f"{state.key}: {type(exc).__name__}: {exc}"[:500])
            if state.pending_readd is not None:
                try:
                    reason = f"re-add pending: {type(exc).__name__}: {exc}"
                    escalate_blocked(services, state.key, None, reason)
                except Exception:
                    log.exception("could not escalate %s", state.key)
    return report


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
    if target is None:
        return []
    step = Step(healer, _stand_in(healer, state.key, state.run_id), target, msg)
    if step.run.acquire(exclusive=True) is None:
        return []
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


def _readd(healer: Healer, state: TargetState, pending: PendingReadd) -> list[str]:
    msg = _message(state.key, pending.run_id, "readd", "re-add overdue", pending.correlation_id)
    step = Step(healer, _stand_in(healer, state.key, pending.run_id), healer.known(state.key, state), msg)
    if step.run.acquire(exclusive=True) is None:
        return []  # the run itself is re-adding right now
    outcome = healer.finish_readd(step, pending, verb="recovery sweep: re-added overdue")
    if outcome.status == "escalated":
        return [f"{state.key}: {outcome.detail}"]
    return [f"{state.key}: re-added overdue snapshot of run {pending.run_id}"]
