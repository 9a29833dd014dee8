"""The backfill tests' fleet app: a sandbox world exporting into the fleet table, and its target's key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import backfill_fleet
from sandbox.azurite import ACCOUNT_KEY, Azurite
from sandbox.world import World

TABLE = "FleetTelemetry"
KEY = "fleet:export-1:adx-1"


@pytest.fixture
def fleet_world(world: World, azurite: Azurite) -> Iterator[World]:
    world.attach_storage(azurite.connection_string, ACCOUNT_KEY)
    backfill_fleet.add_fleet_app(world, "fleet", TABLE)
    world.start_exporter(interval_s=0.2)
    yield world
    world.stop_exporter()
