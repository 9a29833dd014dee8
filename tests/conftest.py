"""Fixtures: a started sandbox per test (free ports), Azurite per session, real SDK clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox import sdk
from sandbox.azurite import Azurite
from sandbox.world import World


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A running sandbox with two IoT Central apps exporting to ADX; stopped after the test."""
    w = World(seed=11)
    w.start()
    try:
        w.add_app("contoso", table="DeviceTelemetry")
        w.add_app("fabrikam", table="FactoryTelemetry")
        for key, value in w.identity_env().items():
            monkeypatch.setenv(key, value)
        yield w
    finally:
        w.stop()


@pytest.fixture
def credential(world: World) -> Any:
    return sdk.credential()


@pytest.fixture
def kusto(world: World, credential: Any) -> Any:
    return sdk.kusto_client(world.endpoints()["kusto_cluster_url"], credential)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as server:
        yield server
