"""CLI tables at 80 and 120 columns: outcomes and diagnoses whole, a name too long for its column
folded (never cut with an ellipsis), the columns that do not fit listed under the table."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from shared.cli.tables import Column, fitted

COLUMNS = [
    Column("target", whole=True),
    Column("table", essential=False),
    Column("last outcome", whole=True),
    Column("diagnosis", whole=True),
    Column("escalated"),
    Column("root cause", essential=False),
]
ROWS = [
    [
        f"app{n:02d}-production-line:export-telemetry-{n}:adx-destination-1",
        "devicedata.FactoryTelemetryWithAVeryLongName",
        "not-healed" if n % 2 else "healed",
        "insufficient-role" if n % 2 else "principal-missing",
        "[red]3 failed attempts in 24 h: verification saw no new rows[/]" if n % 2 else "",
        "ops-admin@contoso.com ran .drop database ['devicedata'] admins ('aadapp=0c9d…;72f9…') at 10:01",
    ]
    for n in range(4)
]


@pytest.mark.parametrize("width", [80, 120])
def test_a_table_fits_and_cuts_nothing(width: int) -> None:
    out = io.StringIO()
    fitted(Console(file=out, width=width), COLUMNS, ROWS)
    screen = out.getvalue()
    lines = screen.splitlines()
    assert max(len(line) for line in lines) <= width
    assert screen.count("…") == ROWS[0][5].count("…") * len(ROWS)  # only the values' own
    for row in ROWS:  # a target too long for its column folds; the outcome and diagnosis stay whole
        assert any(line.startswith(row[0][:20]) and f" {row[2]} " in line and row[3] in line for line in lines)
    joined = " ".join(screen.split())
    if width < 120:
        assert f"{ROWS[0][0]}: table: {ROWS[0][1]}; root cause: {ROWS[0][5]}" in joined
    else:
        assert "root cause" in lines[0] + lines[1] and f"{ROWS[0][0]}:" not in joined
