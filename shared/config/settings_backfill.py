"""Settings of the backfill after a verified healing. A group of `shared.config.settings.Settings`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class BackfillSettings(BaseModel):
    """Whether and how the gap of a healed target is backfilled."""

    # After a verified healing: off, plan (measure the gap and record what would be ingested) or on.
    backfill: Literal["off", "plan", "on"] = Field(
        "plan",
        description="after a verified healing: `off`; `plan` measures the gap and records what a backfill would "
        "ingest; `on` also ingests it (see [Backfill](backfill.md))",
    )
    backfill_invocation_seconds: int = Field(
        120,
        ge=5,
        le=540,
        description="time one queue invocation spends on a backfill before it hands the rest to the next message",
    )
    # IoT Central's data retention (its quotas page: 7 days): older gaps are reported unrecoverable.
    backfill_retention_days: int = Field(
        7,
        ge=1,
        le=30,
        description="IoT Central's data retention (its quotas page: 7 days): the part of a gap older than this is "
        "reported unrecoverable, with its size",
    )
    # ADX's default queued-ingestion batching time (5 min) plus a margin.
    backfill_settle_seconds: int = Field(
        360,
        ge=0,
        le=3600,
        description="a backfill chunk redone after a crash waits this long after its first send before reading the "
        "table back and sending only what is still missing (ADX's default queued-ingestion batching time, 5 min, "
        "plus a margin; raise it for a table with a longer batching policy)",
    )
    # Where rows would keep what the query API cannot give back (message properties, device
    # properties): refuse (the default), or write them marked approximate, naming what is missing.
    backfill_approximate: bool = Field(
        False,
        description="where the destination's rows keep what the query API cannot give back (message properties, "
        "device properties, enrichments from device properties), the backfill refuses; `true` writes them "
        "anyway, marked approximate (`approximate` in the gap lists what was not restored)",
    )
