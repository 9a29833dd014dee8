"""Backfill against exports as rich as real ones: enrichments, message properties (creation times),
component telemetry, both readings of what the query API's `$ts` is, and rows that keep what the
query API cannot return. Each ends with the table against what the export would have written: 0
missing and 0 twice, or a refusal with its reason and nothing ingested. (Simulated devices,
property filters and row-level security are the drill's backfill scenarios, asserted in
tests/e2e/test_drill.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox import backfill_fleet
from sandbox.azurite import ACCOUNT_KEY, Azurite
from sandbox.waiting import wait_for
from sandbox.world import World
from shared.domain.messages import new_run
from tests.support.healer_env import healer_for, inject_and_wait, make_settings
from tests.support.helpers import wait_until

pytestmark = pytest.mark.integration
KEY = "rich:export-1:adx-1"
TABLE = "RichTelemetry"


@pytest.fixture
def storage_world(world: World, azurite: Azurite) -> Iterator[World]:
    world.attach_storage(azurite.connection_string, ACCOUNT_KEY)
    yield world
    world.stop_exporter()


def _start(world: World, azurite: Azurite, **fleet: Any) -> Any:
    backfill_fleet.add_fleet_app(world, "rich", TABLE, **fleet)
    world.start_exporter(interval_s=0.2)
    return healer_for(make_settings(world, azurite, backfill="on"))


def _outage(world: World) -> tuple[datetime, datetime]:
    """An outage people fixed by hand: rows the export never delivered, inside [start, end)."""
    wait_until(lambda: len(world.cluster.table("devicedata", TABLE).rows) > 20, 10, "rows before the outage")
    start = datetime.now(UTC) - timedelta(seconds=2)
    inject_and_wait(world, "principal-removed", "rich")
    failures = len(world.workspace.tables["FailedIngestion"])
    wait_until(lambda: len(world.workspace.tables["FailedIngestion"]) >= failures + 5, 10, "an outage")
    world.clear("principal-removed", "rich")
    wait_until(lambda: world.iotc.apps["rich"].exports["export-1"].get("status") == "healthy", 10, "healed")
    return start, datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)


def _backfill(healer: Any, start: datetime, end: datetime) -> Any:
    msg = new_run(KEY, "cli").next("backfill", window_start=start, window_end=end, backfill_mode="on")
    return healer.handle(msg)


def _settled(world: World, until: datetime) -> dict[str, int]:
    result: dict[str, int] = {}

    def done() -> bool:
        result.update(backfill_fleet.compare(world, "rich", TABLE, until))
        return result["rows_missing"] == 0 and result["rows_duplicated"] == 0

    wait_for(done, 15)  # queued ingestion drains; the caller asserts on the counts
    return result


def _exact_twice(world: World, healer: Any, start: datetime, end: datetime) -> dict[str, Any]:
    outcome = _backfill(healer, start, end)
    assert outcome.status == "backfilled", outcome
    gap: dict[str, Any] = healer.services.store.load(KEY).gap
    assert gap["rows_ingested"] == gap["rows_missing"] > 0, gap
    result = _settled(world, end)
    assert (result["rows_missing"], result["rows_duplicated"]) == (0, 0), result
    again = _backfill(healer, start, end)  # a second backfill of the same gap adds nothing
    assert again.status == "backfilled" and healer.services.store.load(KEY).gap["rows_ingested"] == 0, again
    assert backfill_fleet.compare(world, "rich", TABLE, end) == result
    return gap


@pytest.mark.parametrize("variant", ["enriched", "plain"])
def test_enrichments_message_properties_and_components_are_backfilled_exactly(
    storage_world: World, azurite: Azurite, variant: str
) -> None:
    """Static and system enrichments rebuilt from the export; devices stamp creation times (message
    properties the query API never returns, kept out of the table); components asked for by alias."""
    world = storage_world
    healer = _start(world, azurite, variant=variant, creation_lag=timedelta(milliseconds=300))
    start, end = _outage(world)
    assert world.iotc.ts_reading == "enqueued" and world.iotc.component_keys == "path"
    assert any(m.created for m in world.iotc.apps["rich"].telemetry.all())
    _exact_twice(world, healer, start, end)
    with world.cluster.lock:
        rows = list(world.cluster.table("devicedata", TABLE).rows)
    column = "Site" if variant == "enriched" else "enrichments"
    assert rows and all(r[column] for r in rows)
    assert any(q for q in world.iotc.queries if " AS battery__level" in q)


def test_creation_times_under_both_ts_readings(storage_world: World, azurite: Azurite) -> None:
    """Devices send iothub-creation-time-utc. If `$ts` is the enqueued time the backfill is exact
    (the enrichments test above, whose devices stamp creation times); if it is the creation time,
    no delivered row has a time the query answered: refused, with the reason, and nothing is
    ingested (never twice)."""
    world = storage_world
    world.iotc.ts_reading = "creation"
    healer = _start(world, azurite, creation_lag=timedelta(milliseconds=300))
    start, end = _outage(world)
    before = len(world.cluster.table("devicedata", TABLE).rows)
    outcome = _backfill(healer, start, end)
    assert outcome.status == "backfill-refused" and "$ts" in outcome.detail, outcome
    assert healer.services.store.load(KEY).gap["rows_ingested"] == 0
    assert world.ingestion is not None and world.ingestion.ingested_blobs == 0
    assert backfill_fleet.compare(world, "rich", TABLE, end)["rows_duplicated"] == 0
    assert len(world.cluster.table("devicedata", TABLE).rows) >= before


def test_component_telemetry_is_asked_for_under_aliases(storage_world: World, azurite: Azurite) -> None:
    """Answers name an unaliased component capability by its bare name here (the enrichments test
    above runs with `component.name`): asked for under aliases, the backfill is exact either way."""
    world = storage_world
    world.iotc.component_keys = "name"
    healer = _start(world, azurite)
    start, end = _outage(world)
    _exact_twice(world, healer, start, end)


def test_rows_keeping_message_properties_are_refused_unless_written_approximate_by_choice(
    storage_world: World, azurite: Azurite
) -> None:
    """The transform writes a message property to a column: the query API cannot give it back.
    Refused by default; with HEALER_BACKFILL_APPROXIMATE the rows are written, tagged approximate,
    and the gap names what was not restored. Either way no delivered row is written twice."""
    world = storage_world
    columns = [*backfill_fleet.COLUMNS, ("Source", "string")]
    transform = backfill_fleet.TRANSFORM[:-1] + ", Source: .messageProperties.source}"
    world.add_fleet_app(
        "rich", backfill_fleet.fleet(), table=TABLE, columns=columns, transform=transform, export_filter=None
    )
    world.start_exporter(interval_s=0.2)
    start, end = _outage(world)
    refusing = healer_for(make_settings(world, azurite, backfill="on"))
    outcome = _backfill(refusing, start, end)
    assert outcome.status == "backfill-refused" and "messageProperties (read by the transform)" in outcome.detail
    approximate = healer_for(make_settings(world, azurite, backfill="on", backfill_approximate=True))
    outcome = _backfill(approximate, start, end)
    assert outcome.status == "backfilled" and "not restored: messageProperties" in outcome.detail, outcome
    gap: dict[str, Any] = approximate.services.store.load(KEY).gap or {}
    assert gap["rows_ingested"] > 0 and gap["approximate"] == ["messageProperties (read by the transform)"], gap
    table = world.cluster.table("devicedata", TABLE)

    def written() -> int:  # the rebuilt rows lack Source
        with world.cluster.lock:
            return sum(1 for r in table.rows if r["Source"] is None)

    wait_for(lambda: written() == gap["rows_ingested"], 15)
    assert "iotc-adx-healer:approximate" in table.extent_tags
    result = backfill_fleet.compare(world, "rich", TABLE, end)
    # The rows written are exactly the ones missing, approximate (they differ from what the export
    # wrote only in Source); no delivered row is written again.
    assert written() == gap["rows_ingested"] == gap["rows_missing"] == result["rows_duplicated"], (gap, result)
    assert result["rows_missing"] == gap["rows_missing"]
