"""The incident report's model: each run's timeline (detection → diagnosis → actions → verification
→ backfill → outcome) with its evidence, built from the history and journal tables, and its summary
(time to detect, time to heal, rows lost and recovered, root cause). Pure: `collect` reads through
the store it is given."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.reporting.report.times import when

PHASES = ("detection", "diagnosis", "action", "verification", "backfill", "outcome")


@dataclass
class Event:
    at: str
    phase: str  # one of PHASES
    title: str
    detail: str = ""
    evidence: list[str] = field(default_factory=list)


@dataclass
class ReportedRun:
    target: str
    run_id: str
    correlation_id: str
    trigger: str
    diagnosis: str
    outcome: str
    started: str
    root_cause: dict[str, Any] | None
    events: list[Event]
    gap: dict[str, Any] | None = None  # the measured data gap and its backfill (history's Gap)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "run_id": self.run_id,
            "correlation_id": self.correlation_id,
            "trigger": self.trigger,
            "diagnosis": self.diagnosis,
            "outcome": self.outcome,
            "started": self.started,
            "root_cause": self.root_cause,
            "events": [e.__dict__ for e in self.events],
            "gap": self.gap,
            "summary": summary(self),
        }


def _json(value: Any, default: Any) -> Any:
    if isinstance(value, str) and value:
        try:
            return json.loads(value)
        except ValueError:
            return default
    return value if value is not None else default


def _phase(step: str) -> str:
    if step == "plan":
        return "diagnosis"
    if step == "verify":
        return "verification"
    if step.startswith("backfill"):
        return "backfill"
    return "action"


def _journal_event(row: dict[str, Any]) -> Event:
    step, status, data = str(row["Step"]), str(row["Status"]), row.get("Data") or {}
    if step == "plan":
        plan = data.get("plan", {})
        diagnosis = plan.get("diagnosis", {})
        actions = ", ".join(a.get("action", "") for a in plan.get("actions", []))
        return Event(
            str(row["At"]),
            "diagnosis",
            f"diagnosed {diagnosis.get('kind', '')}; plan: {actions or 'nothing'}",
            str(diagnosis.get("summary", "")),
            [str(e) for e in diagnosis.get("evidence", [])] + [f"note: {n}" for n in diagnosis.get("notes", [])],
        )
    if step == "backfill" and status == "progress":
        return Event(str(row["At"]), "backfill", *_backfill_progress(data))
    shown = {k: v for k, v in data.items() if k not in ("plan",)}
    detail = "; ".join(f"{k}={v}" for k, v in shown.items())
    return Event(str(row["At"]), _phase(step), f"{step} {status}", detail)


def _backfill_progress(data: dict[str, Any]) -> tuple[str, str, list[str]]:
    """The backfill engine's progress entry as people read it: title, detail, notes."""
    state = "refused" if data.get("refused") else ("done" if data.get("done") else "in progress")
    ingested = f", {data.get('rows_sent', 0)} ingested ({data.get('ingestion') or 'nothing sent'})"
    detail = (
        f"{data.get('windows', 0)} window(s), {data.get('queries', 0)} query API request(s) over "
        f"{data.get('start', '?')}..{data.get('end', '?')}: {data.get('rows_found', 0)} row(s) the export would "
        f"have written, {data.get('rows_present', 0)} already present"
        + (ingested if data.get("mode") == "on" else " (plan only: nothing ingested)")
    )
    notes = [f"refused: {data['refused']}"] if data.get("refused") else []
    notes += [f"note: {n}" for n in data.get("unrecoverable") or []]
    return f"backfill {state}", detail, notes


def build_runs(history: list[dict[str, Any]], journal: list[dict[str, Any]]) -> list[ReportedRun]:
    """Runs newest first; each with its events in time order."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in history:
        by_run.setdefault(str(row.get("RunId", "")), []).append(row)
    steps: dict[str, list[dict[str, Any]]] = {}
    for row in journal:
        steps.setdefault(str(row.get("RunId", "")), []).append(row)
    runs = []
    for run_id, unordered in by_run.items():
        rows = sorted(unordered, key=lambda r: str(r["At"]))
        first, last = rows[0], rows[-1]
        cause: dict[str, Any] | None = None
        gap: dict[str, Any] | None = None
        diagnosis = ""
        for row in rows:
            diagnosis = str(row.get("Diagnosis") or diagnosis)
            cause = _json(row.get("RootCause"), None) or cause
            found = _json(row.get("Gap"), None)
            gap = {**(gap or {}), **found} if isinstance(found, dict) else gap
        events = [_journal_event(r) for r in steps.get(run_id, [])]
        plan_at = next((e.at for e in events if e.phase == "diagnosis"), str(first["At"]))
        if cause:
            events.append(Event(plan_at, "diagnosis", "root cause", str(cause.get("summary", ""))))
        began = min([str(first["At"])] + [e.at for e in events])
        events.append(
            Event(
                began,
                "detection",
                f"started by {first.get('Trigger') or 'unknown'}",
                f"correlation id {first.get('CorrelationId', '')}",
            )
        )
        for row in rows:
            events.append(Event(str(row["At"]), "outcome", str(row.get("Outcome", "")), str(row.get("Detail", ""))))
        events.sort(key=lambda e: (e.at, PHASES.index(e.phase)))
        runs.append(
            ReportedRun(
                target=str(first.get("PartitionKey", "")),
                run_id=run_id,
                correlation_id=str(first.get("CorrelationId", "")),
                trigger=str(first.get("Trigger", "")),
                diagnosis=diagnosis,
                outcome=str(last.get("Outcome", "")),
                started=str(first["At"]),
                root_cause=cause,
                events=events,
                gap=gap,
            )
        )
    return sorted(runs, key=lambda r: r.started, reverse=True)


def collect(store: Any, target: str | None = None, limit: int = 200) -> list[ReportedRun]:
    history = store.read_history(target, limit=limit)
    keys = sorted({str(r["PartitionKey"]) for r in history})
    journal = [row for key in keys for row in store.read_journal(key)]
    return build_runs(history, journal)


def summary(run: ReportedRun) -> dict[str, Any]:
    """Time to detect (the gap's start to the run's start), time to heal (the run's start to its
    healed verdict), rows lost (missing when the gap was measured) and recovered (ingested by the
    backfill), and the root cause. None where the run does not tell."""
    started = when(run.events[0].at) if run.events else when(run.started)
    gap = run.gap or {}
    gap_start = when(gap.get("start"))
    healed = next((when(e.at) for e in run.events if e.phase == "outcome" and e.title == "healed"), None)
    diagnosed = any(e.phase == "diagnosis" for e in run.events)  # a healing run, not a backfill alone
    detect = None
    if diagnosed and started and gap_start and gap_start <= started:
        detect = (started - gap_start).total_seconds()
    heal = (healed - started).total_seconds() if healed and started else None
    missing = gap.get("rows_missing")
    # The gap as measured names the mode `backfill` and the count rows_ingested; a backfill's own
    # record (its progress) `mode` and rows_sent.
    sent = gap.get("rows_ingested", gap.get("rows_sent"))
    recovered = sent if (gap.get("backfill") or gap.get("mode")) == "on" else (0 if "rows_missing" in gap else None)
    return {
        "time_to_detect_s": detect,
        "time_to_heal_s": heal,
        "rows_lost": int(missing) if isinstance(missing, int | float) else None,
        "rows_recovered": int(recovered) if isinstance(recovered, int | float) else None,
        "root_cause": str((run.root_cause or {}).get("summary") or ""),
    }
