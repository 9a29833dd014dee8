"""The backfill's progress bar: the share of the gap done across templates, rows/s and time left
on a terminal, and nothing at all written when the output is not one."""

from __future__ import annotations

import io

from rich.console import Console

from shared.cli.progress import BackfillProgress, backfill_fraction

START, END = "2026-12-01T10:00:00+00:00", "2026-12-01T11:00:00+00:00"


def progress(cursor: str, index: int = 0, **extra: object) -> dict[str, object]:
    return {"start": START, "end": END, "cursor": cursor, "templates": ["a", "b"], "template_index": index, **extra}


def test_the_fraction_counts_every_template() -> None:
    assert backfill_fraction(progress(START)) == 0.0
    assert backfill_fraction(progress("2026-12-01T10:30:00+00:00")) == 0.25
    assert backfill_fraction(progress("2026-12-01T10:30:00+00:00", index=1)) == 0.75
    assert backfill_fraction(progress(END, index=2)) == 1.0
    assert backfill_fraction(progress(START, done=True)) == 1.0
    assert backfill_fraction({"start": "not a time"}) == 0.0


def test_a_terminal_sees_rows_per_second_and_a_pipe_sees_nothing() -> None:
    ticks = iter([0.0, 10.0, 10.0])
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=120)
    with BackfillProgress(terminal, "backfill app:e:d", clock=lambda: next(ticks)) as bar:
        assert bar.enabled
        bar.update(progress("2026-12-01T10:30:00+00:00", rows_found=5000, windows=3))
        assert bar.rate(progress(START, rows_found=5000, windows=3)) == "5000 rows, 500 rows/s, 3 windows"
        bar._bar.refresh()
    assert "500 rows/s" in out.getvalue() and "25%" in out.getvalue()
    piped = io.StringIO()
    with BackfillProgress(Console(file=piped, width=80), "backfill app:e:d") as bar:
        assert not bar.enabled
        bar.update(progress(END, index=1, rows_found=10))
    with BackfillProgress(None, "json output") as bar:
        bar.update(progress(END))
    assert piped.getvalue() == ""
