"""The operator commands: diagnose, plan, heal, status, history, backfill, resume."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from shared.cli.group import EXIT_ESCALATED, EXIT_NOT_QUEUED, EXIT_OK, EXIT_PROBLEM, Ctx, _console, main
from shared.cli.tables import Column, fitted


@main.command()
@click.argument("target")
@click.pass_obj
def diagnose(obj: Ctx, target: str) -> None:
    """Read ADX and IoT Central and say what is wrong with TARGET (<app>:<export>:<destination>)."""
    reading = obj.healer().read(obj.target(target))
    d = reading.diagnosis

    def show() -> None:
        console = _console()
        console.print(f"[bold]{target}[/]: [cyan]{d.kind}[/] — {d.summary}")
        for line in d.evidence:
            console.print(f"  evidence: {line}")
        for line in d.notes:
            console.print(f"  note: {line}")
        if d.root_cause is not None:
            console.print(f"  root cause: {d.root_cause['summary']}")
            change = d.root_cause.get("identity_change")
            if change:
                console.print(f"  identity: {change['old']} → {change['new']} (seen by {change['seen_by']})")
        failed = [c for c in d.checklist if c.status == "fail"]
        for item in failed:
            console.print(f"  checklist: [red]fail[/] {item.name}: {item.evidence}")
        if d.checklist and not failed:
            console.print("  checklist: no item fails (python -m shared checklist TARGET shows each)")

    obj.emit({"target": target, **d.to_dict()}, show)
    sys.exit(EXIT_OK if str(d.kind) == "healthy" else EXIT_PROBLEM)


@main.command()
@click.argument("target")
@click.pass_obj
def checklist(obj: Ctx, target: str) -> None:
    """The forum thread's configuration checklist for TARGET: pass / fail / not applicable, with evidence."""
    items = obj.healer().read(obj.target(target)).diagnosis.checklist

    def show() -> None:
        from rich.markup import escape

        style = {"pass": "green", "fail": "red", "not-applicable": "dim"}
        columns = [Column("item", whole=True), Column("result", whole=True), Column("evidence")]
        rows = [[i.name, f"[{style[i.status]}]{i.status}[/]", escape(i.evidence)] for i in items]
        fitted(_console(), columns, rows)

    obj.emit({"target": target, "checklist": [i.to_dict() for i in items]}, show)
    sys.exit(EXIT_PROBLEM if any(i.status == "fail" for i in items) else EXIT_OK)


def _plan(obj: Ctx, target: str) -> Any:
    _, plan = obj.healer().plan(obj.target(target), "cli-plan")
    return plan


def _show_plan(target: str, plan: Any) -> Callable[[], None]:
    def show() -> None:
        from rich.markup import escape

        console = _console()
        console.print(f"[bold]{target}[/]: [cyan]{plan.diagnosis.kind}[/] — {escape(plan.diagnosis.summary)}")
        if not plan.actions:
            console.print("Nothing to do.")
            return
        columns = [Column("#"), Column("action", whole=True), Column("reason")]
        fitted(console, columns, [[str(n), a.kind, escape(a.reason)] for n, a in enumerate(plan.actions, 1)])

    return show


@main.command()
@click.argument("target")
@click.pass_obj
def plan(obj: Ctx, target: str) -> None:
    """Show the plan for TARGET: ordered actions, each with its reason. Changes nothing."""
    result = _plan(obj, target)
    obj.emit({"target": target, **result.to_dict()}, _show_plan(target, result))
    sys.exit(EXIT_OK if not result.actions else EXIT_PROBLEM)


@main.command()
@click.argument("target")
@click.option("--yes", is_flag=True, help="Really heal. Without it, heal is a dry run that prints the plan.")
@click.option(
    "--wait",
    "wait_s",
    type=click.IntRange(0, 3600),
    default=0,
    help="Seconds to wait for the outcome (the Function App's queue worker carries out the steps).",
)
@click.pass_obj
def heal(obj: Ctx, target: str, yes: bool, wait_s: int) -> None:
    """Heal TARGET through the Function App's queue (dry run unless --yes)."""
    if not yes:
        result = _plan(obj, target)
        obj.emit({"target": target, "dry_run": True, **result.to_dict()}, _show_plan(target, result))
        sys.exit(EXIT_OK if not result.actions else EXIT_PROBLEM)
    from shared.dispatch import request_remediation

    healer = obj.healer()
    request = request_remediation(healer.s, obj.target(target), "cli", reason="operator heal", manual=True)
    if not request.queued:
        obj.emit(
            {"target": target, "queued": False, "reason": request.reason},
            lambda: _console().print(f"Not queued: {request.reason}"),
        )
        sys.exit(EXIT_ESCALATED if request.reason.startswith("escalated") else EXIT_NOT_QUEUED)
    outcome = "queued"
    deadline = time.monotonic() + wait_s
    while wait_s and time.monotonic() < deadline:
        rows = [r for r in healer.s.store.read_history(target, limit=20) if r.get("RunId") == request.run_id]
        final = [
            r["Outcome"]
            for r in rows
            if r["Outcome"] in ("healed", "not-healed", "escalated", "planned", "healthy", "skipped")
        ]
        if final:
            outcome = final[0]
            break
        time.sleep(1)
    obj.emit(
        {"target": target, "queued": True, "run_id": request.run_id, "outcome": outcome},
        lambda: _console().print(f"{target}: run {request.run_id} {outcome}"),
    )
    sys.exit(EXIT_ESCALATED if outcome in ("escalated", "not-healed") else EXIT_OK)


