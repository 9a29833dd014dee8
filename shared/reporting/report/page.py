"""The incident report as one self-contained HTML file (inline CSS and SVG, no script, nothing
fetched) that any browser opens offline and prints: per run a summary, the chart and the numbered
events with their evidence."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from shared.reporting.report.chart import timeline_svg
from shared.reporting.report.incidents import PHASES, ReportedRun, summary
from shared.reporting.report.times import clock, duration

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


def _facts(run: ReportedRun) -> str:
    facts = summary(run)

    def rows(value: int | None) -> str:
        return "—" if value is None else f"{value:,}"

    items = [
        ("time to detect", duration(facts["time_to_detect_s"]), "detect"),
        ("time to heal", duration(facts["time_to_heal_s"]), "heal"),
        ("rows lost", rows(facts["rows_lost"]), "lost"),
        ("rows recovered", rows(facts["rows_recovered"]), "recovered"),
    ]
    out = ['<dl class="facts">']
    out.extend(f'<div class="{cls}"><dt>{name}</dt><dd>{escape(value)}</dd></div>' for name, value, cls in items)
    cause = facts["root_cause"] or ("not found" if run.root_cause else "not sought (no principal changed)")
    out.append(f'<div class="cause"><dt>root cause</dt><dd>{escape(cause)}</dd></div></dl>')
    return "".join(out)


def render_html(runs: list[ReportedRun], title: str, summary: list[dict[str, Any]] | None = None) -> str:
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
                f'<span class="time">{escape(clock(event.at))}</span><span class="phase">{escape(event.phase)}</span>'
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
