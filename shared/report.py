"""Incident report: each run's timeline (detection → diagnosis → actions → verification → backfill
→ outcome) with its evidence, from the history and journal tables, as one self-contained HTML file
(inline CSS, no script, nothing fetched) that any browser opens offline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

PHASES = ("detection", "diagnosis", "action", "verification", "backfill", "outcome")


@dataclass
class Event:
    at: str
    phase: str  # one of PHASES
    title: str
    detail: str = ""
    evidence: list[str] = field(default_factory=list)


@dataclass
class Run:
    target: str
    run_id: str
    correlation_id: str
    trigger: str
    diagnosis: str
    outcome: str
    started: str
    root_cause: dict[str, Any] | None
    events: list[Event]

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
    shown = {k: v for k, v in data.items() if k not in ("plan",)}
    detail = "; ".join(f"{k}={v}" for k, v in shown.items())
    return Event(str(row["At"]), _phase(step), f"{step} {status}", detail)


def build_runs(history: list[dict[str, Any]], journal: list[dict[str, Any]]) -> list[Run]:
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
        diagnosis = ""
        for row in rows:
            diagnosis = str(row.get("Diagnosis") or diagnosis)
            cause = _json(row.get("RootCause"), None) or cause
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
            Run(
                target=str(first.get("PartitionKey", "")),
                run_id=run_id,
                correlation_id=str(first.get("CorrelationId", "")),
                trigger=str(first.get("Trigger", "")),
                diagnosis=diagnosis,
                outcome=str(last.get("Outcome", "")),
                started=str(first["At"]),
                root_cause=cause,
                events=events,
            )
        )
    return sorted(runs, key=lambda r: r.started, reverse=True)


def collect(store: Any, target: str | None = None, limit: int = 200) -> list[Run]:
    history = store.read_history(target, limit=limit)
    keys = sorted({str(r["PartitionKey"]) for r in history})
    journal = [row for key in keys for row in store.read_journal(key)]
    return build_runs(history, journal)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1b1b;background:#fafafa}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin:0 0 .3rem}table{border-collapse:collapse;margin:1rem 0}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;font-size:.9rem}th{background:#eee}
section.run{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1rem 1.2rem;margin:1rem 0}
.meta{color:#555;font-size:.85rem}.outcome-healed{color:#107c10}.outcome-escalated,.outcome-not-healed{color:#c50f1f}
ol.timeline{list-style:none;padding-left:0;border-left:3px solid #0078d4;margin-left:.5rem}
ol.timeline li{margin:.4rem 0 .4rem 1rem;position:relative}
ol.timeline li::before{content:"";position:absolute;left:-1.45rem;top:.35rem;width:.6rem;height:.6rem;
border-radius:50%;background:#0078d4}
.phase{display:inline-block;min-width:6.5rem;font-size:.75rem;text-transform:uppercase;color:#0078d4}
.time{font-family:monospace;font-size:.8rem;color:#555;margin-right:.5rem}.detail{color:#333;font-size:.85rem;margin-left:7rem}
ul.evidence{font-family:monospace;font-size:.8rem;margin:.2rem 0 0 7rem}
.cause{background:#fff4ce;padding:.4rem .6rem;border-radius:4px}
"""


def render_html(runs: list[Run], title: str, summary: list[dict[str, Any]] | None = None) -> str:
    """A complete HTML document. `summary`: optional rows (same keys) shown as a table first."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Generated {escape(datetime.now(UTC).isoformat(timespec="seconds"))}; {len(runs)} run(s).</p>',
    ]
    if summary:
        columns = list(summary[0])
        out.append('<table class="summary"><thead><tr>')
        out.extend(f"<th>{escape(c)}</th>" for c in columns)
        out.append("</tr></thead><tbody>")
        for row in summary:
            out.append("<tr>" + "".join(f"<td>{escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>")
        out.append("</tbody></table>")
    if not runs:
        out.append("<p>No runs recorded.</p>")
    for run in runs:
        out.append(f'<section class="run" id="run-{escape(run.run_id)}">')
        out.append(
            f'<h2>{escape(run.target)} — <span class="outcome-{escape(run.outcome)}">{escape(run.outcome)}</span></h2>'
        )
        out.append(
            f'<p class="meta">run {escape(run.run_id)} · correlation id {escape(run.correlation_id)} · '
            f"trigger {escape(run.trigger)} · diagnosis {escape(run.diagnosis or '—')} · "
            f"started {escape(run.started)}</p>"
        )
        if run.root_cause:
            out.append(
                f'<p class="cause"><strong>Root cause:</strong> {escape(str(run.root_cause.get("summary", "")))}</p>'
            )
        out.append('<ol class="timeline">')
        for event in run.events:
            out.append(f'<li class="event phase-{escape(event.phase)}">')
            out.append(
                f'<span class="time">{escape(event.at[:23])}</span><span class="phase">{escape(event.phase)}</span>'
            )
            out.append(f"<strong>{escape(event.title)}</strong>")
            if event.detail:
                out.append(f'<div class="detail">{escape(event.detail)}</div>')
            if event.evidence:
                out.append('<ul class="evidence">' + "".join(f"<li>{escape(e)}</li>" for e in event.evidence) + "</ul>")
            out.append("</li>")
        out.append("</ol></section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("summary", json.dumps(value)))
    return str(value)
