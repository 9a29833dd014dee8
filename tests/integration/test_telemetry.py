"""Telemetry: a span per remediation step carrying the correlation id, the healer's metrics, and
nothing at all (not even an OpenTelemetry import) without a connection string."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import entrypoints
from shared.reporting import telemetry
from tests.support.function_calls import CONTOSO, broken, call
from tests.support.helpers import ROOT, wait_until
from tests.support.metrics import metric_points

pytestmark = pytest.mark.integration


@pytest.fixture
def exported() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry.use_providers(tracer_provider, MeterProvider(metric_readers=[metrics]))
    yield spans, metrics
    telemetry.reset()


def test_spans_per_step_and_metrics_of_a_healing(app: Any, exported: Any, caplog: pytest.LogCaptureFixture) -> None:
    world, runner = app
    spans, metrics = exported
    caplog.set_level(logging.INFO, logger=telemetry.TELEMETRY_LOGGER)
    world.inject("principal-removed", "contoso")
    wait_until(lambda: broken(world), 10, "the break")
    queued = call(runner, "POST", "heal", {"target": CONTOSO}).json()
    wait_until(lambda: call(runner, "GET", "targets").json()["targets"][0]["last_outcome"] == "healed", 30, "healed")
    wait_until(lambda: "healer.time_to_heal" in metric_points(metrics), 10, "the time-to-heal metric")
    steps = [s for s in spans.get_finished_spans() if s.name.startswith("remediation.")]
    assert {s.name for s in steps} >= {"remediation.start", "remediation.verify"}
    mine = [s for s in steps if s.attributes["healer.run_id"] == queued["run_id"]]
    assert mine and {s.attributes["healer.correlation_id"] for s in mine} == {queued["run_id"]}
    assert mine[-1].attributes["healer.outcome"] == "healed"
    points = metric_points(metrics)
    runs = {(p.attributes["outcome"], p.attributes["diagnosis"]): p.value for p in points["healer.remediations"]}
    assert runs[("healed", "principal-missing")] == 1
    assert points["healer.time_to_heal"][0].sum > 0
    row = call(runner, "GET", "targets").json()["targets"][0]
    assert row["root_cause"]["found"] is True and row["root_cause"]["source"] == "ADXJournal"
    causes = [r for r in caplog.records if r.name == telemetry.TELEMETRY_LOGGER and r.getMessage() == "root cause"]
    assert causes and causes[0].__dict__["healer.root_cause_actor"] == "ops-admin@contoso.com"


def test_escalations_and_incidents_are_counted(app: Any, exported: Any) -> None:
    world, runner = app
    _, metrics = exported
    world.inject("healer-not-admin", "contoso")
    wait_until(lambda: broken(world), 10, "the break")
    call(runner, "POST", "heal", {"target": CONTOSO})
    wait_until(lambda: call(runner, "GET", "targets").json()["targets"][0]["escalated"], 30, "escalated")
    wait_until(lambda: "healer.incidents" in metric_points(metrics), 10, "the incident metric")
    points = metric_points(metrics)
    assert [(p.attributes["kind"], p.value) for p in points["healer.incidents"]] == [("escalated", 1)]
    assert sum(p.value for p in points["healer.escalations"]) == 1
    entrypoints.timer_tick()  # a detection cycle records what is escalated now
    escalated = metric_points(metrics)["healer.escalated_targets"]
    assert [(p.attributes["target"], p.value) for p in escalated] == [(CONTOSO, 1)]
    assert "not Data" in escalated[0].attributes["reason"]  # the reason, cut at 200 characters


def test_nothing_is_exported_or_imported_without_a_connection_string() -> None:
    env = {k: v for k, v in os.environ.items() if k != telemetry.CONNECTION_SETTING}
    code = (
        "import json, sys; from shared.reporting import telemetry;"
        "telemetry.count('healer.escalations', target='t');"
        "\nwith telemetry.span('remediation.start') as s: pass\n"
        "print(json.dumps([telemetry.configure(), s is None, any(m.startswith('opentelemetry') for m in sys.modules)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(done.stdout) == [False, True, False], done.stderr


def test_a_connection_string_turns_the_distro_on() -> None:
    # A loopback ingestion endpoint nobody listens on: the exporter retries in the background; the
    # healer only needs the providers in place.
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
    code = (
        "import json; from shared.reporting import telemetry; from opentelemetry import trace, metrics;"
        "ok = telemetry.configure();"
        "print(json.dumps([ok, type(trace.get_tracer_provider()).__module__, telemetry.enabled()]))"
    )
    env = {**os.environ, telemetry.CONNECTION_SETTING: connection, "PYTHONPATH": str(ROOT)}
    env.pop("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    ok, module, enabled = json.loads(done.stdout.strip().splitlines()[-1])
    assert ok is True and enabled is True and module.startswith("opentelemetry.sdk"), done.stderr


def test_backfill_figures_and_a_gap_that_stays(world: Any, azurite: Any, exported: Any) -> None:
    from shared.reporting.observers import backfill_finished
    from tests.support.healer_env import healer_for, make_settings

    _, metrics = exported
    healer = healer_for(make_settings(world, azurite))
    backfill_finished(healer.services, CONTOSO, "c" * 32, "corr", 42.0, 1000, complete=True)
    backfill_finished(healer.services, CONTOSO, "d" * 32, "corr", 90.0, 10, complete=False, detail="query API refused")
    points = metric_points(metrics)
    assert sum(p.sum for p in points["healer.data_gap_minutes"]) == 132.0
    assert sum(p.value for p in points["healer.rows_recovered"]) == 1010
    assert [(p.attributes["kind"], p.value) for p in points["healer.incidents"]] == [("data-not-recovered", 1)]
    row = healer.services.store.notifications.get_entity(CONTOSO, "data-not-recovered:" + "d" * 32)
    assert row["Summary"] == "query API refused"
