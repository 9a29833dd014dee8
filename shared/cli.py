"""Operator CLI: `python -m shared <command>`. The same steps the Function App runs, from a terminal.

Exit codes (stable, for scripts):
  0  done; the target is healthy, or nothing needed doing
  1  unexpected failure (a service could not be reached, ...)
  2  usage or configuration error
  3  a problem was found (diagnose, plan, or a heal dry run that would change something)
  4  the target is escalated, or the remediation did not heal it
  5  not queued: a remediation is in progress, queued, or the target is cooling down
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PROBLEM, EXIT_ESCALATED, EXIT_NOT_QUEUED = 0, 1, 2, 3, 4, 5


class Ctx:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._healer: Any = None

    def healer(self) -> Any:
        if self._healer is None:
            from shared.services import build_healer
            from shared.settings import load_settings

            settings = load_settings()
            self._healer = build_healer(settings)
        return self._healer

    def target(self, key: str) -> Any:
        from shared.runs import UnknownTarget

        try:
            return self.healer().target(key)
        except UnknownTarget as exc:
            raise click.UsageError(str(exc)) from exc

    def emit(self, data: Any, render: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            render()


def _console() -> Any:
    from rich.console import Console

    return Console()


def _load_settings_file(path: Path) -> None:
    """`local.settings.json` style: {"Values": {...}}; values already in the environment win."""
    data = json.loads(path.read_text())
    values = data.get("Values", data)
    if not isinstance(values, dict):
        raise click.BadParameter(f"{path} has no Values object", param_hint="--settings")
    for name, value in values.items():
        os.environ.setdefault(str(name), str(value))


def _use_sandbox(state_dir: Path) -> None:
    """Aim every setting at a running `make sandbox` (its endpoints.json)."""
    path = state_dir / "endpoints.json"
    if not path.exists():
        raise click.UsageError(f"{path} not found: start the sandbox first (make sandbox)")
    ep = json.loads(path.read_text())
    env = {
        "IDENTITY_ENDPOINT": ep["IDENTITY_ENDPOINT"],
        "IDENTITY_HEADER": ep["IDENTITY_HEADER"],
        "AzureWebJobsStorage": ep["storage_connection_string"],
        "HEALER_IOTC_BASE_URL": ep["iotcentral_base_url"],
        "HEALER_ARM_URL": ep["arm_url"],
        "HEALER_LOG_ANALYTICS_ENDPOINT": ep["loganalytics_endpoint"],
        "HEALER_LOG_ANALYTICS_WORKSPACE_ID": ep["loganalytics_workspace_id"],
    }
    os.environ.update(env)
    if "HEALER_TARGETS" not in os.environ and "HEALER_TARGETS_FILE" not in os.environ:
        import requests

        os.environ["HEALER_TARGETS"] = json.dumps(
            requests.get(f"{ep['control_url']}/healer-targets", timeout=10).json()
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--sandbox", is_flag=True, help="Use the local sandbox started by `make sandbox` (.sandbox/endpoints.json)."
)
@click.option(
    "--sandbox-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".sandbox"),
    show_default=True,
    help="Where the sandbox wrote endpoints.json.",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A local.settings.json whose Values are used as app settings.",
)
@click.pass_context
def main(ctx: click.Context, as_json: bool, sandbox: bool, sandbox_dir: Path, settings_file: Path | None) -> None:
    """iotc-adx-healer: diagnose and heal IoT Central exports into Azure Data Explorer.

    Settings come from the environment (the Function App's app settings: HEALER_*,
    AzureWebJobsStorage) or --settings. In Azure the credential is DefaultAzureCredential
    (your `az login`); with --sandbox it is the sandbox's managed identity.

    Exit codes: 0 ok, 1 failure, 2 usage/configuration, 3 problem found, 4 escalated or not
    healed, 5 not queued (in progress, queued or cooling down).
    """
    if settings_file:
        _load_settings_file(settings_file)
    if sandbox:
        _use_sandbox(sandbox_dir)
    ctx.obj = Ctx(as_json)


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

    obj.emit({"target": target, **d.to_dict()}, show)
    sys.exit(EXIT_OK if str(d.kind) == "healthy" else EXIT_PROBLEM)


def _plan(obj: Ctx, target: str) -> Any:
    _, plan = obj.healer().plan(obj.target(target), "cli-plan")
    return plan


def _show_plan(target: str, plan: Any) -> Callable[[], None]:
    def show() -> None:
        from rich.table import Table

        console = _console()
        console.print(f"[bold]{target}[/]: [cyan]{plan.diagnosis.kind}[/] — {plan.diagnosis.summary}")
        if not plan.actions:
            console.print("Nothing to do.")
            return
        table = Table("#", "action", "reason")
        for n, action in enumerate(plan.actions, 1):
            table.add_row(str(n), action.kind, action.reason)
        console.print(table)

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
        from rich.table import Table

        table = Table(
            "target", "table", "last outcome", "diagnosis", "in progress", "cooldown until", "escalated", "gap"
        )
        for r in rows:
            table.add_row(
                r["target"],
                f"{r['database']}.{r['table']}",
                r["last_outcome"],
                r["last_diagnosis"],
                "yes" if r["in_progress"] else "",
                r["cooldown_until"] or "",
                f"[red]{r['escalation_reason']}[/]" if r["escalated"] else "",
                _gap_text(r.get("gap")),
            )
        _console().print(table)

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

    def show() -> None:
        from rich.table import Table

        table = Table("when", "target", "trigger", "diagnosis", "actions", "outcome", "detail")
        for r in data:
            actions = ", ".join(a["action"] for a in json.loads(r["Actions"] or "[]"))
            table.add_row(
                str(r["At"])[:19],
                str(r["PartitionKey"]),
                str(r["Trigger"] or ""),
                str(r["Diagnosis"] or ""),
                actions,
                str(r["Outcome"]),
                str(r["Detail"] or "")[:80],
            )
        _console().print(table)

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
    outcome = Backfill().begin(Step(healer, Run(healer.s, tgt.key, msg.run_id), tgt, msg), state, budget_s=86400)
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


ROLE_IDS = {
    "administrator": "ca310b8d-2f4a-44e0-a36e-957c202cd8d4",
    "builder": "344138e9-8de4-4497-8c54-5237e96d6aaf",
}


@main.command("iotc-access")
@click.option("--app", "apps", multiple=True, required=True, help="IoT Central app subdomain (repeatable).")
@click.option("--object-id", required=True, help="Object (principal) id of the healer's managed identity.")
@click.option("--tenant-id", required=True, help="Tenant of the managed identity.")
@click.option(
    "--role",
    default="builder",
    show_default=True,
    help="builder, administrator, or the id of a custom role that can read and edit data exports.",
)
@click.option("--yes", is_flag=True, help="Really add the user. Without it, only say what would change.")
@click.pass_obj
def iotc_access(obj: Ctx, apps: tuple[str, ...], object_id: str, tenant_id: str, role: str, yes: bool) -> None:
    """Add the healer's identity to IoT Central apps as a user that can manage data exports.

    Idempotent: an app where the identity already holds the role is left alone.
    """
    from shared import kusto_names
    from shared.credentials import build_credential
    from shared.iotcentral import IoTCentralAdapter, IotcError
    from shared.settings import load_settings

    try:
        oid = kusto_names.guid("--object-id", object_id)
        tid = kusto_names.guid("--tenant-id", tenant_id)
        role_id = ROLE_IDS.get(role.lower()) or kusto_names.guid("--role", role)
    except kusto_names.UnsafeKustoValue as exc:
        raise click.UsageError(str(exc)) from exc
    settings = load_settings()
    adapter = IoTCentralAdapter(settings.iotc_base_url, build_credential(settings.identity_client_id), settings.arm_url)
    results: list[dict[str, Any]] = []
    for app in apps:
        try:
            users = list(adapter.pages(app, "/api/users"))
            mine = [u for u in users if str(u.get("objectId", "")).lower() == oid]
            holds = any(r.get("role") == role_id for u in mine for r in u.get("roles") or [])
            if holds:
                results.append({"app": app, "change": "none", "detail": "already a user with that role"})
                continue
            user_id = str(mine[0]["id"]) if mine else f"iotc-adx-healer-{oid[:8]}"
            roles = [*(mine[0].get("roles") or []), {"role": role_id}] if mine else [{"role": role_id}]
            body = {"type": "servicePrincipal", "tenantId": tid, "objectId": oid, "roles": roles}
            if yes:
                adapter.put_user(app, user_id, body)
            results.append(
                {"app": app, "change": "updated" if mine else "added", "user_id": user_id, "dry_run": not yes}
            )
        except IotcError as exc:
            results.append({"app": app, "change": "failed", "detail": str(exc)})

    def show() -> None:
        for r in results:
            suffix = " (dry run: add --yes)" if r.get("dry_run") else ""
            _console().print(f"{r['app']}: {r['change']}{suffix} {r.get('detail', '')}")

    obj.emit(results, show)
    sys.exit(EXIT_FAILED if any(r["change"] == "failed" for r in results) else EXIT_OK)


def run() -> None:
    from shared.targets import ConfigError

    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.Abort:
        sys.exit(EXIT_FAILED)
    except ConfigError as exc:
        click.echo(f"Configuration error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # a clear line, not a stack trace
        click.echo(f"Failed: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_FAILED)
