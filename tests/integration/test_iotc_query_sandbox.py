"""The sandbox's IoT Central query API and device templates, through an azure-core pipeline:
the documented limits are enforced (400 for more than 15 items, more than 350 characters, more
than 10 logical operations, `*`, telemetry mixed with properties; at most 10,000 records; about
one request per second per app), and retention is 30 days."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.rest import HttpRequest

from sandbox import backfill_fleet, sdk
from sandbox.iotc.data import Message, QueryError, QueryThrottle
from sandbox.world import World

pytestmark = pytest.mark.integration
API = {"api-version": "2022-10-31-preview"}


@pytest.fixture
def fleet_app(world: World, credential: Any) -> Any:
    backfill_fleet.add_fleet_app(world, "fleet", "FleetTelemetry", extra_telemetry=20)
    world.iotc.query_throttle.interval_s = 0  # the throttle has its own test below
    client = sdk.iotc_client(world.endpoints()["iotcentral_base_url"].format(subdomain="fleet"), credential)

    def query(text: str) -> tuple[int, Any]:
        request = HttpRequest("POST", client.format_url("/api/query"), params=API, json={"query": text})
        response = client.send_request(request, enforce_https=False)
        return response.status_code, response.json()

    return world, query


def window(minutes: int = 5) -> str:
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=minutes), now + timedelta(minutes=1)
    return f"WITHIN_WINDOW('{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}')"


def test_templates_and_devices_are_listed(world: World, credential: Any) -> None:
    backfill_fleet.add_fleet_app(world, "fleet", "FleetTelemetry")
    client = sdk.iotc_client(world.endpoints()["iotcentral_base_url"].format(subdomain="fleet"), credential)
    templates = list(sdk.iotc_pages(client, "/api/deviceTemplates"))
    assert [t["@id"] for t in templates] == [backfill_fleet.THERMOSTAT, backfill_fleet.PUMP]
    assert templates[0]["capabilityModel"]["contents"][0]["@type"] == "Telemetry"
    devices = list(sdk.iotc_pages(client, "/api/devices"))
    assert {d["template"] for d in devices} == {backfill_fleet.THERMOSTAT, backfill_fleet.PUMP}


def test_the_documented_limits_are_enforced(fleet_app: Any) -> None:
    world, query = fleet_app
    world.export_once()
    pump = backfill_fleet.PUMP
    status, body = query(f"SELECT $id, $ts, pressure, flow FROM {pump} WHERE {window()}")
    assert status == 200 and body["results"] and set(body["results"][0]) == {"$id", "$ts", "pressure", "flow"}
    sixteen = ", ".join(f"vibration{n:02d}" for n in range(14))
    refused = {
        "16 items": f"SELECT $id, $ts, {sixteen} FROM {pump}",
        "351 characters": f"SELECT $id, $ts, pressure FROM {pump} WHERE {window()}" + " AND pressure > 0" * 20,
        "wildcard": f"SELECT * FROM {pump}",
        "11 logical operations": f"SELECT $id, pressure FROM {pump} WHERE {window()}" + " AND flow > 0" * 11,
        "telemetry and properties": f"SELECT $id, pressure, firmware FROM {pump}",
        "an unknown capability": f"SELECT $id, torque FROM {pump}",
    }
    for reason, text in refused.items():
        status, body = query(text)
        assert (status, body["error"]["code"]) == (400, "InvalidQuery"), reason
    status, body = query(f"SELECT $id FROM dtmi:contoso:unknown;1 WHERE {window()}")
    assert (status, body["error"]["code"]) == (404, "NotFound")
    status, body = query(refused["16 items"])
    assert status == 400 and "15" in body["error"]["message"]
    long_text = refused["351 characters"]
    assert len(long_text) > 350
    status, body = query(long_text)
    assert status == 400 and "350" in body["error"]["message"]
    status, body = query(refused["11 logical operations"][:349])
    assert status == 400


def test_answers_stop_at_10000_records_and_telemetry_older_than_30_days_is_gone(fleet_app: Any) -> None:
    world, query = fleet_app
    app = world.iotc.apps["fleet"]
    now = datetime.now(UTC).replace(microsecond=0)
    for n in range(10_050):
        app.telemetry.add(Message("pump-1", backfill_fleet.PUMP, now - timedelta(milliseconds=n), {"pressure": n}))
    app.telemetry.add(Message("pump-1", backfill_fleet.PUMP, now - timedelta(days=31), {"pressure": -1}))
    status, body = query(f"SELECT $id, $ts, pressure FROM {backfill_fleet.PUMP} WHERE WITHIN_WINDOW(P40D)")
    assert status == 200 and len(body["results"]) == 10_000
    assert all(r["pressure"] != -1 for r in body["results"])


def test_more_than_one_query_a_second_is_throttled(world: World, credential: Any) -> None:
    backfill_fleet.add_fleet_app(world, "fleet", "FleetTelemetry")
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy

    client: PipelineClient[Any, Any] = PipelineClient(
        base_url=world.endpoints()["iotcentral_base_url"].format(subdomain="fleet"),
        policies=[BearerTokenCredentialPolicy(credential, sdk.IOTC_SCOPE)],  # no retries: see the 429
    )
    text = json.dumps({"query": f"SELECT $id, $ts, pressure FROM {backfill_fleet.PUMP} WHERE {window()}"})
    statuses = []
    for _ in range(2):
        request = HttpRequest(
            "POST",
            client.format_url("/api/query"),
            params=API,
            content=text,
            headers={"Content-Type": "application/json"},
        )
        response = client.send_request(request, enforce_https=False)
        statuses.append((response.status_code, response.headers.get("Retry-After")))
    assert statuses == [(200, None), (429, "1")]


def test_the_throttle_admits_one_query_per_second_per_app() -> None:
    clock = [100.0]
    throttle = QueryThrottle(clock=lambda: clock[0])
    throttle.admit("a")
    throttle.admit("b")
    with pytest.raises(QueryError) as refused:
        throttle.admit("a")
    assert refused.value.status == 429
    clock[0] += 1.0
    throttle.admit("a")
    assert throttle.refused == 1
