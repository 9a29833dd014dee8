"""A fleet for backfill scenarios (drill, tests, benchmark): two device templates (one with a
component), several devices, an export filter and a jq transform into a typed ADX table; and
the ground truth a backfill is judged by."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sandbox.adx.model import coerce
from sandbox.iotc.data import telemetry_template
from sandbox.iotc.exporter import Fleet
from sandbox.world import World

THERMOSTAT = "dtmi:contoso:thermostat;1"
PUMP = "dtmi:contoso:pump;1"
COLUMNS = [
    ("DeviceId", "string"),
    ("Timestamp", "datetime"),
    ("Template", "string"),
    ("Component", "string"),
    ("Temperature", "real"),
    ("Values", "dynamic"),
]
# The how-to's style: one row per message, telemetry as columns or a bag.
TRANSFORM = (
    'import "iotc" as iotc; '
    "{DeviceId: .device.id, Timestamp: .enqueuedTime, Template: .device.templateId, "
    'Component: (.component // "root"), '
    'Temperature: ([.telemetry | iotc::find(.name == "temperature") | .value] | first), '
    "Values: (.telemetry | map({key: .name, value: .value}) | from_entries)}"
)
FILTER = 'SELECT * FROM devices WHERE $id != "pump-0"'
# Without a transform: the exported message's top-level fields, by column name.
EXPORT_COLUMNS = [
    ("applicationId", "string"),
    ("messageSource", "string"),
    ("deviceId", "string"),
    ("schema", "string"),
    ("templateId", "string"),
    ("enqueuedTime", "datetime"),
    ("telemetry", "dynamic"),
    ("enrichments", "dynamic"),
    ("component", "string"),
    ("module", "string"),
]
# A richer transform: enrichments, the component, message time and a device's site.
ENRICHMENTS = {
    "site": {"value": "plant-7"},
    "model": {"path": "$templateDisplayName"},
    "name": {"path": "$displayName"},
}
ENRICHED_COLUMNS = [*COLUMNS, ("Site", "string"), ("Model", "string"), ("Name", "string")]
ENRICHED_TRANSFORM = TRANSFORM[:-1] + ", Site: .enrichments.site, Model: .enrichments.model, Name: .enrichments.name}"


def fleet(
    thermostats: int = 3, pumps: int = 3, extra_telemetry: int = 0, creation_lag: timedelta | None = None
) -> Fleet:
    """`extra_telemetry` adds pump telemetry so one SELECT cannot hold it all (split queries)."""
    thermostat = telemetry_template(THERMOSTAT, "Thermostat", ["temperature", "humidity"], {"battery": ["level"]})
    pump = telemetry_template(
        PUMP,
        "Pump",
        ["pressure", "flow", *[f"vibration{n:02d}" for n in range(extra_telemetry)]],
        properties=["firmware"],
    )
    devices = {f"thermostat-{n}": THERMOSTAT for n in range(thermostats)}
    devices.update({f"pump-{n}": PUMP for n in range(pumps)})
    return Fleet([thermostat, pump], devices, creation_lag=creation_lag)


VARIANTS: dict[str, tuple[list[tuple[str, str]], str | None, dict[str, Any] | None]] = {
    # name: (table columns, transform, enrichments)
    "default": (COLUMNS, TRANSFORM, None),
    "enriched": (ENRICHED_COLUMNS, ENRICHED_TRANSFORM, ENRICHMENTS),
    "plain": (EXPORT_COLUMNS, None, ENRICHMENTS),
}


def add_fleet_app(
    world: World,
    subdomain: str,
    table: str,
    database: str = "devicedata",
    variant: str = "default",
    export_filter: str | None = FILTER,
    **fleet_args: Any,
) -> str:
    columns, transform, enrichments = VARIANTS[variant]
    world.add_fleet_app(
        subdomain,
        fleet(**fleet_args),
        database=database,
        table=table,
        columns=columns,
        transform=transform,
        export_filter=export_filter,
    )
    if enrichments:
        with world.iotc.lock:
            world.iotc.apps[subdomain].exports["export-1"]["enrichments"] = dict(enrichments)
    return f"{subdomain}:export-1:adx-1"


def row_key(row: dict[str, Any], columns: list[tuple[str, str]] = COLUMNS) -> tuple[str, ...]:
    # A property bag is the same whatever the order of its keys.
    return tuple(json.dumps(coerce(row.get(name), kind), sort_keys=True, default=str) for name, kind in columns)


def compare(world: World, subdomain: str, table: str, until: datetime, database: str = "devicedata") -> dict[str, int]:
    """The table against what the export would have written for every message up to `until`:
    rows missing, rows duplicated (present more often than expected) and rows expected."""
    start = datetime.min.replace(tzinfo=until.tzinfo)
    with world.cluster.lock:
        adx = world.cluster.table(database, table)
        columns = list(adx.columns)
        time = next(name for name, kind in columns if kind == "datetime")
        rows = [r for r in adx.rows if r[time] <= until]
    expected = Counter(row_key(r, columns) for r in world.delivery.expected_rows(subdomain, start, until))
    actual = Counter(row_key(r, columns) for r in rows)
    return {
        "rows_expected": sum(expected.values()),
        "rows_missing": sum((expected - actual).values()),
        "rows_duplicated": sum((actual - expected).values()),
    }
