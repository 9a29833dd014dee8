"""The doctor against the sandbox: everything in place, each permission and resource removed in
turn (one failing line that names the fix), a transport fault (cannot tell), and only reads sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from sandbox import sdk
from sandbox.azurite import Azurite
from sandbox.entra import TENANT_ID
from sandbox.healer_config import ALERT_AUDIENCE, targets_for
from sandbox.world import World
from shared.config.settings import Settings
from shared.doctor.findings import DoctorReport
from shared.doctor.preflight import run_doctor
from tests.support.healer_env import settings_values

READ_ONLY_KUSTO = (".show ",)


def doctor_settings(world: World, azurite: Azurite, **overrides: Any) -> Settings:
    """Settings of a healer configured for contoso's target, with every optional part set."""
    endpoints = world.endpoints()
    values = settings_values(
        world,
        azurite,
        targets=json.dumps([t for t in targets_for(world) if t["app"] == "contoso"]),
        log_analytics_endpoint=endpoints["loganalytics_endpoint"],
        log_analytics_workspace_id=endpoints["loganalytics_workspace_id"],
        alert_audience=ALERT_AUDIENCE,
        alert_tenant_id=TENANT_ID,
        entra_authority=endpoints["entra_authority"],
        notify_webhook=endpoints["notify_webhook_url"],
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every HTTP request any SDK in this process sends (method, URL): observed, then passed on."""
    from requests.adapters import HTTPAdapter

    seen: list[tuple[str, str]] = []
    original = HTTPAdapter.send

    def send(self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        seen.append((str(request.method), str(request.url)))
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(HTTPAdapter, "send", send)
    yield seen


def run(world: World, azurite: Azurite, **overrides: Any) -> DoctorReport:
    return run_doctor(doctor_settings(world, azurite, **overrides), sdk.credential())


def failing(report: DoctorReport) -> list[Any]:
    return [c for c in report.checks if c.status == "fail"]


def test_everything_in_place_passes_and_only_reads(world: World, azurite: Azurite, sent: list[tuple[str, str]]) -> None:
    world.la.append(world.workspace.workspace_id, "FailedIngestion", {"Database": "devicedata"})
    log_start = len(world.cluster.command_log)
    notified = len(world.notifications)
    report = run(world, azurite)
    assert report.ok, [c for c in report.checks if c.blocking]
    assert not failing(report)
    names = {(c.scope, c.name): c.status for c in report.checks}
    for name in ("adx-role", "adx-table", "iotc-export", "arm-identity"):
        assert names[("target contoso:export-1:adx-1", name)] == "pass"
    assert names[("app contoso", "iotc-access")] == "pass"
    assert names[("storage", "tables-and-queue")] == "pass"
    assert names[("log analytics", "workspace")] == "pass"
    assert names[("log analytics", "failed-ingestion-rows")] == "pass"
    assert names[("log analytics", "journal-rows")] == "cannot-tell"  # no row: said, not required
    assert names[("alert webhook", "alert-settings")] == "pass"
    assert names[("notifications", "notify-webhook")] == "pass"
    assert report.identity == world.healer.fqn
    # Nothing changed: Kusto got only .show commands and queries; every other request was a read.
    commands = [text for _, _, text in world.cluster.command_log[log_start:]]
    assert commands and all(t.lstrip().startswith(READ_ONLY_KUSTO) or not t.startswith(".") for t in commands)
    kusto, la = world.servers["kusto"].url, world.servers["loganalytics"].url
    for method, url in sent:
        if url.startswith(kusto) and method != "GET":  # GET: the SDK's cloud-settings lookup
            assert method == "POST" and url.split("?")[0].endswith(("/v1/rest/mgmt", "/v2/rest/query")), url
        elif url.startswith(la):
            assert method == "POST" and url.split("?")[0].endswith("/query"), url
        else:
            assert method in ("GET", "HEAD"), (method, url)
    assert any(url.startswith(world.servers["iotcentral"].url) for _, url in sent)
    assert any(":" + str(azurite.ports["table"]) in url for _, url in sent)
    assert len(world.notifications) == notified  # the notification webhook is never called


def _no_iotc_user(world: World) -> None:
    app = world.iotc.apps["contoso"]
    for user_id, user in list(app.users.items()):
        if user["objectId"] == world.healer.object_id:
            del app.users[user_id]


def _no_workspace_reader(world: World) -> None:
    world.workspace.readers.discard(world.healer.object_id)


def _no_arm_reader(world: World) -> None:
    world.iotc.apps["contoso"].arm_denied.add(world.healer.object_id)


REMOVED: list[tuple[str, Callable[[World], Any], dict[str, Any], str, str]] = [
    ("healer-not-admin", lambda w: w.inject("healer-not-admin", "contoso"), {}, "adx-role", ".add database"),
    ("table-missing", lambda w: w.inject("table-missing", "contoso"), {}, "adx-table", ".create table"),
    ("iotc-user-removed", _no_iotc_user, {}, "iotc-access", "python -m shared iotc-access --app contoso"),
    ("arm-reader-removed", _no_arm_reader, {}, "arm-identity", "--role Reader --scope /subscriptions/"),
    ("workspace-reader-removed", _no_workspace_reader, {}, "workspace", "'Log Analytics Reader'"),
    (
        "storage-key-wrong",
        lambda w: None,
        {"storage_connection_string": "wrong-key"},
        "tables-and-queue",
        "AzureWebJobsStorage",
    ),
    ("alert-tenant-unset", lambda w: None, {"alert_tenant_id": None}, "alert-settings", "HEALER_ALERT_TENANT_ID="),
]


@pytest.mark.parametrize(("case", "remove", "overrides", "check", "fix"), REMOVED, ids=[r[0] for r in REMOVED])
def test_each_thing_removed_fails_one_line_naming_the_fix(
    world: World,
    azurite: Azurite,
    case: str,
    remove: Callable[[World], Any],
    overrides: dict[str, Any],
    check: str,
    fix: str,
) -> None:
    remove(world)
    if case == "storage-key-wrong":
        good = azurite.connection_string
        key = next(p.split("=", 1)[1] for p in good.split(";") if p.startswith("AccountKey="))
        overrides = {"storage_connection_string": good.replace(key, "d3Jvbmcta2V5" * 8)}
    report = run(world, azurite, **overrides)
    failed = failing(report)
    assert [c.name for c in failed] == [check], [(c.name, c.why) for c in failed]
    assert fix in failed[0].fix, failed[0].fix
    assert failed[0].why
    assert not report.ok


def test_a_missing_database_and_export_name_their_settings(world: World, azurite: Azurite) -> None:
    target = next(t for t in targets_for(world) if t["app"] == "contoso")
    wrong = [{**target, "database": "nosuchdb"}, {**target, "export_id": "export-9", "database": "devicedata"}]
    report = run(world, azurite, targets=json.dumps(wrong))
    fails = {(c.scope.split(":")[1], c.name): c for c in failing(report)}
    assert set(fails) == {("export-1", "adx-role"), ("export-9", "iotc-export")}
    assert "nosuchdb" in fails[("export-1", "adx-role")].why
    assert "'export_id'" in fails[("export-9", "iotc-export")].fix


def test_a_transport_fault_is_cannot_tell_not_a_crash(world: World, azurite: Azurite) -> None:
    world.set_transport("kusto", reset_rate=1.0)
    world.set_transport("iotcentral", error_rate=1.0, error_status=503)
    report = run(world, azurite, kusto_retry_budget_seconds=1, http_retry_budget_seconds=1)  # retries bounded
    statuses = {(c.scope, c.name): c for c in report.checks}
    role = statuses[("target contoso:export-1:adx-1", "adx-role")]
    assert role.status == "cannot-tell" and "no answer" in role.why
    assert statuses[("target contoso:export-1:adx-1", "adx-table")].status == "cannot-tell"
    assert statuses[("app contoso", "iotc-access")].status == "cannot-tell"
    assert not failing(report)
    assert not report.ok  # what could not be told is not ready
    assert statuses[("storage", "tables-and-queue")].status == "pass"  # the rest still checked


def test_an_apps_destinations_are_checked_before_discovery_knows_them(world: World, azurite: Azurite) -> None:
    apps = [
        {
            "app": "contoso",
            "iotc_resource_id": world.iotc.apps["contoso"].arm_id,
            "clusters": [world.cluster.url],
            "databases": ["devicedata"],
        }
    ]
    report = run(world, azurite, targets="[]", apps=json.dumps(apps))
    checks = {(c.scope, c.name): c.status for c in report.checks}
    assert report.ok, [c for c in report.checks if c.blocking]
    assert checks[("app contoso destination adx-1", "adx-role")] == "pass"
    assert checks[("app contoso destination adx-1", "adx-table")] == "pass"
    assert checks[("app contoso", "arm-identity")] == "pass"
    world.inject("healer-not-admin", "contoso")
    failed = failing(run(world, azurite, targets="[]", apps=json.dumps(apps)))
    assert [(c.scope, c.name) for c in failed] == [("app contoso destination adx-1", "adx-role")]
    # A destination pointing where the app is not allowed is left to detection's report.
    elsewhere = [{**apps[0], "databases": ["plantdata"]}]
    report = run(world, azurite, targets="[]", apps=json.dumps(elsewhere))
    assert not any(c.scope.startswith("app contoso destination") for c in report.checks)


def test_a_check_that_breaks_unforeseen_is_a_line_not_a_crash(
    world: World, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.doctor.iotc import IotcChecks

    def broken(self: IotcChecks, scope: str, target: Any) -> None:
        raise RuntimeError("an answer no branch foresaw")

    monkeypatch.setattr(IotcChecks, "export_and_destination", broken)
    report = run(world, azurite)
    line = next(c for c in report.checks if c.name == "check")
    assert line.scope == "target contoso:export-1:adx-1" and line.status == "cannot-tell"
    assert "RuntimeError: an answer no branch foresaw" in line.why
    assert not report.ok and any(c.scope == "alert webhook" for c in report.checks)  # the rest still ran
