"""The reading commands: diagnose, checklist and plan for one target. They change nothing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from shared.cli.group import EXIT_OK, EXIT_PROBLEM, Ctx, _console, main
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


def plan_of(obj: Ctx, target: str) -> Any:
    _, plan = obj.healer().plan(obj.target(target), "cli-plan")
    return plan


def show_plan(target: str, plan: Any) -> Callable[[], None]:
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
    result = plan_of(obj, target)
    obj.emit({"target": target, **result.to_dict()}, show_plan(target, result))
    sys.exit(EXIT_OK if not result.actions else EXIT_PROBLEM)