@main.command()
@click.pass_obj
def status(obj: Ctx) -> None:
    """Every target: last outcome, diagnosis, cooldown, escalation."""
    from datetime import UTC, datetime

    from shared.status import target_rows

    healer = obj.healer()
    rows = target_rows(healer.s, datetime.now(UTC))

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

    obj.emit({"mode": healer.s.settings.mode, "targets": rows}, show)
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
    rows = healer.s.store.read_history(target, limit=limit)
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
@click.argument("target")
@click.option("--from", "start", help="Start of the window (ISO 8601 with a zone). Default: the last measured gap.")
@click.option("--to", "end", help="End of the window (ISO 8601 with a zone).")
@click.option("--dry-run", is_flag=True, help="Query and compare only: record what would be ingested.")
@click.pass_obj
def backfill(obj: Ctx, target: str, start: str | None, end: str | None, dry_run: bool) -> None:
    """Backfill TARGET's gap from IoT Central's query API (here, not through the queue).

    Rebuilds the rows the export would have written (filter and jq transform), skips those ADX
    already holds and ingests the rest tagged per chunk; observe mode and --dry-run only plan.
    """
    from shared.backfill.engine import BackfillEngine
    from shared.cli.progress import BackfillProgress
    from shared.runs.backfill import Backfill, BadWindow, backfill_message, backfill_mode, resolve_window
    from shared.runs.fencing import Run
    from shared.runs.remedy import Step

    healer = obj.healer()
    tgt = obj.target(target)
    state = healer.s.store.load(tgt.key)
    try:
        first, last = resolve_window(start, end, state, healer.s.clock(), field="--from/--to")
    except BadWindow as exc:
        raise click.UsageError(str(exc)) from exc
    mode = "plan" if dry_run else backfill_mode(healer.s.settings)
    msg = backfill_message(tgt.key, first, last, mode, "cli", "operator backfill")
    with BackfillProgress(None if obj.as_json else _console(), f"backfill {tgt.key}") as display:
        engine = BackfillEngine(healer.s, healer.s.ingestor)

        def window_done(point: str) -> None:
            # The engine journals its progress before this checkpoint: one read per window.
            if point == "backfill:window-done" and display.enabled:
                progress = engine.load(tgt.key, msg.run_id)
                if progress is not None:
                    display.update(progress.to_dict())

        healer.s.checkpoint = window_done
        step = Step(healer, Run(healer.s, tgt.key, msg.run_id), tgt, msg)
        outcome = Backfill().begin(step, state, budget_s=86400)
    gap = healer.s.store.load(tgt.key).gap or {}
    data = {"target": tgt.key, "run_id": msg.run_id, "outcome": outcome.status, "detail": outcome.detail, "gap": gap}

    def show() -> None:
        console = _console()
        console.print(f"[bold]{tgt.key}[/]: {outcome.status} — {outcome.detail}")
        for note in gap.get("unrecoverable", []):
            console.print(f"  not recoverable: {note}")

    obj.emit(data, show)
    if outcome.status == "skipped":
        sys.exit(EXIT_NOT_QUEUED)
    if outcome.status == "backfill-refused":
        sys.exit(EXIT_ESCALATED)
    sys.exit(EXIT_PROBLEM if mode == "plan" and gap.get("rows_missing") else EXIT_OK)


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
    from shared.report.model import collect
    from shared.report.page import render_html

    healer = obj.healer()
    if target:
        obj.target(target)
    runs = collect(healer.s.store, target, limit)
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


@main.command()
@click.argument("target")
@click.option("--yes", is_flag=True, help="Really clear the escalation.")
@click.pass_obj
def resume(obj: Ctx, target: str, yes: bool) -> None:
    """Clear TARGET's escalation (after people fixed what the healer could not) and its attempts."""
    healer = obj.healer()
    obj.target(target)
    state = healer.s.store.load(target)
    if not yes:
        obj.emit(
            {"target": target, "escalated": state.escalated, "reason": state.escalation_reason, "dry_run": True},
            lambda: _console().print(
                f"Would clear: escalated={state.escalated} ({state.escalation_reason}); add --yes"
            ),
        )
        sys.exit(EXIT_OK)

    def clear(st: Any) -> None:
        st.escalated, st.escalation_reason, st.attempts = False, "", []

    healer.s.store.update(target, clear)
    obj.emit({"target": target, "escalated": False}, lambda: _console().print(f"{target}: escalation cleared"))
    sys.exit(EXIT_OK)
