"""`make demo`: the sandbox breaks IoT Central exports the ways operators see them break."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from rich.console import Console
from rich.table import Table

from sandbox.scenarios import SCENARIO_FAULTS
from sandbox.stage import Target
from sandbox.symptoms import Observer, Symptoms
from sandbox.waiting import wait_for
from sandbox.world import World

APPS = ("contoso", "fabrikam")
TABLES = ("DeviceTelemetry", "FactoryTelemetry")


@dataclass
class Row:
    fault: str
    app: str
    before: Symptoms
    after: Symptoms
    rows_later: int
    recovered: Symptoms


def is_broken(observer: Observer, target: Target) -> bool:
    return observer.read(target).broken


def is_healthy(observer: Observer, target: Target) -> bool:
    return not observer.read(target).broken


def batches_reach(world: World, wanted: int) -> bool:
    return world.delivery.batches >= wanted


# Faults IoT Central refuses itself (the role its exporter needs, a destination bound to old grants).
IOTC_SIDE = ("ingestor-only", "destination-stale")
# Faults in front of the API, not of the export: the export keeps sending, only its status cannot be read.
NOT_EXPORT_FAULTS = ("gateway-html",)


def run(console: Console | None = None) -> int:
    console = console or Console(width=max(Console().width, 120))
    results: list[Row] = []
    with World() as world:
        world.start()
        for app, table_name in zip(APPS, TABLES, strict=True):
            world.add_app(app, table=table_name)
        world.start_exporter(interval_s=0.3)
        observer = Observer(world)
        console.print(
            f"[bold]Sandbox up[/]: ADX {world.cluster.url}, IoT Central {world.iotc.base_url}, "
            f"{len(APPS)} apps exporting to ADX"
        )
        for n, fault in enumerate(f for f in SCENARIO_FAULTS if f not in NOT_EXPORT_FAULTS):
            app = APPS[n % len(APPS)]
            target = world.target(app)
            if not wait_for(partial(is_healthy, observer, target), 10):
                console.print(f"[red]{app} did not start healthy[/]")
                return 1
            before = observer.read(target)
            world.inject(fault, app)
            wait_for(partial(is_broken, observer, target), 10)
            after = observer.read(target)
            wanted = world.delivery.batches + 2 * len(APPS)
            wait_for(partial(batches_reach, world, wanted), 10)
            rows_later = observer.failed_ingestion(target)
            world.clear(fault, app)
            wait_for(partial(is_healthy, observer, target), 10)
            results.append(Row(fault, app, before, after, rows_later, observer.read(target)))
            console.print(
                f"  {fault:<18} on {app:<9} → export {after.export_status}, "
                f"{after.error_code or 'no error'}; FailedIngestion {before.failed_ingestion_rows} → "
                f"{after.failed_ingestion_rows} → {rows_later}"
            )
    table = Table(title="How the sandbox breaks an export (read through the real Azure SDK clients)")
    for column in (
        "fault",
        "app",
        "export / destination",
        "error code",
        "principal in ADX",
        "FailedIngestion rows",
        "after repair by hand",
    ):
        table.add_column(column, no_wrap=column in ("fault", "error code"))
    ok = True
    for r in results:
        if r.fault in IOTC_SIDE:  # refused by IoT Central before ADX is asked: no FailedIngestion row
            grew = r.rows_later == r.after.failed_ingestion_rows == r.before.failed_ingestion_rows
        else:
            grew = r.rows_later > r.after.failed_ingestion_rows >= r.before.failed_ingestion_rows
        ok &= r.after.broken and grew and not r.recovered.broken
        table.add_row(
            r.fault,
            r.app,
            f"{r.after.export_status} / {r.after.destination_status}",
            r.after.error_code,
            "listed" if r.after.principal_listed else "not listed",
            f"{r.before.failed_ingestion_rows} → {r.after.failed_ingestion_rows} → {r.rows_later}",
            r.recovered.export_status,
        )
    console.print(table)
    if results:
        console.print(f"Example error (IoT Central destination): {results[0].after.error_message}")
    console.print(
        "[green]Every fault broke its export and showed in IoT Central, ADX and (where ADX refused) Log Analytics.[/]"
        if ok
        else "[red]Some fault did not show its symptoms.[/]"
    )
    return 0 if ok else 1
