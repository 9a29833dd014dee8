"""A run's history: one row per outcome (diagnosis, actions, root cause, gap), then every observer
(telemetry, notifications), none of which may break the run."""

from __future__ import annotations

import logging

from shared.domain.plan import Plan
from shared.runs.base import Outcome
from shared.runs.fencing import JournalValue
from shared.runs.remedy import Machine, Step

log = logging.getLogger(__name__)


def record(
    healer: Machine, step: Step, outcome: Outcome, plan: Plan | None = None, gap: dict[str, object] | None = None
) -> Outcome:
    msg = step.msg
    record: dict[str, JournalValue] = {
        "Target": str(step.target) if step.target else step.key,
        "Trigger": msg.trigger,
        "CorrelationId": msg.correlation_id,
        "Mode": healer.services.settings.mode,
        "Outcome": outcome.status.value,
        "Detail": outcome.detail[:8000],
    }
    if plan is not None:
        record["Diagnosis"] = str(plan.diagnosis.kind)
        record["Summary"] = plan.diagnosis.summary[:2000]
        record["Actions"] = [a.to_dict() for a in plan.actions]
        record["Notes"] = list(plan.diagnosis.notes)
    if gap is not None:
        record["Gap"] = gap
    if plan is not None and plan.diagnosis.root_cause is not None:
        record["RootCause"] = plan.diagnosis.root_cause
    healer.services.store.append_history(step.key, msg.run_id, record, healer.services.clock())
    log.info("remediation %s %s: %s (%s)", step.key, msg.run_id, outcome.status, outcome.detail)
    for observe in healer.services.observers:
        try:
            observe(step.key, msg, outcome, plan, gap)
        except Exception:  # telemetry or a notification must never break a run
            log.exception("observer failed for %s %s", step.key, msg.run_id)
    return outcome
