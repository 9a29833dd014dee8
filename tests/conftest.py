"""Fixtures: a started sandbox per test (free ports), Azurite per session, real SDK clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox import sdk
from sandbox.azurite import Azurite
from sandbox.world import World
from tests.support.fleet import fleet_world  # noqa: F401  (the backfill tests' fixture)


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


@pytest.fixture
def healer_setup(world: World, azurite: Azurite) -> Iterator[Any]:
    """(world, settings, healer, worker) with the exporter running, on free ports and fresh tables."""
    from tests.support.healer_env import Worker, healer_for, make_settings, queue_client

    settings = make_settings(world, azurite)
    healer = healer_for(settings)
    worker = Worker(healer, queue_client(settings))
    world.start_exporter(interval_s=0.2)
    yield world, settings, healer, worker
    world.stop_exporter()


@pytest.fixture
def app(world: World, azurite: Azurite) -> Iterator[tuple[World, Any]]:
    """(world, runner): the Function App on the local runner (timer idle), aimed at this sandbox."""
    import uuid

    from sandbox.healer_config import app_settings
    from sandbox.runner import Runner
    from shared import entrypoints

    suffix = uuid.uuid4().hex[:8]
    env = app_settings(
        world,
        azurite,
        HEALER_QUEUE_NAME=f"q-{suffix}",
        HEALER_TABLE_PREFIX=f"t{suffix}",
        HEALER_REFRESH_WAIT_SECONDS=1,
        HEALER_VERIFY_POLL_SECONDS=1,
        HEALER_COOLDOWN_SECONDS=0,
        HEALER_BACKFILL="off",
    )
    entrypoints.reset()
    world.start_exporter(interval_s=0.2)
    runner = Runner(app_settings=env, http_port=0, timer_interval_s=3600, retry_delay_s=1, instances=2).start()
    try:
        yield world, runner
    finally:
        runner.stop()
        world.stop_exporter()
        entrypoints.reset()


_SESSION_START: list[float] = []


def pytest_sessionstart(session: Any) -> None:
    import time

    _SESSION_START.append(time.time())


def _model_report_of_this_session() -> dict[str, Any] | None:
    """What the model wrote to .reports/run-model.json during this session (it ran in a worker)."""
    import json
    from pathlib import Path

    report = Path(__file__).resolve().parent.parent / ".reports" / "run-model.json"
    if not _SESSION_START or not report.exists() or report.stat().st_mtime < _SESSION_START[0]:
        return None
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how much the stateful model test explored (it runs at least HEALER_MODEL_EXAMPLES examples)."""
    import sys

    model = sys.modules.get("tests.unit.test_run_model")
    if model is None or not model.STATS["examples"]:
        data = _model_report_of_this_session()
        if data is not None:  # under pytest-xdist the model ran in a worker process
            terminalreporter.write_line(
                f"stateful model: {data.get('examples')} examples; faults: {data.get('faults')}; "
                f"remedies: {data.get('remedies')} (.reports/run-model.json)"
            )
        return
    if model.STATS["examples"]:
        stats, faults, remedies = model.STATS, model.FAULTS, model.REMEDIES
        drawn = ", ".join(f"{n} {c}" for c, n in faults.items())
        terminalreporter.write_line(
            f"stateful model: {stats['examples']} examples, {stats['steps']} deliveries, {stats['drops']} drops, "
            f"{stats['healed']} healings; faults: {drawn}; remedies: {remedies} (.reports/run-model.json)"
        )
