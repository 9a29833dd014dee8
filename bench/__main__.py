"""`make bench`: print each figure next to its goal and write .bench/results.json.

Figures are ratios or counts measured in one run on this machine; they are never pass/fail tests.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cold_start_ratio(runs: int = 11) -> dict[str, float]:
    """`import function_app` over `import azure.functions`: medians of interleaved fresh processes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def timed(statement: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, env=env, cwd=ROOT)
        return time.perf_counter() - started

    app, base = [], []
    for _ in range(runs):
        base.append(timed("import azure.functions"))
        app.append(timed("import function_app"))
    return {
        "cold_start_ratio": round(statistics.median(app) / statistics.median(base), 3),
        "cold_start_app_s": round(statistics.median(app), 3),
        "cold_start_functions_s": round(statistics.median(base), 3),
    }


def scan(apps: int = 1000, exports: int = 10, latency_s: float = 0.02) -> dict[str, float]:
    """One detection cycle over apps x exports with added latency per call, bounded vs sequential,
    and the peak resident memory of this process (the one running the cycle).

    The sandbox runs in its own process, as the real services would: sharing this process's GIL
    would measure the stand-ins' CPU, not the healer's waiting.
    """
    import resource
    import tempfile

    import requests

    from sandbox import sdk
    from sandbox.process import sandbox_process
    from shared.adapters.loganalytics import LogAnalyticsAdapter
    from shared.config.settings import Settings
    from shared.detection.detector import Detector
    from shared.services import build_healer

    options = ("--app-count", str(apps), "--exports", str(exports), "--page-size", "25", "--export-interval", "0")
    with tempfile.TemporaryDirectory() as state_dir, sandbox_process(Path(state_dir), *options) as endpoints:
        os.environ.update({k: endpoints[k] for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")})
        control = endpoints["control_url"]
        for service in ("iotcentral", "kusto", "loganalytics"):
            body = {"kind": "transport", "service": service, "latency_s": latency_s}
            requests.post(f"{control}/faults", json=body, timeout=10).raise_for_status()
        targets = json.dumps(requests.get(f"{control}/healer-targets", timeout=60).json())

        def cycle(concurrency: int, warm_cycle: bool = True) -> float:
            values: dict[str, Any] = dict(
                mode="observe",
                targets=targets,
                scan_concurrency=concurrency,
                queue_name=f"bench-{uuid.uuid4().hex[:8]}",
                table_prefix=f"b{uuid.uuid4().hex[:8]}",
                iotc_base_url=endpoints["iotcentral_base_url"],
                arm_url=endpoints["arm_url"],
                log_analytics_endpoint=endpoints["loganalytics_endpoint"],
                log_analytics_workspace_id=endpoints["loganalytics_workspace_id"],
                storage_connection_string=endpoints["storage_connection_string"],
            )
            settings = Settings(**values)
            healer = build_healer(settings, sdk.credential())
            logs = LogAnalyticsAdapter(settings.log_analytics_endpoint, healer.services.credential)
            detector = Detector(healer, logs)
            if warm_cycle:
                detector.run_cycle()  # warm: tokens, connections
            else:  # a full sequential cycle takes a minute: warm the token and a connection only
                healer.services.iotc.exports(next(iter(healer.services.targets.values())).app)
            started = time.perf_counter()
            report = detector.run_cycle()
            elapsed = time.perf_counter() - started
            assert report.targets == apps * exports and not report.errors, report.errors[:3]
            return elapsed

        bounded = cycle(Settings.model_fields["scan_concurrency"].default)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
        sequential = cycle(1, warm_cycle=False)
    return {
        "scan_cycle_s": round(bounded, 3),
        "scan_sequential_s": round(sequential, 3),
        "scan_speedup": round(sequential / bounded, 2),
        "scan_targets": apps * exports,
        "scan_peak_rss_mb": round(peak_mb, 1),
    }


FIRST_INVOCATION = """
import json, sys, time
started = time.perf_counter()
from shared import entrypoints
first = entrypoints.timer_tick()
cold = time.perf_counter() - started
started = time.perf_counter()
second = entrypoints.timer_tick()
warm = time.perf_counter() - started
assert not first.get("error") and not second.get("error"), (first, second)
print(json.dumps({"cold": cold, "warm": warm}))
"""


def first_invocation(settings: dict[str, str], runs: int = 5) -> dict[str, float]:
    """A fresh process from import to its first detection cycle finished (SDK imports, credential,
    clients, the first calls), minus the same cycle warm in that process: the median of `runs`.
    The app settings are its environment, as the Functions host gives them."""
    env = {**os.environ, **settings, "PYTHONPATH": str(ROOT)}
    figures = []
    for _ in range(runs):
        env["HEALER_TABLE_PREFIX"] = f"f{uuid.uuid4().hex[:8]}"
        out = subprocess.run(
            [sys.executable, "-c", FIRST_INVOCATION], env=env, cwd=ROOT, check=True, capture_output=True, text=True
        )
        times = json.loads(out.stdout.strip().splitlines()[-1])
        figures.append(times["cold"] - times["warm"])
    return {"first_invocation_s": round(statistics.median(figures), 3)}


def refresh(wait_s: int) -> dict[str, float]:
    """One refresh healing through the runner: Kusto requests and seconds inside invocations."""
    from sandbox.azurite import Azurite
    from sandbox.healer_config import app_settings
    from sandbox.runner import Runner
    from sandbox.world import World
    from shared import entrypoints

    saved = dict(os.environ)
    try:
        with Azurite() as azurite, World() as world:
            world.start()
            world.add_app("contoso")
            world.start_exporter(0.5)
            settings = app_settings(
                world,
                azurite,
                HEALER_REFRESH_WAIT_SECONDS=wait_s,
                HEALER_VERIFY_POLL_SECONDS=2,
                HEALER_SWEEP_GRACE_SECONDS=60,
                HEALER_BACKFILL="off",  # the healing alone; the backfill has its own figure
                HEALER_REMEDY_ORDER="refresh",  # the figure is the refresh's own cost
            )
            entrypoints.reset()
            _until(lambda: world.iotc.apps["contoso"].exports["export-1"].get("status") == "healthy", 20)
            first = first_invocation(settings)
            with Runner(app_settings=settings, http_port=0, timer_interval_s=1.0, retry_delay_s=2) as runner:
                _until(lambda: runner.stats.invocations.get("detect", 0) >= 1, 20)
                runner.pause_timer()
                world.inject("stale-permission", "contoso")
                _until(lambda: world.iotc.apps["contoso"].exports["export-1"].get("status") == "error", 20)
                start_log = len(world.cluster.command_log)
                busy = runner.stats.busy_s
                runner.run_timer_now()
                store = entrypoints.composition().healer.services.store
                _until(lambda: store.load("contoso:export-1:adx-1").last_outcome == "healed", wait_s + 60)
                healer_fqn = world.healer.fqn
                commands = [t for who, _, t in world.cluster.command_log[start_log:] if who == healer_fqn]
                return {
                    "refresh_kusto_commands": len(commands),
                    "busy_s_per_healing": round(runner.stats.busy_s - busy, 3),
                    "refresh_wait_s": wait_s,
                    **first,
                }
    finally:
        entrypoints.reset()
        os.environ.clear()
        os.environ.update(saved)


def _backfill_healer(world: Any, azurite: Any) -> Any:
    """A healer in enforce mode with backfill on, over the world's targets and Azurite."""
    from sandbox import sdk
    from sandbox.healer_config import targets_for
    from shared.config.settings import Settings
    from shared.services import build_healer

    values: dict[str, Any] = dict(
        mode="enforce",
        backfill="on",
        targets=json.dumps(targets_for(world)),
        queue_name=f"bench-{uuid.uuid4().hex[:8]}",
        table_prefix=f"b{uuid.uuid4().hex[:8]}",
        iotc_base_url=world.endpoints()["iotcentral_base_url"],
        arm_url=world.endpoints()["arm_url"],
        storage_connection_string=azurite.connection_string,
        backfill_invocation_seconds=540,
    )
    healer = build_healer(Settings(**values), sdk.credential())
    healer.services.store.ensure()
    healer.services.queue.ensure()
    return healer


def backfill(minutes: int = 6, thermostats: int = 150, pumps: int = 150) -> dict[str, float]:
    """Rows backfilled per minute over a gap of `minutes` of a dense fleet, against the query API's
    ceiling (1 request/s x 10,000 records = 600,000 records/min). Queries, rebuild, jq transform,
    dedupe and queued ingestion all count; the sandbox shares this process."""
    from datetime import UTC, datetime, timedelta

    from sandbox import backfill_fleet
    from sandbox.azurite import ACCOUNT_KEY, Azurite
    from sandbox.world import World
    from shared.domain.messages import new_run

    with Azurite() as azurite, World() as world:
        world.start()
        world.attach_storage(azurite.connection_string, ACCOUNT_KEY)
        key = backfill_fleet.add_fleet_app(world, "fleet", "FleetTelemetry", thermostats=thermostats, pumps=pumps)
        os.environ.update(world.identity_env())
        app, fleet = world.iotc.apps["fleet"], world.delivery.fleets["fleet"]
        end = datetime.now(UTC).replace(microsecond=0)
        start = end - timedelta(minutes=minutes)
        at = start
        while at < end:  # telemetry the export never delivered: one message per device and interface a second
            fleet.tick(app, at)
            at += timedelta(seconds=1)
        healer = _backfill_healer(world, azurite)
        msg = new_run(key, "cli").next("backfill", window_start=start, window_end=end, backfill_mode="on")
        started = time.perf_counter()
        outcome = healer.handle(msg)
        elapsed = time.perf_counter() - started
        gap = healer.services.store.load(key).gap or {}
        assert outcome.status == "backfilled", outcome
        rows = int(gap["rows_ingested"])
        _until(lambda: backfill_fleet.compare(world, "fleet", "FleetTelemetry", end)["rows_missing"] == 0, 120)
        per_min = rows / elapsed * 60
    return {
        "backfill_rows": rows,
        "backfill_queries": int(gap["queries"]),
        "backfill_rows_per_min": round(per_min),
        "backfill_ratio_to_query_limit": round(per_min / 600_000, 3),
    }


def backfill_apps(apps: int = 10, minutes: int = 30, devices: int = 4, every_s: int = 5) -> dict[str, float]:
    """`apps` apps backfilled one after another, then all at once (one queue invocation each, as
    the Functions host runs them side by side): the query API's one request per second is per
    app, so apps need not wait for each other. Each app's gap is a small fleet sending every
    `every_s` seconds: a few queries each, so the pace of the queries, not this machine's two
    cores, sets each backfill's time (a dense gap is the other benchmark's)."""
    import threading
    from datetime import UTC, datetime, timedelta

    from sandbox import backfill_fleet
    from sandbox.azurite import ACCOUNT_KEY, Azurite
    from sandbox.world import World
    from shared.domain.messages import new_run

    with Azurite() as azurite, World() as world:
        world.start()
        world.attach_storage(azurite.connection_string, ACCOUNT_KEY)
        names = [f"app{n}" for n in range(apps)]
        keys = [
            backfill_fleet.add_fleet_app(world, name, f"Apps{n}Telemetry", thermostats=devices // 2, pumps=devices // 2)
            for n, name in enumerate(names)
        ]
        os.environ.update(world.identity_env())
        end = datetime.now(UTC).replace(microsecond=0)
        start = end - timedelta(minutes=minutes)
        for name in names:
            app, fleet = world.iotc.apps[name], world.delivery.fleets[name]
            at = start
            while at < end:
                fleet.tick(app, at)
                at += timedelta(seconds=every_s)
        healer = _backfill_healer(world, azurite)

        def one(key: str) -> None:
            msg = new_run(key, "cli").next("backfill", window_start=start, window_end=end, backfill_mode="plan")
            outcome = healer.handle(msg)
            assert outcome.status == "backfill-planned", outcome

        one(keys[0])  # warm: the first backfill of a process pays for imports and compiled programs
        started = time.perf_counter()
        for key in keys:
            one(key)
        sequential = time.perf_counter() - started
        threads = [threading.Thread(target=one, args=(key,)) for key in keys]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        together = time.perf_counter() - started
    return {
        "backfill_apps_sequential_s": round(sequential, 2),
        "backfill_apps_together_s": round(together, 2),
        "backfill_apps_speedup": round(sequential / together, 2),
    }


def parser_batch_speedup() -> dict[str, float]:
    """Parsing N texts in one node run versus one run per text (why the test harness batches)."""
    from tests.support.kusto_parser import parse_all

    commands = [f".show database db{n} principals" for n in range(8)]
    started = time.perf_counter()
    for text in commands:
        parse_all([text])
    one_by_one = time.perf_counter() - started
    started = time.perf_counter()
    parse_all(commands)
    return {"parser_batch_speedup": round(one_by_one / (time.perf_counter() - started), 2)}


def _until(check: Callable[[], bool], timeout_s: float) -> None:
    from sandbox.waiting import wait_for

    if not wait_for(check, timeout_s, interval=0.1):
        raise TimeoutError("benchmark setup did not reach its state in time")


def _peak_rss_of_this_image_mb() -> float:
    """Peak resident memory since this process's exec (VmHWM). ru_maxrss would not do in a child:
    Linux carries the parent's high-water mark over the fork into it."""
    import resource

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sweep_obligations_alone() -> dict[str, float]:
    """sweep_obligations in a fresh interpreter: its peak resident memory is the sweep's own, not
    that of the benchmarks that ran before it in this process."""
    statement = "import json; from bench.__main__ import sweep_obligations as f; print(json.dumps(f()))"
    out = subprocess.run(
        [sys.executable, "-c", statement],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def sweep_obligations(
    count: int = 1000, clusters: int = 100, apps: int = 100, latency_s: float = 0.02
) -> dict[str, float]:
    """The recovery sweep discharging `count` overdue re-adds spread over `clusters` clusters and
    `apps` apps, every ADX call taking `latency_s` (the sweep's concurrency and its per-cluster and
    per-app bounds at work), with the peak resident memory of this process. The state and the
    services are in-process stand-ins: what is measured is the sweep's own waiting and work."""
    from datetime import timedelta
    from typing import cast

    from shared.adapters.iotcentral import IoTCentralAdapter
    from shared.adapters.kusto import KustoAdapter
    from shared.config.settings import Settings
    from shared.domain.principals import Assignment
    from shared.domain.state import Dropped, PendingReadd, TargetState
    from shared.runs import Healer, Services
    from shared.runs.sweep import sweep
    from tests.support.model_fakes import AdxModel, FakeClock, FakeIotc, FakeKusto, MemoryQueue, MemoryStore

    clock = FakeClock()
    store, queue = MemoryStore(), MemoryQueue(clock)
    models: dict[str, AdxModel] = {}

    class SlowKusto(FakeKusto):
        def database_principals(self, database: str) -> list[Assignment]:
            time.sleep(latency_s)
            return super().database_principals(database)

        def set_role(self, database: str, role: str, fqn: str, **kwargs: Any) -> list[Assignment]:
            listing = kwargs.pop("current", None)
            if listing is None:
                listing = self.database_principals(database)
            time.sleep(latency_s)
            return super().set_role(database, role, fqn, current=listing, **kwargs)

    def kusto(url: str) -> KustoAdapter:
        model = models.setdefault(url, AdxModel(clock, "devicedata"))
        return cast(KustoAdapter, SlowKusto(model))

    values: dict[str, Any] = {"mode": "enforce", "sweep_grace_seconds": 0, "backfill": "off"}
    settings = Settings(**values)
    services = Services(
        settings, {}, store, queue, kusto, cast(IoTCentralAdapter, FakeIotc(AdxModel(clock, "x"), "x")), clock=clock
    )
    now = clock()
    for i in range(count):
        fqn = f"aadapp={uuid.UUID(int=i)};72f988bf-86f1-41af-91ab-2d7cd011db47"
        pending = PendingReadd(
            run_id=f"{i:032x}",
            cluster_url=f"https://c{i % clusters}.westeurope.kusto.windows.net",
            database="devicedata",
            principal=fqn,
            snapshot=(Dropped(role="ingestors", fqn=fqn, notes="bench"),),
            dropped_at=now,
            due=now,
            correlation_id=f"{i:032x}",
        )
        store.save(TargetState(key=f"app{i % apps}:export-{i}:adx-1", pending_readd=pending))
    clock.advance(60)
    healer = Healer(services)
    import logging

    logging.getLogger("shared.runs").setLevel(logging.CRITICAL)  # each overdue re-add is logged at error
    started = time.perf_counter()
    report = sweep(healer)
    elapsed = time.perf_counter() - started
    done = sum(1 for s in store.all_states() if s.pending_readd is None)
    assert not report.errors, report.errors[:3]
    assert (clock() - now) < timedelta(seconds=settings.sweep_budget_seconds)
    return {
        "sweep_obligations_s": round(elapsed, 2),
        "sweep_obligations_done": done,
        "sweep_obligations_rss_mb": round(_peak_rss_of_this_image_mb(), 1),
    }


GOALS = {
    "cold_start_ratio": "<= 1.3",
    "scan_cycle_s": "<= 5",
    "scan_peak_rss_mb": "<= 250",
    "first_invocation_s": "<= 1.5",
    "scan_speedup": ">= 10",
    # 5 diagnosis reads (principals, own roles, RLS, RVA, the checklist's streaming-ingestion
    # policy), drop, read + re-add, the verification count.
    "refresh_kusto_commands": "<= 8",
    "busy_s_per_healing": "<= 2",
    "backfill_ratio_to_query_limit": ">= 0.5",
    "sweep_obligations_s": "<= 60",
    "sweep_obligations_done": "= 1000",
    "sweep_obligations_rss_mb": "<= 250",
    "backfill_apps_speedup": ">= 5",
}


def main() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    results: dict[str, Any] = {}
    steps: list[Callable[[], dict[str, Any]]] = [
        cold_start_ratio,
        scan,
        lambda: refresh(120),
        backfill,
        backfill_apps,
        parser_batch_speedup,
        sweep_obligations_alone,
    ]
    for step in steps:
        figures = step()
        results.update(figures)
        for name, value in figures.items():
            goal = GOALS.get(name, "")
            print(f"{name:28} {value:>10}   {('goal ' + goal) if goal else ''}", flush=True)
    out = ROOT / ".bench"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"written to {out / 'results.json'}")


if __name__ == "__main__":
    main()
