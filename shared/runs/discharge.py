"""Discharging obligations from their records alone (no configuration, no run in memory), each
under a hand of the sweep's own: re-add an overdue snapshot, re-check a re-add until no drop of
its run can land, re-enable an export, settle a destination copy."""

from __future__ import annotations

from shared.domain.state import PendingCopy, PendingEnable, PendingReadd, TargetState
from shared.runs import obligations
from shared.runs.fencing import stand_in
from shared.runs.recovery import message
from shared.runs.remedies.recreate import settle_copy
from shared.runs.remedies.refresh import ReaddAbandoned, ReaddBlocked, escalate_blocked, readd_roles
from shared.runs.remedy import Machine, Step


def recheck_readd(healer: Machine, state: TargetState, pending: PendingReadd) -> list[str]:
    """A re-add that was done but not settled: re-apply it (a late drop may have landed since),
    and discharge the record once no drop of its run can land any more."""
    run = stand_in(healer.services, state.key, pending.run_id)
    if run.acquire(exclusive=True) is None:
        return []
    try:
        readd_roles(healer.services, run, pending, None)
    except ReaddBlocked as blocked:
        escalate_blocked(
            healer.services, state.key, run.holder, str(blocked), abandon=isinstance(blocked, ReaddAbandoned)
        )
        return [f"{state.key}: {blocked}"]
    now = healer.services.clock()

    def checked(st: TargetState) -> None:
        obligations.readded(st, pending.run_id, now)
        obligations.succeeded(st)
        if st.pending_readd is None and st.escalated and st.escalation_reason.startswith("re-add pending"):
            st.escalated, st.escalation_reason = False, ""
        if st.lease_owner == run.holder:
            st.lease_owner, st.lease_until = "", None

    after = healer.services.store.update(state.key, checked, name=f"{run.holder}:recheck")
    if after.pending_readd is None:
        return [f"{state.key}: discharged the re-add of run {pending.run_id}"]
    return []


def reenable(healer: Machine, state: TargetState, enable: PendingEnable) -> list[str]:
    """Re-enable an export from its record alone (configured, discovered or since removed)."""
    run = stand_in(healer.services, state.key, enable.run_id)
    if run.acquire(exclusive=True) is None:
        return []
    iotc = healer.services.iotc
    answer = run.effect(
        "enable-export",
        None,
        lambda: iotc.set_enabled(enable.app, enable.export_id, True),
        app=enable.app,
        export=enable.export_id,
    )
    now = healer.services.clock()
    observed = not isinstance(answer, dict) or answer.get("enabled", True) is not False

    def enabled(st: TargetState) -> None:
        if observed:
            obligations.enabled(st, now)
            obligations.succeeded(st)
        if st.lease_owner == run.holder:
            st.lease_owner, st.lease_until = "", None

    after = healer.services.store.update(state.key, enabled, name=f"{run.holder}:reenable")
    return [f"{state.key}: re-enabled the export"] + (
        [f"{state.key}: discharged the re-enable of run {enable.run_id}"] if after.pending_enable is None else []
    )


def settle(healer: Machine, state: TargetState, owed: PendingCopy) -> list[str]:
    """A destination copy whose run has moved on: finish its re-point or delete it (again, if a
    late create landed), from the record alone; discharged once settled."""
    run = stand_in(healer.services, state.key, owed.run_id)
    if run.acquire(exclusive=True) is None:
        return []
    try:
        did = settle_copy(healer.services, run, state.key, owed)
    finally:

        def release(st: TargetState) -> None:
            if st.lease_owner == run.holder:
                st.lease_owner, st.lease_until = "", None

        healer.services.store.update(state.key, release, name=f"{run.holder}:release")
    after = healer.services.store.load(state.key)
    lines = [f"{state.key}: {did} (run {owed.run_id})"]
    if after.pending_copy is None:
        lines.append(f"{state.key}: discharged the destination copy of run {owed.run_id}")
    return lines


def readd_overdue(healer: Machine, state: TargetState, pending: PendingReadd) -> tuple[list[str], bool]:
    msg = message(state.key, pending.run_id, "readd", "re-add overdue", pending.correlation_id)
    step = Step(healer, stand_in(healer.services, state.key, pending.run_id), healer.known(state.key, state), msg)
    if step.run.acquire(exclusive=True) is None:
        return [], False  # the run itself is re-adding right now
    outcome = healer.finish_readd(step, pending, verb="recovery sweep: re-added overdue")
    if outcome.status == "escalated":
        return [f"{state.key}: {outcome.detail}"], False  # escalate_blocked backed off already
    return [f"{state.key}: re-added overdue snapshot of run {pending.run_id}"], False
