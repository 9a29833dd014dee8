"""Asking for a remediation: at most one start message per target in flight, whoever asks
(timer, alert webhook, HTTP, CLI). The claim is an ETag-guarded write on the target's state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.domain.diagnosis import Evidence
from shared.domain.messages import Trigger, carried, new_run
from shared.domain.state import TargetState
from shared.domain.targets import Target
from shared.runs import Services


class _Skip(Exception):
    pass


@dataclass(frozen=True)
class Request:
    target: str
    queued: bool
    run_id: str
    reason: str


def request_remediation(
    services: Services,
    target: Target,
    trigger: Trigger,
    correlation_id: str | None = None,
    reason: str = "",
    *,
    manual: bool = False,
    evidence: list[Evidence] | None = None,
) -> Request:
    """Enqueue a start for `target` unless it is escalated, in progress, cooling down or queued.
    Manual requests skip the cooldown but come at most once per HEALER_MANUAL_HEAL_MIN_INTERVAL_SECONDS
    per target, whoever holds a key."""
    now = services.clock()
    signals = carried([(e.source, e.code, e.message) for e in evidence or []])
    msg = new_run(target.key, trigger, correlation_id, reason[:500], signals)
    hold = timedelta(seconds=services.settings.lease_seconds)
    interval = timedelta(seconds=services.settings.manual_heal_min_interval_seconds)

    def claim(state: TargetState) -> None:
        reason = state.why_busy(now, manual=manual)
        if reason:
            raise _Skip(reason)
        if manual:
            if state.last_manual_at and now < state.last_manual_at + interval:
                raise _Skip(
                    f"a manual heal was queued at {state.last_manual_at:%H:%M:%S}Z; the next may come after "
                    f"{state.last_manual_at + interval:%H:%M:%S}Z (HEALER_MANUAL_HEAL_MIN_INTERVAL_SECONDS)"
                )
            state.last_manual_at = now
        state.queued_until = now + hold
        state.queued_run = msg.run_id

    try:
        services.store.update(target.key, claim)
    except _Skip as skip:
        return Request(target.key, False, "", str(skip))
    try:
        services.queue.send(msg.to_json())
    except Exception:
        # Nothing was queued: give the claim back, so the caller's retry (an action group's, the
        # next timer run) is not told "already queued" for a message that does not exist.
        def unclaim(state: TargetState) -> None:
            if state.queued_run == msg.run_id:
                state.queued_until, state.queued_run = None, ""

        services.store.update(target.key, unclaim)
        raise
    return Request(target.key, True, msg.run_id, "queued")
