"""Incident report: each run's timeline (detection → diagnosis → actions → verification → backfill
→ outcome) with its evidence, from the history and journal tables, as one self-contained HTML file
(inline CSS and SVG, no script, nothing fetched) that any browser opens offline and prints.

Per run: a summary (time to detect, time to heal, rows lost and recovered, root cause), a chart of
the run (inline SVG: a lane per phase, a numbered mark per event, the data gap drawn to scale) and
the numbered events with their evidence."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
                gap=gap,
            )
        )
    return sorted(runs, key=lambda r: r.started, reverse=True)


def collect(store: Any, target: str | None = None, limit: int = 200) -> list[Run]:
    history = store.read_history(target, limit=limit)
    keys = sorted({str(r["PartitionKey"]) for r in history})
    journal = [row for key in keys for row in store.read_journal(key)]
    return build_runs(history, journal)


# ---------------------------------------------------------------------- the summary


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _clock(text: str) -> str:
    """A time as people read it in the list: date, time to the millisecond (UTC)."""
    when = _when(text)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if when else text


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def summary(run: Run) -> dict[str, Any]:
    """Time to detect (the gap's start to the run's start), time to heal (the run's start to its
    healed verdict), rows lost (missing when the gap was measured) and recovered (ingested by the
    backfill), and the root cause. None where the run does not tell."""
    started = _when(run.events[0].at) if run.events else _when(run.started)
    gap = run.gap or {}
    gap_start = _when(gap.get("start"))
    healed = next((_when(e.at) for e in run.events if e.phase == "outcome" and e.title == "healed"), None)
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


# ---------------------------------------------------------------------- the chart

CHART_W, LANE_H, LEFT, TOP = 960, 26, 118, 8
LANE_NAMES = {"detection": "detection", "diagnosis": "diagnosis", "action": "actions", "verification": "verification"}
LANE_NAMES |= {"backfill": "backfill", "outcome": "outcome"}
STEPS_S: tuple[float, ...] = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
STEPS_S += (3 * 3600, 6 * 3600, 12 * 3600, 86400)
ZOOM_BELOW = 0.15  # the run takes less of the chart than this: it is drawn again, enlarged


def _tick_step(seconds: float) -> float:
    return next((s for s in STEPS_S if seconds / s <= 7), STEPS_S[-1] * max(1, round(seconds / STEPS_S[-1] / 7)))


def _chart(
    uid: str,
    marks: list[tuple[int, Event, datetime]],
    lo: datetime,
    hi: datetime,
    gap: tuple[datetime, datetime] | None,
    whole_gap: tuple[datetime, datetime] | None = None,
) -> str:
    """An SVG of lanes (one per phase) over [lo, hi] to scale: numbered marks, the gap as a band."""
    span = max((hi - lo).total_seconds(), 1.0)
    width = CHART_W - LEFT - 16
    height = TOP + LANE_H * len(PHASES) + 30

    def x(at: datetime) -> float:
        return LEFT + width * min(max((at - lo).total_seconds() / span, 0.0), 1.0)

    label = f"timeline from {lo.strftime('%H:%M:%S')} to {hi.strftime('%H:%M:%S')} UTC"
    out = [
        f'<svg class="timeline-chart" id="chart-{uid}" viewBox="0 0 {CHART_W} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    for n, phase in enumerate(PHASES):
        y = TOP + n * LANE_H
        out.append(f'<rect class="lane lane-{phase}" x="{LEFT}" y="{y}" width="{width}" height="{LANE_H}"/>')
        out.append(f'<text class="lane-name" x="{LEFT - 8}" y="{y + LANE_H / 2 + 4}">{LANE_NAMES[phase]}</text>')
    bottom = TOP + LANE_H * len(PHASES)
    if gap is not None:
        gx0, gx1 = x(gap[0]), x(gap[1])
        seconds = ((whole_gap or gap)[1] - (whole_gap or gap)[0]).total_seconds()
        out.append(
            f'<rect class="gap" x="{gx0:.1f}" y="{TOP}" width="{max(gx1 - gx0, 1.5):.1f}" height="{bottom - TOP}">'
            f"<title>data gap: {escape(_span(seconds))}, {gap[0].isoformat()} to {gap[1].isoformat()}</title></rect>"
        )
        out.append(
            f'<text class="gap-label" x="{min(max((gx0 + gx1) / 2, LEFT + 40), CHART_W - 60):.1f}" '
            f'y="{bottom + 26}">data gap {escape(_span(seconds))}{" (its end)" if whole_gap else ""}</text>'
        )
    step = _tick_step(span)
    tick = datetime.fromtimestamp(round((lo.timestamp() // step + 1) * step, 3), UTC)
    out.append(f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{LEFT + width}" y2="{bottom}"/>')
    while tick < hi:
        tx = x(tick)
        out.append(f'<line class="tick" x1="{tx:.1f}" y1="{TOP}" x2="{tx:.1f}" y2="{bottom + 4}"/>')
        text = tick.strftime("%H:%M:%S.%f")[:-5] if step < 1 else tick.strftime("%H:%M:%S")
        out.append(f'<text class="tick-label" x="{tx:.1f}" y="{bottom + 14}">{text}</text>')
        tick += timedelta(seconds=step)
    placed: dict[str, float] = {}
    for number, event, at in marks:
        row = PHASES.index(event.phase)
        # Marks closer than their size in one lane are set side by side, so each number stays
        # readable; the exact time is in the mark's tooltip and the list below.
        cx = min(max(x(at), placed.get(event.phase, -99.0) + 17), CHART_W - 9.0)
        placed[event.phase] = cx
        cy = TOP + row * LANE_H + LANE_H / 2
        out.append(
            f'<g class="mark mark-{event.phase}"><circle cx="{cx:.1f}" cy="{cy:.1f}" r="8"/>'
            f'<text x="{cx:.1f}" y="{cy + 3.5:.1f}">{number}</text>'
            f"<title>{number}. {at.strftime('%H:%M:%S.%f')[:-3]} {escape(event.phase)}: "
            f"{escape(event.title)}</title></g>"
        )
    out.append("</svg>")
    return "".join(out)


def timeline_svg(run: Run, uid: str) -> str:
    """The run's chart to scale with its gap, and an enlarged one of the run when the gap dwarfs it."""
    marks = [(n, e, at) for n, e in enumerate(run.events, 1) if (at := _when(e.at)) is not None]
    if not marks:
        return ""
    first, last = min(m[2] for m in marks), max(m[2] for m in marks)
    gap = run.gap or {}
    start, end = _when(gap.get("start")), _when(gap.get("end"))
    window = (start, end) if start and end and end > start else None
    lo = min([first] + ([window[0]] if window else []))
    hi = max([last] + ([window[1]] if window else []))
    pad = max((hi - lo).total_seconds() * 0.03, 1.0)
    lo, hi = lo - timedelta(seconds=pad), hi + timedelta(seconds=pad)
    charts = [_chart(uid, marks, lo, hi, window)]
    run_span = (last - first).total_seconds()
    if window and run_span < ZOOM_BELOW * (hi - lo).total_seconds():
        zpad = max(run_span * 0.05, 1.0)
        zlo, zhi = first - timedelta(seconds=zpad), last + timedelta(seconds=zpad)
        zoomed = (max(window[0], zlo), min(window[1], zhi)) if window[1] > zlo and window[0] < zhi else None
        charts.append('<p class="zoom-note">The run itself, enlarged:</p>')
        charts.append(_chart(uid + "-zoom", marks, zlo, zhi, zoomed, window))
    return "".join(charts)


