"""The Functions app through the local trigger runner: HTTP routes, the alert webhook, the queue's
dead-lettering and the detection cycle, all against the sandbox and Azurite."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.arm_ids import ADX_RESOURCE_ID
from sandbox.healer_config import ALERT_AUDIENCE
from sandbox.runner import Runner
from sandbox.world import World
from shared import entrypoints
from shared.adapters.loganalytics import failed_ingestion_query
from tests.support.function_calls import CONTOSO, broken, call
from tests.support.helpers import wait_until
from tests.support.kusto_parser import parse_all

pytestmark = pytest.mark.integration


def webhook_token(world: World, **claims: Any) -> str:
    """What an action group's secure webhook sends for the healer's webhook application."""
    return world.directory.mint_action_group(ALERT_AUDIENCE, **claims)


def post_alert(world: World, runner: Runner, body: Any) -> requests.Response:
    return call(runner, "POST", "alerts", body, key=False, token=webhook_token(world))


def test_health_and_key_check(app: tuple[World, Runner]) -> None:
    _, runner = app
    assert call(runner, "GET", "health").json() == {
        "status": "ok",
        "mode": "enforce",
        "targets": 2,
        "apps": 0,
        "overdue_readds": 0,
        "overdue_targets": [],
        "poisoned_messages": 0,
        "failed_apps": {},
    }
    assert call(runner, "GET", "health", key=False).status_code == 401
    assert requests.get(f"{runner.url}/api/health?code={runner.key}", timeout=10).status_code == 200
    assert call(runner, "DELETE", "health").status_code == 405
    assert call(runner, "GET", "nowhere").status_code == 404


def test_deep_health_runs_the_doctor(app: tuple[World, Runner]) -> None:
    from tests.support.openapi_check import check

    world, runner = app
    url = f"{runner.url}/api/health?deep=true"
    assert requests.get(url, timeout=60).status_code == 401  # the function key, as for the shallow check
    log_start = len(world.cluster.command_log)
    answer = requests.get(url, headers={"x-functions-key": runner.key}, timeout=60)
    check("health", "GET", answer)
    body = answer.json()
    assert body["status"] == "ok" and body["ok"] is True, [c for c in body["checks"] if c["status"] != "pass"]
    scopes = {c["scope"] for c in body["checks"]}
    assert {"target contoso:export-1:adx-1", "target fabrikam:export-1:adx-1", "storage"} <= scopes
    commands = [text for _, _, text in world.cluster.command_log[log_start:]]
    assert commands and all(not t.startswith(".") or t.startswith(".show ") for t in commands)
    world.inject("healer-not-admin", "contoso")
    body = requests.get(url, headers={"x-functions-key": runner.key}, timeout=60).json()
    assert body["status"] == "not-ready"
    assert [c["name"] for c in body["checks"] if c["status"] == "fail"] == ["adx-role", "adx-role"]  # one database


def test_targets_route(app: tuple[World, Runner]) -> None:
    _, runner = app
    rows = call(runner, "GET", "targets").json()["targets"]
    assert [r["target"] for r in rows] == [CONTOSO, "fabrikam:export-1:adx-1"]
    assert set(rows[0]) >= {"last_outcome", "cooldown_until", "escalated", "in_progress", "pending_readd"}


def test_heal_dry_run_plans_and_changes_nothing(app: tuple[World, Runner]) -> None:
    world, runner = app
    world.inject("stale-permission", "contoso")
    wait_until(lambda: broken(world), 10, "the break")
    before = len(world.cluster.command_log)
    answer = call(runner, "POST", "heal", {"target": CONTOSO, "dry_run": True})
    assert answer.status_code == 200
    plan = answer.json()["plan"]
    assert plan["diagnosis"]["kind"] == "principal-stale"
    assert [a["action"] for a in plan["actions"]] == ["recreate-destination", "refresh", "verify"]
    assert plan["diagnosis"]["checklist"]  # the forum's checklist is part of every diagnosis
    assert not [t for _, _, t in world.cluster.command_log[before:] if t.startswith((".add", ".drop"))]


def test_heal_enqueues_once_and_heals(app: tuple[World, Runner]) -> None:
    world, runner = app
    world.inject("principal-removed", "contoso")
    wait_until(lambda: broken(world), 10, "the break")
    first = call(runner, "POST", "heal", {"target": CONTOSO})
    second = call(runner, "POST", "heal", {"target": CONTOSO})
    assert first.status_code == 202 and first.json()["queued"] is True
    assert second.status_code == 409 and second.json()["queued"] is False
    wait_until(lambda: call(runner, "GET", "targets").json()["targets"][0]["last_outcome"] == "healed", 30, "healed")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        ({"target": "nope:e:d"}, "application/json", 404, "target"),
        ({"target": "not a target key"}, "application/json", 400, "target"),
        ({"target": "a:b"}, "application/json", 400, "target"),
        ({"target": 5}, "application/json", 400, "target"),
        ({}, "application/json", 400, "target"),
        ({"target": CONTOSO, "dry_run": "yes"}, "application/json", 400, "dry_run"),
        ({"target": CONTOSO, "force": True}, "application/json", 400, "force"),
        ([1, 2], "application/json", 400, "body"),
        ({"target": CONTOSO}, "text/plain", 415, "Content-Type"),
    ],
)
def test_heal_bad_input(app: tuple[World, Runner], body: Any, content_type: str, status: int, field: str) -> None:
    _, runner = app
    answer = call(runner, "POST", "heal", body, content_type=content_type)
    assert answer.status_code == status
    assert answer.json()["error"]["field"] == field


def test_heal_body_too_large_or_not_json(app: tuple[World, Runner]) -> None:
    _, runner = app
    assert call(runner, "POST", "heal", raw=b"{" + b" " * 70000 + b"}").status_code == 413
    assert call(runner, "POST", "heal", raw=b"{nope").json()["error"]["code"] == "InvalidJson"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from([("POST", "heal"), ("POST", "alerts"), ("GET", "targets"), ("GET", "health")]),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
            max_leaves=10,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=utf-8"]),
)
def test_random_bodies_never_get_a_5xx(
    app: tuple[World, Runner], route: tuple[str, str], payload: bytes, content_type: str
) -> None:
    world, runner = app
    token = webhook_token(world) if route[1] == "alerts" else None
    answer = call(runner, route[0], route[1], raw=payload, content_type=content_type, token=token)
    assert answer.status_code < 500, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")


def alert(
    database: str, table: str, condition: str = "Fired", alert_id: str | None = None, cluster: str | None = None
) -> dict[str, Any]:
    dimensions = [{"name": "Database", "value": database}, {"name": "Table", "value": table}]
    if cluster is not None:
        dimensions.append({"name": "_ResourceId", "value": cluster})
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": alert_id or f"/subscriptions/x/alerts/{uuid.uuid4()}",
                "alertRule": "forbidden",
                "monitorCondition": condition,
                "monitoringService": "Log Alerts V2",
                "alertTargetIDs": [],
            },
            "alertContext": {
                "conditionType": "LogQueryCriteria",
                "condition": {"allOf": [{"dimensions": dimensions}]},
            },
        },
    }


def test_an_alert_from_another_cluster_starts_nothing(app: tuple[World, Runner]) -> None:
    """The sandbox's cluster is on loopback; only its resource id (HEALER_TARGETS'
    cluster_resource_id) matches it, and an alert naming another cluster in the same workspace
    starts nothing."""
    world, runner = app
    runner.pause_timer()
    other = ADX_RESOURCE_ID.rsplit("/", 1)[0] + "/adxelsewhere"
    elsewhere = post_alert(world, runner, alert("devicedata", "DeviceTelemetry", cluster=other))
    assert elsewhere.status_code == 202 and elsewhere.json()["targets"] == []
    here = post_alert(world, runner, alert("devicedata", "DeviceTelemetry", cluster=ADX_RESOURCE_ID))
    assert here.status_code == 202 and here.json()["queued"] == [CONTOSO]


def test_alert_fired_resolved_and_repeated(app: tuple[World, Runner]) -> None:
    world, runner = app
    runner.pause_timer()
    world.inject("principal-removed", "contoso")
    wait_until(lambda: broken(world), 10, "the break")
    fired = alert("devicedata", "DeviceTelemetry", alert_id="/subscriptions/x/alerts/one")
    started = time.monotonic()
    first = post_alert(world, runner, fired)
    assert time.monotonic() - started < 1.0
    assert first.status_code == 202 and first.json()["queued"] == [CONTOSO]
    again = post_alert(world, runner, fired)
    assert again.status_code == 202 and again.json().get("duplicate") is True
    resolved = post_alert(
        world, runner, alert("devicedata", "DeviceTelemetry", "Resolved", "/subscriptions/x/alerts/one")
    )
    assert resolved.status_code == 202 and resolved.json()["queued"] == [] and "resolved" in resolved.json()["note"]
    nothing = post_alert(world, runner, alert("otherdb", "Other"))
    assert nothing.json()["targets"] == [] and "no configured" in nothing.json()["note"]
    wait_until(lambda: call(runner, "GET", "targets").json()["targets"][0]["last_outcome"] == "healed", 30, "healed")


def test_an_alert_whose_queueing_failed_is_not_a_duplicate_when_retried(app: tuple[World, Runner]) -> None:
    world, runner = app
    runner.pause_timer()
    world.inject("principal-removed", "contoso")
    wait_until(lambda: broken(world), 10, "the break")
    queue = entrypoints.composition().healer.services.queue
    real_send = queue.send
    failures: list[str] = []

    def broken_send(body: str, delay_s: float = 0) -> None:
        failures.append(body)
        raise ConnectionError("storage unreachable")

    queue.send = broken_send  # type: ignore[method-assign]
    fired = alert("devicedata", "DeviceTelemetry", alert_id="/subscriptions/x/alerts/retried")
    try:
        first = post_alert(world, runner, fired)
    finally:
        queue.send = real_send  # type: ignore[method-assign]
    assert first.status_code == 503 and failures  # the action group will retry
    again = post_alert(world, runner, fired)
    assert again.status_code == 202 and again.json().get("duplicate") is None
    assert again.json()["queued"] == [CONTOSO]
    wait_until(lambda: call(runner, "GET", "targets").json()["targets"][0]["last_outcome"] == "healed", 30, "healed")


def test_alert_storm_starts_exactly_one_remediation(app: tuple[World, Runner]) -> None:
    world, runner = app
    runner.pause_timer()
    world.inject("stale-permission", "contoso")
    wait_until(lambda: broken(world), 10, "the break")
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def fire(n: int) -> None:
        response = post_alert(world, runner, alert("devicedata", "DeviceTelemetry", alert_id=f"storm-{n % 150}"))
        with lock:
            answers.append(response)

    started = time.monotonic()
    threads = [threading.Thread(target=fire, args=(n,)) for n in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert time.monotonic() - started < 10
    assert len(answers) == 200 and {a.status_code for a in answers} == {202}
    assert sum(len(a.json()["queued"]) for a in answers) == 1
    wait_until(lambda: call(runner, "GET", "targets").json()["targets"][0]["last_outcome"] == "healed", 30, "healed")
    drops = [t for _, _, t in world.cluster.command_log if t.startswith(".drop")]
    assert len(drops) == 1


def test_malformed_queue_messages_are_dead_lettered_and_never_acted_on(app: tuple[World, Runner]) -> None:
    world, runner = app
    services = entrypoints.composition().healer.services
    services.queue.ensure()  # the runner's listener may not have created it yet
    queue, dead = services.queue.client, services.queue.dead
    before = len(world.cluster.command_log)
    bodies = [
        b"not json",
        b'{"target": "contoso:export-1:adx-1"}',
        b'{"target": "ghost:e:d", "run_id": "' + b"0" * 32 + b'", "correlation_id": "c"}',
        json.dumps({"step": "drop"}).encode(),
    ]
    for raw in bodies:
        queue.send_message(raw)  # the client base64-encodes, as the host expects

    def parked() -> list[dict[str, Any]]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [json.loads(m.content) for m in dead.peek_messages(max_messages=32)]
        except ResourceNotFoundError:  # the dead-letter queue is created by its first message
            return []

    wait_until(lambda: len(parked()) == len(bodies), 20, "every malformed message to be dead-lettered")
    reasons = [p["reason"] for p in parked()]
    assert any("not JSON" in r for r in reasons)
    assert any("run_id: Field required" in r for r in reasons)
    assert any("ghost:e:d" in r for r in reasons)
    assert not [t for _, _, t in world.cluster.command_log[before:] if t.startswith((".add", ".drop"))]
    assert runner.stats.poisoned == 0


def test_detection_cycle_finds_each_fault_once_per_workspace(app: tuple[World, Runner]) -> None:
    world, runner = app
    runner.pause_timer()
    world.inject("stale-permission", "contoso")
    world.inject("table-missing", "fabrikam")
    wait_until(lambda: broken(world) and broken(world, "fabrikam"), 10, "both breaks")
    logs = entrypoints.composition().detector.logs
    assert logs is not None
    queries = len(logs.queries)
    report = entrypoints.timer_tick()
    assert len(logs.queries) == queries + 1  # one Log Analytics query per workspace per cycle
    findings = {f["target"]: f for f in report["findings"]}
    assert findings[CONTOSO]["permission"] is True
    assert set(findings[CONTOSO]["signals"]) == {"iotcentral", "loganalytics"}
    assert findings["fabrikam:export-1:adx-1"]["permission"] is False
    assert sorted(report["enqueued"]) == sorted(findings)
    again = entrypoints.timer_tick()
    assert again["enqueued"] == [] and set(again["skipped"]) == set(findings)


def test_detection_queries_parse() -> None:
    assert [r.errors for r in parse_all([failed_ingestion_query(30), failed_ingestion_query(1440)])] == [(), ()]


@pytest.mark.parametrize(
    ("fault", "permission"),
    [
        ("stale-permission", True),
        ("principal-removed", True),
        ("identity-rotated", True),
        ("table-level-only", True),
        ("healer-not-admin", True),
        ("table-missing", False),
    ],
)
def test_detection_classifies_every_sandbox_fault(app: tuple[World, Runner], fault: str, permission: bool) -> None:
    world, runner = app
    runner.pause_timer()
    world.inject(fault, "contoso")
    wait_until(lambda: broken(world), 10, "the break")
    wait_until(lambda: bool(world.workspace.tables["FailedIngestion"]), 10, "a FailedIngestion row")
    report = entrypoints.timer_tick()
    findings = {f["target"]: f for f in report["findings"]}
    assert list(findings) == [CONTOSO]  # the healthy app yields no finding
    assert findings[CONTOSO]["permission"] is permission
    assert set(findings[CONTOSO]["signals"]) == {"iotcentral", "loganalytics"}
    assert findings[CONTOSO]["count"] >= 2 and findings[CONTOSO]["last_seen"]
    assert report["enqueued"] == [CONTOSO]


def test_discovered_targets_are_detected_and_healed(app: tuple[World, Runner]) -> None:
    world, runner = app
    runner.pause_timer()
    apps = [
        {
            "app": name,
            "iotc_resource_id": world.iotc.apps[name].arm_id,
            "clusters": [world.cluster.url],
            "cluster_resource_ids": {world.cluster.url: ADX_RESOURCE_ID},
        }
        for name in ("contoso", "fabrikam")
    ]
    runner.set_app_setting("HEALER_TARGETS", "[]")
    runner.set_app_setting("HEALER_APPS", json.dumps(apps))
    entrypoints.reset()
    world.inject("principal-removed", "contoso")
    wait_until(lambda: broken(world), 10, "the break")
    wait_until(lambda: bool(world.workspace.tables["FailedIngestion"]), 10, "a FailedIngestion row")
    report = entrypoints.timer_tick()
    assert report["targets"] == 2 and report["enqueued"] == [CONTOSO]
    # The log rows name the sandbox's cluster by resource id: they reach the discovered target too.
    (finding,) = [f for f in report["findings"] if f["target"] == CONTOSO]
    assert "loganalytics" in finding["signals"]
    rows = {r["target"]: r for r in call(runner, "GET", "targets").json()["targets"]}
    assert set(rows) == {CONTOSO, "fabrikam:export-1:adx-1"} and rows[CONTOSO]["database"] == "devicedata"
    wait_until(lambda: call(runner, "GET", "targets").json()["targets"][0]["last_outcome"] == "healed", 30, "healed")


def test_a_message_that_keeps_failing_goes_to_the_poison_queue(app: tuple[World, Runner]) -> None:
    world, runner = app
    runner.pause_timer()
    runner.set_app_setting("HEALER_KUSTO_RETRY_BUDGET_SECONDS", "0.5")
    entrypoints.reset()
    services = entrypoints.composition().healer.services
    world.set_transport("kusto", error_rate=1.0)  # ADX answers 503 to everything
    from shared.adapters.storage import queue_client
    from shared.domain.messages import new_run

    services.queue.send(new_run(CONTOSO, "http").to_json())
    poison = queue_client(f"{services.settings.queue_name}-poison", services.settings.storage_connection_string)
    wait_until(lambda: runner.stats.poisoned == 1, 60, "the message to reach the poison queue")
    assert runner.stats.failures["remediate"] == runner.max_dequeue == 5
    (parked,) = poison.peek_messages()
    assert json.loads(parked.content)["target"] == CONTOSO


def test_heal_backfill_option(app: tuple[World, Runner]) -> None:
    """`backfill` on /api/heal: validated, naming the field; a window queues a backfill-only run."""
    _, runner = app
    for body, field in (
        ({"target": CONTOSO, "backfill": 5}, "backfill"),
        ({"target": CONTOSO, "backfill": True}, "backfill"),  # no gap measured yet
        ({"target": CONTOSO, "backfill": {"from": "yesterday"}}, "backfill"),
        ({"target": CONTOSO, "backfill": {"from": "2026-01-01T00:00:00", "to": "2026-01-01T01:00:00Z"}}, "backfill"),
        ({"target": CONTOSO, "backfill": {"since": "2026-01-01T00:00:00Z"}}, "backfill.since"),
    ):
        answer = call(runner, "POST", "heal", body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]["field"] == field, answer.text
    now = time.time()
    window = {
        "from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 120)),
        "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }
    answer = call(runner, "POST", "heal", {"target": CONTOSO, "dry_run": True, "backfill": window})
    assert answer.status_code == 202, answer.text
    assert answer.json()["backfill"] == "plan" and answer.json()["window"]["from"].startswith(window["from"][:19])
    healer = entrypoints.composition().healer
    wait_until(
        lambda: any(h["Outcome"] == "backfill-planned" for h in healer.services.store.read_history(CONTOSO)),
        20,
        "the planned backfill in the history",
    )
    rows = call(runner, "GET", "targets").json()["targets"]
    gap = next(r for r in rows if r["target"] == CONTOSO)["gap"]
    assert gap["status"] == "done" and gap["backfill"] == "plan" and gap["rows_expected"] == 0
