"""`python -m sandbox serve | demo`."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

import click

from sandbox.azurite import Azurite

STATE_DIR = Path(".sandbox")
DEFAULT_PORTS = {
    "kusto": 18080,
    "iotcentral": 18081,
    "loganalytics": 18082,
    "identity": 18083,
    "control": 18084,
}


@click.group()
def main() -> None:
    """Local stand-ins for Azure Data Explorer, IoT Central, Log Analytics, Entra ID and Storage."""


@main.command()
@click.option("--apps", default="contoso,fabrikam", show_default=True, help="IoT Central apps to create.")
@click.option("--free-ports", is_flag=True, help="Pick free ports instead of 18080-18084 and 10000-10002.")
@click.option(
    "--app-count",
    type=click.IntRange(0, 1000),
    default=0,
    help="Instead of --apps: this many apps named app000, app001, ...",
)
@click.option("--exports", type=click.IntRange(1, 10), default=1, show_default=True, help="ADX exports per app.")
@click.option(
    "--page-size",
    type=click.IntRange(1, 1000),
    default=4,
    show_default=True,
    help="Items per page of IoT Central list calls (small, so paging is exercised).",
)
@click.option("--export-interval", default=1.0, show_default=True, help="Seconds between exporter batches (0: off).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=STATE_DIR,
    show_default=True,
    help="Where endpoints.json and Azurite's data go.",
)
def serve(
    apps: str, app_count: int, exports: int, page_size: int, free_ports: bool, export_interval: float, state_dir: Path
) -> None:
    """Start everything and keep it running until Ctrl-C (or SIGTERM); writes <state-dir>/endpoints.json."""
    from sandbox.world import World

    state_dir.mkdir(parents=True, exist_ok=True)
    azurite_ports = {} if free_ports else {"blob": 10000, "queue": 10001, "table": 10002}
    names = [f"app{n:03d}" for n in range(app_count)] or [a.strip() for a in apps.split(",") if a.strip()]
    with Azurite(state_dir / "azurite", azurite_ports) as azurite, World(page_size=page_size) as world:
        world.start({} if free_ports else DEFAULT_PORTS)
        from sandbox.azurite import ACCOUNT_KEY

        world.attach_storage(azurite.connection_string, ACCOUNT_KEY)  # queued ingestion for backfills
        for app in names:
            world.add_app(app, table=app.title().replace("-", "") + "Telemetry", exports=exports)
        if export_interval > 0:
            world.start_exporter(export_interval)
        endpoints = {
            **world.endpoints(),
            **world.identity_env(),
            "storage_connection_string": azurite.connection_string,
        }
        (state_dir / "endpoints.json").write_text(json.dumps(endpoints, indent=2))
        for key, value in endpoints.items():
            if key not in ("IDENTITY_HEADER", "storage_connection_string"):
                click.echo(f"{key:28} {value}")
        click.echo(f"{'(all, with secrets)':28} {state_dir / 'endpoints.json'}")
        click.echo("Ctrl-C stops the sandbox.")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


@main.command()
def breakage() -> None:
    """Break exports with each scenario fault and show the symptoms in every service (no healer)."""
    from sandbox.demo import run

    sys.exit(run())


@main.command()
@click.option(
    "--report",
    "report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=STATE_DIR / "drill-report.json",
    show_default=True,
    help="Where to write the JSON report.",
)
@click.option("--scenario", "scenarios", multiple=True, help="Run only these scenarios (repeatable).")
def drill(report: Path, scenarios: tuple[str, ...]) -> None:
    """Run every failure scenario end to end through the real triggers and report."""
    from sandbox.drill import SCENARIOS, run

    unknown = set(scenarios) - {s.name for s in SCENARIOS}
    if unknown:
        raise click.BadParameter(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(s.name for s in SCENARIOS)}",
            param_hint="--scenario",
        )
    sys.exit(run(report, list(scenarios) or None))


if __name__ == "__main__":
    main()
