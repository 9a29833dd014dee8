"""Asking for a remediation: at most one start message per target in flight, whoever asks
(timer, alert webhook, HTTP, CLI). The claim is an ETag-guarded write on the target's state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.messages import Trigger, new_run
from shared.runs import Services
from shared.storage import TargetState
from shared.targets import Target


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
) -> Request:
    """Enqueue a start for `target` unless it is escalated, in progress, cooling down or queued."""
    now = services.clock()
    msg = new_run(target.key, trigger, correlation_id, reason[:500])
    hold = timedelta(seconds=services.settings.lease_seconds)

    def claim(state: TargetState) -> None:
        reason = state.why_busy(now, manual=manual)
        if reason:
            raise _Skip(reason)
        state.queued_until = now + hold
        state.queued_run = msg.run_id

    try:
        services.store.update(target.key, claim)
    except _Skip as skip:
        return Request(target.key, False, "", str(skip))
    services.queue.send(msg.to_json())
    return Request(target.key, True, msg.run_id, "queued")