# ---------------------------------------------------------------------- the page

_CSS = (
    """
:root{--detection:#8764b8;--diagnosis:#0078d4;--action:#ca5010;--verification:#107c10;--backfill:#038387;
--outcome:#3b3a39;--gap:#c50f1f}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;
color:#1b1b1b;background:#f5f5f5;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin:0 0 .3rem}
table.summary{border-collapse:collapse;margin:1rem 0;background:#fff;width:100%}
table.summary td,table.summary th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;font-size:.85rem;
vertical-align:top}table.summary th{background:#eee}
section.run{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1rem 1.4rem;margin:1.2rem 0;
box-shadow:0 1px 2px rgba(0,0,0,.05)}
.meta{color:#555;font-size:.82rem;margin:.2rem 0 .6rem}.outcome-healed{color:#107c10}
.outcome-escalated,.outcome-not-healed,.outcome-backfill-refused{color:#c50f1f}
dl.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:.6rem;margin:.6rem 0 1rem}
dl.facts div{background:#f7f9fc;border:1px solid #e1e6ef;border-radius:6px;padding:.45rem .7rem}
dl.facts dt{font-size:.72rem;text-transform:uppercase;letter-spacing:.03em;color:#555}
dl.facts dd{margin:.1rem 0 0;font-size:1.15rem;font-weight:600}
dl.facts div.cause{grid-column:1/-1;background:#fff8e1;border-color:#f2d58a}
dl.facts div.cause dd{font-size:.92rem;font-weight:500}
svg.timeline-chart{width:100%;height:auto;display:block;margin:.4rem 0}
svg .lane{fill:#fafafa;stroke:#e6e6e6}svg .lane-name{font-size:12px;text-anchor:end;fill:#444}
svg .gap{fill:var(--gap);fill-opacity:.14;stroke:var(--gap);stroke-opacity:.55;stroke-dasharray:4 3}
svg .gap-label{font-size:12px;fill:var(--gap);text-anchor:middle;font-weight:600}
svg .axis{stroke:#888}svg .tick{stroke:#ddd}svg .tick-label{font-size:10px;fill:#666;text-anchor:middle}
svg .mark circle{stroke:#fff;stroke-width:1.5}svg .mark text{font-size:9px;fill:#fff;text-anchor:middle;font-weight:700}
"""
    + "".join(f"svg .mark-{p} circle{{fill:var(--{p})}}" for p in PHASES)
    + """
.zoom-note{font-size:.8rem;color:#555;margin:.6rem 0 0}
ol.timeline{list-style:none;padding-left:0;margin:.8rem 0 0;counter-reset:event}
ol.timeline li.event{margin:.25rem 0;padding:.15rem 0 .15rem .6rem;border-left:4px solid #ccc;counter-increment:event}
ol.timeline li.event::before{content:counter(event) ".";display:inline-block;min-width:1.8rem;font-weight:700;
color:#555;font-size:.85rem}
"""
    + "".join(f"li.phase-{p}{{border-left-color:var(--{p})}}li.phase-{p} .phase{{color:var(--{p})}}" for p in PHASES)
    + """
.phase{display:inline-block;min-width:6.5rem;font-size:.72rem;text-transform:uppercase;font-weight:600}
.time{font-family:ui-monospace,monospace;font-size:.78rem;color:#555;margin-right:.5rem}
.detail{color:#333;font-size:.84rem;margin:.1rem 0 0 8.3rem;overflow-wrap:anywhere}
ul.evidence{font-family:ui-monospace,monospace;font-size:.76rem;margin:.2rem 0 0 8.3rem;overflow-wrap:anywhere}
@media print{body{background:#fff;margin:0;max-width:none;font-size:10pt}
section.run{box-shadow:none;border:1px solid #bbb;break-inside:avoid-page;page-break-inside:avoid}
dl.facts div{background:#fff}*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
table.summary{font-size:8pt}@page{margin:12mm}}
"""
)


