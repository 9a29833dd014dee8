"""Settings of the runs: what is healed and in which mode, and how runs are paced, leased,
verified and swept. A group of `shared.config.settings.Settings` (app settings HEALER_<FIELD>)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RunSettings(BaseModel):
    """What is healed, and how its runs are paced, leased, verified and swept."""

    mode: Literal["observe", "enforce"] = Field(
        "observe", description="`observe` plans and records only; `enforce` repairs"
    )
    targets: str | None = Field(None, description="JSON array of targets (see [A target](#a-target))")
    targets_file: str | None = Field(None, description="path of a JSON file with the same array (not both)")

    refresh_wait_seconds: int = Field(60, ge=0, le=3600, description="wait between drop and re-add")
    cooldown_seconds: int = Field(
        1800, ge=0, le=7 * 86400, description="no new remediation of a target this long after it healed"
    )
    healthy_cooldown_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="no new remediation this long after a run found the target healthy although logs or an alert "
        "said it failed",
    )
    max_attempts: int = Field(3, ge=1, le=50, description="failed attempts within the window before *escalated*")
    attempt_window_seconds: int = Field(86400, ge=60, le=30 * 86400, description="the window for counting attempts")
    max_remediations_per_cycle: int = Field(5, ge=1, le=500, description="remediations one detection cycle may start")
    verify_deadline_seconds: int = Field(900, ge=0, le=86400, description="how long verification keeps polling")
    verify_poll_seconds: int = Field(60, ge=1, le=3600, description="delay between verification polls")
    lease_seconds: int = Field(
        360,
        ge=10,
        le=86400,
        description="lease on a target, renewed before every side effect (plus the step's own delay); must exceed "
        "the worst-case step by the margin (10 s for the renewal plus twice the clock skew), or the start is "
        "refused naming both numbers",
    )
    # How far apart the clocks of two instances may be (assumed): leases and obligations allow it.
    clock_skew_seconds: int = Field(
        30,
        ge=0,
        le=600,
        description="how far apart two instances' clocks may be (assumed); leases and obligations allow for it "
        "both ways",
    )
    # How late a command the healer issued may still land after the renewal that allowed it
    # (assumed; default twice the lease): an obligation is discharged only after that.
    act_lands_within_seconds: int | None = Field(
        None,
        ge=0,
        le=7 * 86400,
        description="how late a command the healer issued may still land after the renewal that allowed it "
        "(assumed; unset: twice the lease); an obligation is discharged only after that",
    )
    sweep_grace_seconds: int = Field(
        120,
        ge=0,
        le=86400,
        description="how long past its due time a re-add may be late before the sweep does it",
    )
    # The sweep discharges obligations concurrently, and begins nothing new after its budget
    # (well inside host.json's functionTimeout of 10 min: detection must still run).
    sweep_concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description="obligations the recovery sweep discharges at once (at most 4 per cluster and per app)",
    )
    sweep_budget_seconds: int = Field(
        240,
        ge=10,
        le=3600,
        description="the sweep begins nothing new after this long (well inside `functionTimeout`); the rest waits "
        "for the next cycle",
    )
    toggle_export: bool = Field(False, description="disable and re-enable the export after a repair")
