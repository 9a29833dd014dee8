"""The incident report's chart of a run: inline SVG, a lane per phase, a numbered mark per event,
the data gap drawn to scale, and the run enlarged when the gap dwarfs it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape

from shared.reporting.report.incidents import PHASES, Event, ReportedRun
from shared.reporting.report.times import duration, when

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
            f"<title>data gap: {escape(duration(seconds))}, {gap[0].isoformat()} to {gap[1].isoformat()}</title></rect>"
        )
        out.append(
            f'<text class="gap-label" x="{min(max((gx0 + gx1) / 2, LEFT + 40), CHART_W - 60):.1f}" '
            f'y="{bottom + 26}">data gap {escape(duration(seconds))}{" (its end)" if whole_gap else ""}</text>'
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


def timeline_svg(run: ReportedRun, uid: str) -> str:
    """The run's chart to scale with its gap, and an enlarged one of the run when the gap dwarfs it."""
    marks = [(n, e, at) for n, e in enumerate(run.events, 1) if (at := when(e.at)) is not None]
    if not marks:
        return ""
    first, last = min(m[2] for m in marks), max(m[2] for m in marks)
    gap = run.gap or {}
    start, end = when(gap.get("start")), when(gap.get("end"))
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
