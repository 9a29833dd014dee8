"""The target the run model and its cases heal: its principal, the notes the healer writes, and its settings."""

from __future__ import annotations

from typing import Any

from shared.config.settings import Settings
from shared.domain.targets import Target

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


OBJECT = "0b4f8e1a-0000-4000-8000-000000000001"


FQN = f"aadapp={OBJECT};{TENANT}"


NOTES = "IoT Central contoso data export"


TARGET = Target(
    app="contoso",
    export_id="export-1",
    destination_id="adx-1",
    cluster_url="https://model.westeurope.kusto.windows.net",
    database="devicedata",
    table="DeviceTelemetry",
    principal={"object_id": OBJECT, "tenant_id": TENANT},  # type: ignore[arg-type]
    role="ingestors",  # the model's principal holds Ingestor: a denial is a stale permission
)


def model_settings() -> Settings:
    values: dict[str, Any] = {
        "mode": "enforce",
        "refresh_wait_seconds": 60,
        "sweep_grace_seconds": 120,
        "verify_poll_seconds": 60,
        "verify_deadline_seconds": 300,
        "cooldown_seconds": 0,
        "max_attempts": 50,
        "backfill": "off",  # each example draws off, plan or on
        "remedy_order": "refresh",
        "sweep_concurrency": 1,  # one sweep thread: the model's crashes stay deterministic
    }
    return Settings(**values)
