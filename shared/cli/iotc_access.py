"""`iotc-access`: make the healer's identity an IoT Central user that can manage data exports."""

from __future__ import annotations

import sys
from typing import Any

import click

from shared.cli.group import EXIT_FAILED, EXIT_OK, Ctx, _console, main

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
    from shared.adapters.iotcentral import IoTCentralAdapter
    from shared.adapters.iotcentral_model import IotcError
    from shared.config.credentials import build_credential
    from shared.config.settings import load_settings
    from shared.domain import kusto_names

    try:
        oid = kusto_names.guid("--object-id", object_id)
        tid = kusto_names.guid("--tenant-id", tenant_id)
        role_id = ROLE_IDS.get(role.lower()) or kusto_names.guid("--role", role)
    except kusto_names.UnsafeKustoValue as exc:
        raise click.UsageError(str(exc)) from exc
    settings = load_settings()
    adapter = IoTCentralAdapter(
        settings.iotc_base_url,
        build_credential(settings.identity_client_id),
        settings.arm_url,
        timeout_s=settings.http_timeout_seconds,
        retry_budget_s=settings.http_retry_budget_seconds,
    )
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
