"""The HTML incident report in a real browser: Debian's Chromium driven by Playwright (no browser
download). Every incident and its timeline render, the data gap is drawn to scale, nothing is
fetched, the console stays clean, the print layout keeps every incident; a screenshot goes to
.reports/ for people to look at."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.reporting.report.incidents import build_runs, summary
from shared.reporting.report.page import render_html
from tests.support.helpers import ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T0 = datetime(2026, 12, 6, 17, 12, 31, tzinfo=UTC)  # the last row before the outage


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def incidents() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """History and journal rows of three incidents as the healer writes them: an outage healed and
    backfilled, a permission refreshed by re-creating the destination, and an escalation."""
    history: list[dict[str, Any]] = []
    journal: list[dict[str, Any]] = []

    def run(key: str, run_id: str, trigger: str, rows: list[tuple[float, str, dict[str, Any]]]) -> None:
        for seconds, outcome, extra in rows:
            history.append(
                {"PartitionKey": key, "RunId": run_id, "At": at(seconds), "Trigger": trigger,
                 "CorrelationId": run_id, "Outcome": outcome, **extra}
            )  # fmt: skip

    def steps(run_id: str, rows: list[tuple[float, str, str, dict[str, Any]]]) -> None:
        journal.extend(
            {"RunId": run_id, "Step": step, "Status": status, "At": at(s), "Data": data}
            for s, step, status, data in rows
        )

    drop = {
        "found": True,
        "source": "ADXJournal",
        "summary": "ops-admin@contoso.com ran .drop database ['devicedata'] admins ('aadapp=8707…') at 17:12:30",
        "actor": "ops-admin@contoso.com",
    }
    evidence = ["iotcentral: InsufficientPermissions: Principal lacks required permissions."]
    diagnosis = {"kind": "principal-missing", "summary": "the app's identity holds no role on devicedata"}
    plan: dict[str, Any] = {
        "diagnosis": {**diagnosis, "evidence": evidence, "notes": []},
        "actions": [{"action": "add-role"}, {"action": "verify"}],
    }
    measured = {"start": at(0), "end": at(423), "backfill": "on", "status": "queued"}
    progress = {"mode": "on", "start": at(0), "end": at(423), "windows": 3, "queries": 3, "rows_found": 2752,
                "rows_present": 320, "rows_sent": 2432, "rows_missing": 2432, "ingestion": "queued", "done": True,
                "unrecoverable": ["not rebuilt: messageProperties (the query API does not return them)"]}  # fmt: skip
    run("outage:export-1:adx-1", "a" * 32, "timer", [
        (421.8, "waiting", {"Diagnosis": "principal-missing", "RootCause": json.dumps(drop),
                            "Actions": json.dumps(plan["actions"])}),
        (422.9, "healed", {"Detail": "32 new rows; destination healthy", "Gap": json.dumps(measured)}),
        (425.4, "backfilled", {"Detail": "2752 rows: 320 present, 2432 ingested in 2 chunk(s)",
                               "Gap": json.dumps(progress)}),
    ])  # fmt: skip
    steps("a" * 32, [
        (421.7, "plan", "done", {"plan": plan}),
        (421.75, "add", "intent", {"role": "admins"}),
        (421.76, "add", "done", {"listed": True}),
        (422.88, "verify", "done", {"healed": True, "detail": "32 new rows"}),
        (425.39, "backfill", "progress", progress),
    ])  # fmt: skip
    stale = {**plan, "diagnosis": {**plan["diagnosis"], "kind": "principal-stale"},
             "actions": [{"action": "recreate-destination"}, {"action": "verify"}]}  # fmt: skip
    run("stale:export-1:adx-1", "b" * 32, "alert", [
        (600, "waiting", {"Diagnosis": "principal-stale"}),
        (606.5, "healed", {"Detail": "rows arrived"}),
    ])  # fmt: skip
    steps("b" * 32, [
        (599.2, "plan", "done", {"plan": stale}),
        (599.4, "recreate-destination", "intent", {"new": "adx-1-r1"}),
        (600.1, "recreate-destination", "done", {"deleted": "adx-1"}),
        (606.4, "verify", "done", {"healed": True}),
    ])  # fmt: skip
    admin = {
        **plan,
        "diagnosis": {**plan["diagnosis"], "kind": "healer-not-admin"},
        "actions": [{"action": "escalate"}],
    }
    demoted = json.dumps({**drop, "summary": "ops ran .drop database ['plantdata'] admins"})
    run("notadmin:export-1:adx-1", "c" * 32, "timer", [
        (900, "escalated", {"Diagnosis": "healer-not-admin", "Detail": "the healer is not Database Admin",
                            "RootCause": demoted}),
    ])  # fmt: skip
    steps("c" * 32, [(899.5, "plan", "done", {"plan": admin})])
    return history, journal


def test_the_summary_says_detect_heal_lost_and_recovered() -> None:
    runs = {r.target.split(":")[0]: r for r in build_runs(*incidents())}
    outage = summary(runs["outage"])
    assert outage["time_to_detect_s"] == pytest.approx(421.8 - 0.1, abs=0.2)  # from the gap's start to detection
    assert outage["time_to_heal_s"] == pytest.approx(422.9 - 421.7, abs=0.01)
    assert (outage["rows_lost"], outage["rows_recovered"]) == (2432, 2432)
    assert outage["root_cause"].startswith("ops-admin@contoso.com ran .drop")
    stale = summary(runs["stale"])
    assert stale["time_to_detect_s"] is None and stale["rows_lost"] is None  # no gap measured
    assert summary(runs["notadmin"])["time_to_heal_s"] is None


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Chromium is missing: `make install` installs Debian's chromium"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile: nothing cached, nothing remembered
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1200, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def test_every_incident_and_its_timeline_render_offline(browser_page: Any, tmp_path: Path) -> None:
    runs = build_runs(*incidents())
    report = tmp_path / "report.html"
    report.write_text(render_html(runs, "iotc-adx-healer incident report"), encoding="utf-8")
    requests: list[str] = []
    problems: list[str] = []
    browser_page.route(
        "**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort()
    )
    page = browser_page.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(report.as_uri(), wait_until="load")

    sections = page.locator("section.run")
    assert sections.count() == len(runs) == 3
    for n, run in enumerate(runs):
        section = sections.nth(n)
        assert section.is_visible()
        assert run.target in section.locator("h2").inner_text()
        chart = section.locator("svg.timeline-chart").first
        box = chart.bounding_box()
        assert box is not None and box.get("width", 0) > 600 and box.get("height", 0) > 100
        assert chart.locator("g.mark").count() == len(run.events)  # a numbered mark per event
        assert section.locator("li.event").count() == len(run.events)
        facts = section.locator("dl.facts").inner_text().lower()
        assert "time to detect" in facts and "time to heal" in facts and "rows recovered" in facts
    outage = sections.nth([r.target for r in runs].index("outage:export-1:adx-1"))
    assert "2,432" in outage.locator("dl.facts").inner_text()
    # The gap to scale: 423 s of the chart's span, the run's events right of it.
    chart = outage.locator("svg.timeline-chart").first
    gap, lane = chart.locator("rect.gap").bounding_box(), chart.locator("rect.lane").first.bounding_box()
    assert gap is not None and lane is not None
    assert gap["width"] / lane["width"] == pytest.approx(423 / (425.4 * 1.06), rel=0.05)
    assert outage.locator("svg.timeline-chart").count() == 2  # the run, enlarged beside the long gap
    assert requests == [report.as_uri()], requests  # nothing fetched but the page itself
    assert problems == [], problems

    shots = ROOT / ".reports"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "incident-report.png"), full_page=True)
    assert (shots / "incident-report.png").stat().st_size > 10_000
    # Printable: every incident and its chart on paper too.
    page.emulate_media(media="print")
    assert all(sections.nth(n).locator("svg.timeline-chart").first.is_visible() for n in range(len(runs)))
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
