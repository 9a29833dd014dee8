"""The drill's screen at 80 and 120 columns: every scenario, outcome and diagnosis whole (no
ellipsis, no word folded), what the table leaves out below it, and nothing drawn but the final
table when the output is not a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from sandbox.drill import SCENARIOS, Drill

DIAGNOSES = ("principal-missing", "identity-changed", "insufficient-role", "healer-not-admin", "principal-stale")


def finished(width: int) -> tuple[Drill, io.StringIO]:
    out = io.StringIO()
    drill = Drill(SCENARIOS, Console(file=out, width=width), Path("."))
    for n, r in enumerate(drill.results):
        r.outcome = "not-started" if n == 3 else r.expected_outcome
        r.diagnosis = DIAGNOSES[n % len(DIAGNOSES)]
        r.actions = ["recreate-destination", "add-role", "verify"]
        r.detected_by, r.mttd_s, r.mttr_s = "alert", 12.25, 123.5
        r.kusto_commands, r.changing_commands, r.busy_s = 24, 2, 1.5
    drill.results[-1].rows_expected, drill.results[-1].rows_backfilled = 9000, 4500
    return drill, out


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_and_cuts_nothing(width: int) -> None:
    drill, out = finished(width)
    drill.console.print(drill.table())
    for line in drill.details():
        drill.console.print(line, markup=False)
    screen = out.getvalue()
    assert "…" not in screen and "..." not in screen
    lines = screen.splitlines()
    assert max(len(line) for line in lines) <= width
    for r in drill.results:  # each whole on one line of the table
        outcome = f"{r.outcome} {'✓' if r.ok else '✗'}"
        assert any(r.name in line and outcome in line and r.diagnosis in line for line in lines), r.name
    assert "expected" in screen and "not-started" in screen  # the one not as expected says so below
    below = " ".join(" ".join(drill.details()).split())
    assert "backfill 4500 in, ? missing" in below
    if width >= 120:
        assert all("24 (2)" in line for line in lines if " alert " in line)
    else:
        assert "Kusto 24 (2 changing)" in screen and "24 (2)" not in screen
    assert below.count("busy 1.50 s, notified 0") == len(drill.results)
    detected = "detected in 12.2 s" if width >= 120 else "detected by alert in 12.2 s"
    assert below.count(detected) == len(drill.results)


def test_the_live_view_shows_progress_only_on_a_terminal() -> None:
    from rich.live import Live
    from rich.progress import Progress

    drill, out = finished(80)
    progress = Progress(console=drill.console)
    task = progress.add_task("running stale-permission", total=len(SCENARIOS))
    with Live(drill.live_view(progress), console=drill.console, transient=False) as live:
        progress.advance(task)
        live.update(drill.live_view(progress))
        live.update(drill.table())
    screen = out.getvalue()
    assert screen.count("iotc-adx-healer drill") == 1  # printed once, at the end
    assert "running stale-permission" not in screen and "\x1b[" not in screen


def test_a_terminal_sees_which_scenario_runs() -> None:
    from rich.live import Live
    from rich.progress import MofNCompleteColumn, Progress, TextColumn

    out = io.StringIO()
    drill = Drill(SCENARIOS, Console(file=out, width=80, force_terminal=True), Path("."))
    progress = Progress(TextColumn("{task.description}"), MofNCompleteColumn(), console=drill.console)
    task = progress.add_task("running stale-permission", total=len(SCENARIOS))
    with Live(drill.live_view(progress), console=drill.console, transient=False, auto_refresh=False) as live:
        progress.advance(task)
        live.update(drill.live_view(progress), refresh=True)
        live.update(drill.table(), refresh=True)
    assert "running stale-permission" in out.getvalue() and f"1/{len(SCENARIOS)}" in out.getvalue()
