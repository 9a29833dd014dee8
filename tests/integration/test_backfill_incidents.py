"""A backfill that leaves data missing is an incident (once), and every finished backfill records
what the gap cost and what came back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from sandbox.azurite import Azurite
from sandbox.world import World
from shared.domain.messages import new_run
from shared.reporting import telemetry
from shared.runs import Outcome, Status
from tests.support.fleet import KEY
from tests.support.healer_env import healer_for, make_settings
from tests.support.metrics import metric_points

pytestmark = pytest.mark.integration


@pytest.fixture
def metrics() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    telemetry.use_providers(TracerProvider(), MeterProvider(metric_readers=[reader]))
    yield reader
    telemetry.reset()


def test_a_refused_backfill_is_one_data_not_recovered_incident(
    fleet_world: World,
    azurite: Azurite,
    metrics: InMemoryMetricReader,
) -> None:
    world = fleet_world
    settings = make_settings(world, azurite, backfill="on", notify_webhook=world.endpoints()["notify_webhook_url"])
    healer = healer_for(settings)
    now = datetime.now(UTC)
    world.iotc.apps["fleet"].exports["export-1"]["filter"] = 'SELECT * FROM devices WHERE $id = "a" OR $id = "b"'
    msg = new_run(KEY, "cli").next(
        "backfill", window_start=now - timedelta(minutes=10), window_end=now, backfill_mode="on"
    )
    assert healer.handle(msg).status == "backfill-refused"
    incidents = [n["incident"] for n in world.notifications]
    assert [(i["kind"], i["target"], i["run_id"]) for i in incidents] == [("data-not-recovered", KEY, msg.run_id)]
    assert "OR" in incidents[0]["summary"]
    points = metric_points(metrics)
    assert [p.attributes["kind"] for p in points["healer.incidents"]] == ["data-not-recovered"]
    assert round(sum(p.sum for p in points["healer.data_gap_minutes"])) == 10
    for observe in healer.services.observers:  # the same record again (a redelivered step): nothing new
        observe(KEY, msg, Outcome(Status.BACKFILL_REFUSED, "again"), None, healer.services.store.load(KEY).gap)
    assert len(world.notifications) == 1
