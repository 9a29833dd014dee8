"""What happens after every history record: the target's last root cause is remembered (for
/api/targets and `status`), metrics are recorded, and incidents are raised to people.

The remediation code only calls the observers; it knows nothing of telemetry or notifications.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from shared.reporting import telemetry
from shared.reporting.notify import Incident, Notifier

log = logging.getLogger(__name__)
telemetry_log = logging.getLogger(telemetry.TELEMETRY_LOGGER)
ENDED = {"healed", "not-healed", "escalated", "planned", "healthy"}


def install(services: Any, notifier: Notifier) -> None:

    def observe(key: str, msg: Any, outcome: Any, plan: Any, gap: dict[str, Any] | None = None) -> None:
        cause = plan.diagnosis.root_cause if plan is not None else None
        diagnosis = str(plan.diagnosis.kind) if plan is not None else ""
        if cause is not None:
            services.store.update(key, lambda st: setattr(st, "last_root_cause", cause))
        if cause is not None and cause.get("found"):
            # Shipped to Application Insights' traces (the workbook's "top root causes").
            telemetry_log.info(
                "root cause",
                extra={
                    "healer.target": key,
                    "healer.correlation_id": msg.correlation_id,
                    "healer.diagnosis": diagnosis,
                    "healer.root_cause_source": cause.get("source", ""),
                    "healer.root_cause_actor": cause.get("actor", ""),
                    "healer.root_cause_command": str(cause.get("command", ""))[:1000],
                },
            )
        if outcome.status in ENDED and not diagnosis:  # a verify step: the run's diagnosis is in the state
            diagnosis = services.store.load(key).last_diagnosis
        if outcome.status in ENDED:
            telemetry.count("healer.remediations", outcome=outcome.status, diagnosis=diagnosis, target=key)
        if outcome.status == "healed":
            started = _run_started(services, key, msg.run_id)
            if started is not None:
                telemetry.record("healer.time_to_heal", (services.clock() - started).total_seconds(), target=key)
        if msg.trigger == "sweep" and msg.step == "readd":
            telemetry.count("healer.overdue_readds", target=key)
        if outcome.status in ("backfilled", "backfill-refused") and gap:
            _backfilled(services, key, msg, outcome, gap)
        kind = ""
        if outcome.status == "escalated":
            # A re-add the healer cannot do (shared/runs/remedies/refresh.py escalate_blocked) is its own kind.
            kind = "readd-failed" if outcome.detail.startswith("re-add pending") else "escalated"
            telemetry.count("healer.escalations", target=key, diagnosis=diagnosis)
        elif getattr(outcome, "incident", ""):
            kind = str(outcome.incident)
        if kind:
            notifier.raise_incident(
                Incident(
                    kind=kind,
                    target=key,
                    run_id=msg.run_id,
                    correlation_id=msg.correlation_id,
                    summary=outcome.detail[:1000],
                    at=services.clock(),
                    detail={"diagnosis": diagnosis, "root_cause": cause, "trigger": msg.trigger},
                )
            )

    services.observers.append(observe)
    services.notifier = notifier


def _backfilled(services: Any, key: str, msg: Any, outcome: Any, gap: dict[str, Any]) -> None:
    """A finished backfill (shared/runs/backfill.py): what the gap cost, what came back, and an
    incident when data stays missing (refused, or parts that cannot be recovered)."""
    try:
        minutes = (datetime.fromisoformat(str(gap["end"])) - datetime.fromisoformat(str(gap["start"]))).total_seconds()
        minutes /= 60
    except (KeyError, ValueError):
        minutes = 0.0
    # Rows that stay missing (older than the retention, module telemetry), not fields rebuilt empty.
    lost = [str(u) for u in gap.get("unrecoverable") or [] if not str(u).startswith(("not rebuilt:", "applicationId:"))]
    refused = str(gap.get("refused") or "")
    detail = refused or "; ".join(lost)
    backfill_finished(
        services,
        key,
        msg.run_id,
        msg.correlation_id,
        minutes,
        int(gap.get("rows_sent") or 0),
        complete=not detail,
        detail=f"data not recovered: {detail}"[:1000] if detail else "",
    )


def record_escalated(services: Any) -> None:
    """A gauge per escalated target (with its reason), so "escalated now" needs no state table."""
    for state in services.store.all_states():
        if state.escalated:
            telemetry.record("healer.escalated_targets", 1, target=state.key, reason=state.escalation_reason[:200])


def raise_incident(services: Any, kind: str, key: str, run_id: str, correlation_id: str, summary: str) -> None:
    """For code outside a history record (the sweep's escalation): notify, never fail the caller."""
    if services.notifier is None:
        return
    try:
        services.notifier.raise_incident(
            Incident(kind, key, run_id, correlation_id, summary[:1000], services.clock(), {"trigger": "sweep"})
        )
    except Exception:
        log.exception("could not raise the %s incident of %s", kind, key)


def backfill_finished(
    services: Any,
    target_key: str,
    run_id: str,
    correlation_id: str,
    gap_minutes: float,
    rows_recovered: int,
    complete: bool,
    detail: str = "",
) -> None:
    """For the backfill: what the gap cost and what came back; an incomplete recovery is an incident."""
    telemetry.record("healer.data_gap_minutes", gap_minutes, target=target_key)
    telemetry.count("healer.rows_recovered", rows_recovered, target=target_key)
    if not complete:
        services.notifier.raise_incident(
            Incident(
                kind="data-not-recovered",
                target=target_key,
                run_id=run_id,
                correlation_id=correlation_id,
                summary=detail or f"{gap_minutes:.0f} min of data could not be fully recovered",
                at=services.clock(),
                detail={"gap_minutes": gap_minutes, "rows_recovered": rows_recovered},
            )
        )


def _run_started(services: Any, key: str, run_id: str) -> datetime | None:
    rows = [r for r in services.store.read_history(key, limit=50) if r.get("RunId") == run_id]
    times = [datetime.fromisoformat(str(r["At"])) for r in rows if r.get("At")]
    return min(times) if times else None
