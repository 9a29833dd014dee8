"""The commands that say what happened: status of every target, history of past runs, and the
incident report (text, JSON or a self-contained HTML file)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from shared.cli.group import EXIT_ESCALATED, EXIT_OK, Ctx, _console, main
from shared.cli.tables import Column, fitted


@main.command()
@click.pass_obj
def status(obj: Ctx) -> None:
    """Every target: last outcome, diagnosis, cooldown, escalation."""
    from datetime import UTC, datetime

    from shared.reporting.status import target_rows

    healer = obj.healer()
    rows = target_rows(healer.services, datetime.now(UTC))

    def show() -> None:
        from rich.markup import escape

        columns = [
            Column("target", whole=True),
            Column("table", essential=False),
            Column("last outcome", whole=True),
            Column("diagnosis", whole=True),
            Column("in progress", essential=False),
            Column("cooldown until", essential=False),
            Column("escalated"),
            Column("gap", essential=False),
            Column("root cause", essential=False),
        ]
        table_rows = []
        for r in rows:
            cause = r.get("root_cause") or {}
            table_rows.append(
                [
                    r["target"],
                    escape(f"{r['database']}.{r['table']}"),
                    r["last_outcome"],
                    r["last_diagnosis"],
                    "yes" if r["in_progress"] else "",
                    r["cooldown_until"] or "",
                    f"[red]{escape(r['escalation_reason'])}[/]" if r["escalated"] else "",
                    escape(_gap_text(r.get("gap"))),
                    escape(str(cause.get("actor") or cause.get("summary") or "")),
                ]
            )
        fitted(_console(), columns, table_rows)

    obj.emit({"mode": healer.services.settings.mode, "targets": rows}, show)
    sys.exit(EXIT_ESCALATED if any(r["escalated"] for r in rows) else EXIT_OK)


@main.command()
@click.argument("target", required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_obj
def history(obj: Ctx, target: str | None, limit: int) -> None:
    """Past runs (newest first): when, trigger, diagnosis, actions, outcome, correlation id."""
    healer = obj.healer()
    if target:
        obj.target(target)
    rows = healer.services.store.read_history(target, limit=limit)
    keep = (
        "At",
        "PartitionKey",
        "RunId",
        "Trigger",
        "Diagnosis",
        "Actions",
        "Outcome",
        "Detail",
        "CorrelationId",
        "Gap",
    )
    data = [{k: r.get(k) for k in keep} for r in rows]
    for entry, row in zip(data, rows, strict=True):
        entry["RootCause"] = json.loads(row["RootCause"]) if row.get("RootCause") else None

    def show() -> None:
        from rich.markup import escape

        columns = [
            Column("when", whole=True),
            Column("target", whole=True),
            Column("trigger", essential=False),
            Column("diagnosis", whole=True),
            Column("actions", essential=False),
            Column("outcome", whole=True),
            Column("detail", essential=False),
            Column("root cause", essential=False),
        ]
        table_rows = []
        for r in data:
            actions = ", ".join(a["action"] for a in json.loads(r["Actions"] or "[]"))
            cause = r["RootCause"]
            table_rows.append(
                [
                    str(r["At"])[:19],
                    str(r["PartitionKey"]),
                    str(r["Trigger"] or ""),
                    str(r["Diagnosis"] or ""),
                    actions,
                    str(r["Outcome"]),
                    escape(str(r["Detail"] or "")[:200]),
                    escape(str(cause["summary"])[:200]) if cause else "",
                ]
            )
        fitted(_console(), columns, table_rows)

    obj.emit(data, show)
    sys.exit(EXIT_OK)


def _gap_text(gap: dict[str, Any] | None) -> str:
    if not gap:
        return ""
    start, end = str(gap.get("start", ""))[11:19], str(gap.get("end", ""))[11:19]
    text = f"{start}..{end} {gap.get('backfill', '')} {gap.get('status', '')}"
    if "rows_missing" in gap:
        text += f", missing {gap['rows_missing']} of {gap.get('rows_expected', 0)}"
        text += f", ingested {gap.get('rows_ingested', 0)}"
    return text


@main.command()
@click.argument("target", required=False)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write a self-contained HTML incident report (opens in any browser, offline).",
)
@click.option("--limit", type=click.IntRange(1, 5000), default=200, show_default=True, help="History rows read.")
@click.pass_obj
def report(obj: Ctx, target: str | None, html_file: Path | None, limit: int) -> None:
    """Incident report for TARGET (or every target): each run's timeline from detection through
    diagnosis, actions and verification to its outcome, with the evidence and root cause."""
    from shared.reporting.report.incidents import collect
    from shared.reporting.report.page import render_html

    healer = obj.healer()
    if target:
        obj.target(target)
    runs = collect(healer.services.store, target, limit)
    if html_file is not None:
        title = f"iotc-adx-healer incident report: {target or 'all targets'}"
        html_file.write_text(render_html(runs, title), encoding="utf-8")

    def show() -> None:
        console = _console()
        for run in runs:
            console.print(f"[bold]{run.target}[/] {run.started[:19]} {run.trigger} → {run.diagnosis} → {run.outcome}")
            if run.root_cause:
                console.print(f"  root cause: {run.root_cause.get('summary', '')}")
        if html_file is not None:
            console.print(f"Wrote {html_file} ({len(runs)} run(s)).")

    obj.emit({"runs": [r.to_dict() for r in runs], "html": str(html_file) if html_file else None}, show)
    sys.exit(EXIT_OK)