def _facts(run: Run) -> str:
    facts = summary(run)

    def rows(value: int | None) -> str:
        return "—" if value is None else f"{value:,}"

    items = [
        ("time to detect", _span(facts["time_to_detect_s"]), "detect"),
        ("time to heal", _span(facts["time_to_heal_s"]), "heal"),
        ("rows lost", rows(facts["rows_lost"]), "lost"),
        ("rows recovered", rows(facts["rows_recovered"]), "recovered"),
    ]
    out = ['<dl class="facts">']
    out.extend(f'<div class="{cls}"><dt>{name}</dt><dd>{escape(value)}</dd></div>' for name, value, cls in items)
    cause = facts["root_cause"] or ("not found" if run.root_cause else "not sought (no principal changed)")
    out.append(f'<div class="cause"><dt>root cause</dt><dd>{escape(cause)}</dd></div></dl>')
    return "".join(out)


def render_html(runs: list[Run], title: str, summary: list[dict[str, Any]] | None = None) -> str:
    """A complete HTML document. `summary`: optional rows (same keys) shown as a table first."""
    healed = sum(1 for r in runs if r.outcome == "healed")
    escalated = sum(1 for r in runs if r.outcome in ("escalated", "not-healed"))
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Generated {escape(datetime.now(UTC).isoformat(timespec="seconds"))}; {len(runs)} run(s): '
        f"{healed} healed, {escalated} escalated or not healed. Times are UTC.</p>",
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
    for n, run in enumerate(runs):
        out.append(f'<section class="run" id="run-{escape(run.run_id)}">')
        out.append(
            f'<h2>{escape(run.target)} — <span class="outcome-{escape(run.outcome)}">{escape(run.outcome)}</span></h2>'
        )
        out.append(
            f'<p class="meta">run {escape(run.run_id)} · correlation id {escape(run.correlation_id)} · '
            f"trigger {escape(run.trigger)} · diagnosis {escape(run.diagnosis or '—')} · "
            f"started {escape(run.started)}</p>"
        )
        out.append(_facts(run))
        out.append(timeline_svg(run, f"r{n}"))
        out.append('<ol class="timeline">')
        for event in run.events:
            out.append(f'<li class="event phase-{escape(event.phase)}">')
            out.append(
                f'<span class="time">{escape(_clock(event.at))}</span><span class="phase">{escape(event.phase)}</span>'
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
