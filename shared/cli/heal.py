"""The commands that act on a target: heal (through the Function App's queue), backfill (here),
and resume (clearing an escalation). Each is a dry run unless told otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from shared.cli.diagnose import plan_of, show_plan
from shared.cli.group import EXIT_ESCALATED, EXIT_NOT_QUEUED, EXIT_OK, EXIT_PROBLEM, Ctx, _console, main


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
        result = plan_of(obj, target)
        obj.emit({"target": target, "dry_run": True, **result.to_dict()}, show_plan(target, result))
        sys.exit(EXIT_OK if not result.actions else EXIT_PROBLEM)
    from shared.detection.dispatch import request_remediation

    healer = obj.healer()
    request = request_remediation(healer.services, obj.target(target), "cli", reason="operator heal", manual=True)
    if not request.queued:
        obj.emit(
            {"target": target, "queued": False, "reason": request.reason},
            lambda: _console().print(f"Not queued: {request.reason}"),
        )
        sys.exit(EXIT_ESCALATED if request.reason.startswith("escalated") else EXIT_NOT_QUEUED)
    outcome = "queued"
    deadline = time.monotonic() + wait_s
    while wait_s and time.monotonic() < deadline:
        rows = [r for r in healer.services.store.read_history(target, limit=20) if r.get("RunId") == request.run_id]
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
    state = healer.services.store.load(tgt.key)
    try:
        first, last = resolve_window(start, end, state, healer.services.clock(), field="--from/--to")
    except BadWindow as exc:
        raise click.UsageError(str(exc)) from exc
    mode = "plan" if dry_run else backfill_mode(healer.services.settings)
    msg = backfill_message(tgt.key, first, last, mode, "cli", "operator backfill")
    with BackfillProgress(None if obj.as_json else _console(), f"backfill {tgt.key}") as display:
        engine = BackfillEngine(healer.services, healer.services.ingestor)

        def window_done(point: str) -> None:
            # The engine journals its progress before this checkpoint: one read per window.
            if point == "backfill:window-done" and display.enabled:
                progress = engine.load(tgt.key, msg.run_id)
                if progress is not None:
                    display.update(progress.to_dict())

        healer.services.checkpoint = window_done
        step = Step(healer, Run(healer.services, tgt.key, msg.run_id), tgt, msg)
        outcome = Backfill().begin(step, state, budget_s=86400)
    gap = healer.services.store.load(tgt.key).gap or {}
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
@click.argument("target")
@click.option("--yes", is_flag=True, help="Really clear the escalation.")
@click.pass_obj
def resume(obj: Ctx, target: str, yes: bool) -> None:
    """Clear TARGET's escalation (after people fixed what the healer could not) and its attempts."""
    healer = obj.healer()
    obj.target(target)
    state = healer.services.store.load(target)
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

    healer.services.store.update(target, clear)
    obj.emit({"target": target, "escalated": False}, lambda: _console().print(f"{target}: escalation cleared"))
    sys.exit(EXIT_OK)
