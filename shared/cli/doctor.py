"""`doctor`: the read-only preflight (shared/doctor/), as lines people read or JSON for scripts."""

from __future__ import annotations

import sys
from typing import Any

import click

from shared.cli.group import EXIT_FAILED, EXIT_OK, Ctx, _console, main

LABELS = {
    "pass": ("pass", "green"),
    "fail": ("FAIL", "bold red"),
    "cannot-tell": ("cannot tell", "yellow"),
    "not-applicable": ("n/a", "dim"),
}


@main.command()
@click.pass_obj
def doctor(obj: Ctx) -> None:
    """Check, changing nothing, that the healer can act when it must: for every target and app the
    ADX database and the healer's Database Admin role, the table, IoT Central's exports and
    destinations, the app's identity in ARM, Log Analytics, storage and the webhooks' settings.

    Each line says pass, FAIL or cannot tell, why, and the command that fixes it. Exit status 0
    only when everything the configured remedies need passes, else 1.
    """
    from shared.config.settings import load_settings
    from shared.doctor.preflight import run_doctor

    report = run_doctor(load_settings())
    obj.emit(report.to_dict(), lambda: render(report, _console()))
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def render(report: Any, console: Any) -> None:
    """One block per scope. A check's why wraps beside its status; its fix follows on a line of its
    own that the terminal wraps (soft), so a command copied from it stays one command."""
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]iotc-adx-healer doctor[/]: mode {report.mode}, checking as")
    console.print(report.identity or "an identity whose token could not be read", soft_wrap=True)
    scopes: dict[str, list[Any]] = {}
    for check in report.checks:
        scopes.setdefault(check.scope, []).append(check)
    for scope, checks in scopes.items():
        console.print(f"\n[bold]{escape(scope)}[/]")
        for check in checks:
            label, style = LABELS[check.status]
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True, min_width=11)
            grid.add_column(overflow="fold", ratio=1)
            optional = " [dim](optional)[/]" if not check.required and check.status != "pass" else ""
            grid.add_row(f"[{style}]{label}[/]", f"[bold]{check.name}[/]: {escape(check.why)}{optional}")
            console.print(grid)
            if check.fix:
                console.print(f"{' ' * 12}[cyan]fix:[/] {escape(check.fix)}", soft_wrap=True)
    counts = report.to_dict()["counts"]
    summary = ", ".join(f"{n} {LABELS[s][0]}" for s, n in counts.items() if n)
    verdict = "[green]ready[/]" if report.ok else "[red]not ready: fix the lines above and run it again[/]"
    console.print(f"\n{summary}. {verdict}")
