"""Poison: a message that failed on every one of the host's deliveries (host.json
`maxDequeueCount`) goes to `<queue>-poison`, where nothing reads it. Its last delivery escalates
the run instead, once: the target is marked escalated with the reason, people are told (one
incident per run), and the run's obligations stay with the recovery sweep, which discharges them
from their records whatever happens to the message."""

from __future__ import annotations

import logging

from shared.domain.messages import RemediationMessage
from shared.runs.base import Services
from shared.runs.outcome import escalate

log = logging.getLogger(__name__)
# host.json extensions.queues.maxDequeueCount (a test keeps them equal).
MAX_DEQUEUE_COUNT = 5


def last_delivery(dequeue_count: int) -> bool:
    return dequeue_count >= MAX_DEQUEUE_COUNT


def escalate_poisoned(services: Services, msg: RemediationMessage, error: BaseException) -> bool:
    """Escalate the run of a message on its way to the poison queue. True the first time for
    this run (a twin's poisoning, or the same message again, tells nobody twice)."""
    reason = (
        f"poisoned: run {msg.run_id} step {msg.step} failed {MAX_DEQUEUE_COUNT} times, last with "
        f"{type(error).__name__}: {error}"
    )[:1000]
    # Whether this run was poisoned before is in its journal, not in the escalation reason: a later
    # escalation of the same run (a re-add the healer cannot do) overwrites the reason.
    before = any(r["Step"] == "poisoned" for r in services.store.read_journal(msg.target, msg.run_id))
    services.store.update(msg.target, lambda state: escalate(state, reason), name=f"{msg.run_id}:poisoned")
    log.error("%s: %s", msg.target, reason)
    if before:
        return False
    services.store.write_journal(msg.target, msg.run_id, "poisoned", "done", {"reason": reason}, services.clock())
    from shared.reporting.observers import raise_incident

    raise_incident(services, "poisoned", msg.target, msg.run_id, msg.correlation_id, reason)
    return True
