"""Every phase that is not at rest has a recovery owner: what the sweep does for a run whose lease
lapsed in that phase (RECOVERY; a test fails when a phase has none). A stalled run is released,
finished from its record, or handed a message of its own; a refresh's phases are owned by their
re-add record."""

from __future__ import annotations

from collections.abc import Callable

from shared.domain.messages import RemediationMessage
from shared.domain.state import TargetState
from shared.runs import phases
from shared.runs.backfill import resolve_window
from shared.runs.fencing import Run, stand_in
from shared.runs.outcome import Status
from shared.runs.remedies.recreate import RecreateDestination
from shared.runs.remedy import Machine, Step


def recover(healer: Machine, state: TargetState) -> list[str]:
    """What the recovery owner of the state's phase does for a run whose lease lapsed."""
    owner = RECOVERY.get(state.phase)
    return owner(healer, state) if owner is not None else []


def message(
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


def _queue_again(healer: Machine, state: TargetState, msg: RemediationMessage, extra_s: float = 0) -> bool:
    """Hand a stalled run to a message of its own: the run's lease is taken under its own name,
    so later sweeps leave the run to this message. False when the target is unknown or held."""
    if healer.known(state.key, state) is None:
        return False
    if Run(healer.services, state.key, state.run_id).acquire(extra_s=extra_s, exclusive=True) is None:
        return False
    healer.services.queue.send(msg.to_json())
    return True


def _finish_recreate(healer: Machine, state: TargetState) -> list[str]:
    msg = message(state.key, state.run_id, "start", "finish re-creating the destination")
    target = healer.known(state.key, state)
    step = Step(healer, stand_in(healer.services, state.key, state.run_id), target, msg)
    if step.run.acquire(exclusive=True) is None:
        return []
    if target is None or healer.services.settings.observe_only or state.escalated:  # only discharge: no new change
        did = RecreateDestination.discharge(step, state)
        step.run.finish(_skipped)
        return [f"{state.key}: {did} (run {state.run_id})"]
    RecreateDestination().resume(step, state)
    return [f"{state.key}: finished re-creating the destination (run {state.run_id})"]


def _resume_toggle(healer: Machine, state: TargetState) -> list[str]:
    """Queue the run again when whoever toggled its export died half-way (the export may be off;
    the run's own message resumes the toggle: disable, enable, then verification). The run's
    lease is taken under its own name so later sweeps leave the toggle to this message."""
    if not _queue_again(healer, state, message(state.key, state.run_id, "start", "finish toggling the export")):
        return []
    return [f"{state.key}: queued run {state.run_id} again to finish toggling the export"]


def _continue_backfill(healer: Machine, state: TargetState) -> list[str]:
    """Queue the stalled backfill's next invocation. Every invocation renews the run's lease for
    its budget, so a lapsed one means no message is being worked on; the run takes its lease
    again here, so later sweeps leave it to this message. The backfill's progress is in the
    journal: the invocation resumes at the window it stopped in (and measures the gap first if
    that was never done)."""
    gap = state.gap or {}
    start = end = None
    if gap.get("start") and gap.get("end"):  # measured (or asked for by hand)
        start, end = resolve_window(None, None, state, healer.services.clock())
    msg = message(
        state.key,
        state.run_id,
        "backfill",
        "continue the backfill",
        window_start=start,
        window_end=end,
        backfill_mode="on" if gap.get("backfill") == "on" else "plan",
    )
    if not _queue_again(healer, state, msg, healer.services.settings.backfill_invocation_seconds):
        return []
    return [f"{state.key}: queued the backfill of run {state.run_id} again"]


def _skipped(state: TargetState) -> None:
    state.last_outcome = Status.SKIPPED.value


def _release(healer: Machine, state: TargetState) -> list[str]:
    """Planned, nothing acted: end the run (a later start plans afresh)."""
    run = stand_in(healer.services, state.key, state.run_id)
    if run.acquire(exclusive=True) is None:
        return []
    run.finish()
    return [f"{state.key}: ended run {state.run_id}, which had planned and acted on nothing"]


def _finish_add(healer: Machine, state: TargetState) -> list[str]:
    if not _queue_again(healer, state, message(state.key, state.run_id, "start", "finish adding the role")):
        return []
    return [f"{state.key}: queued run {state.run_id} again to finish its add"]


def _verify_again(healer: Machine, state: TargetState) -> list[str]:
    """Verifying with nobody on it (its message lost, or a write's answer lost): verify again."""
    msg = message(state.key, state.run_id, "verify", "verify again", action_at=state.phase_at)
    if not _queue_again(healer, state, msg, healer.services.settings.verify_poll_seconds):
        return []
    return [f"{state.key}: queued the verification of run {state.run_id} again"]


def _readd_owner(healer: Machine, state: TargetState) -> list[str]:
    """A refresh's phases own a re-add record: the sweep re-adds it once overdue (above)."""
    return []


# Every phase that is not at rest, and what the sweep does when its lease lapsed.
RECOVERY: dict[str, Callable[[Machine, TargetState], list[str]]] = {
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
