"""Obligations: what a run must undo or finish, recorded before the act that creates it.

A principal dropped must be re-added (`PendingReadd`), an export disabled must be re-enabled
(`PendingEnable`), a destination copy must be deleted or its re-point finished (`PendingCopy`).
Each record holds everything needed to discharge it from the record alone: no configuration, no
run in memory.

The rule: an obligation is discharged only when its effect is observed **and** no act of the run
that created it can still land. Every act that creates an obligation stamps the record, at the
renewal that allows it, with `land_by` = now + HEALER_ACT_LANDS_WITHIN_SECONDS (+ twice the clock
skew). Until then, whoever holds the target (the run, then the sweep) keeps checking and
re-applying; a late drop that lands after a re-add is re-added again. Configuration changes,
target removal and observe mode never cancel an obligation: restoring is not a new change.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.config.settings import Settings
from shared.domain.state import PendingCopy, PendingEnable, PendingReadd, TargetState

# Back-off of the sweep's discharge attempts while they are refused: 5 s, doubling, at most 15 min.
BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 900.0


def land_by(settings: Settings, now: datetime) -> datetime:
    """Until when an act allowed now may still land (seen from any instance's clock)."""
    return now + timedelta(seconds=settings.act_window_seconds)


def settled(record: PendingReadd | PendingEnable | PendingCopy, now: datetime) -> bool:
    """No act that created this obligation can still land."""
    return record.land_by is None or now >= record.land_by


def stamp(state: TargetState, kind: str, until: datetime) -> None:
    """Record, in the same write as the renewal that allows an act, until when it may land."""
    if kind == "readd" and state.pending_readd is not None:
        later = max(filter(None, [state.pending_readd.land_by, until]))
        state.pending_readd = state.pending_readd.model_copy(update={"land_by": later})
    elif kind == "enable" and state.pending_enable is not None:
        later = max(filter(None, [state.pending_enable.land_by, until]))
        state.pending_enable = state.pending_enable.model_copy(update={"land_by": later})
    elif kind == "copy" and state.pending_copy is not None:
        later = max(filter(None, [state.pending_copy.land_by, until]))
        state.pending_copy = state.pending_copy.model_copy(update={"land_by": later})
    elif kind not in ("readd", "enable", "copy"):
        raise ValueError(f"unknown obligation {kind!r}")


def readded(state: TargetState, run_id: str, now: datetime) -> None:
    """The re-add of `run_id` was observed: discharge the record if settled, else mark it."""
    pending = state.pending_readd
    if pending is None or pending.run_id != run_id:
        return
    state.pending_readd = None if settled(pending, now) else pending.model_copy(update={"readded_at": now})


def enabled(state: TargetState, now: datetime) -> None:
    """The export was observed enabled again: discharge the record if settled, else mark it."""
    pending = state.pending_enable
    if pending is None:
        return
    state.pending_enable = None if settled(pending, now) else pending.model_copy(update={"enabled_at": now})


def copied(state: TargetState, now: datetime) -> None:
    """One destination is left, the export sending to it: discharge the record if settled, else mark it."""
    pending = state.pending_copy
    if pending is None:
        return
    state.pending_copy = None if settled(pending, now) else pending.model_copy(update={"settled_at": now})


def open_obligations(state: TargetState) -> list[str]:
    """What is still owed on this target, in words (the sweep's report, /api/health)."""
    owed = []
    if state.pending_readd is not None:
        owed.append(f"re-add {state.pending_readd.principal} (run {state.pending_readd.run_id})")
    if state.pending_enable is not None:
        owed.append(f"re-enable export {state.pending_enable.export_id} (run {state.pending_enable.run_id})")
    if state.pending_copy is not None:
        owed.append(f"settle destination copy {state.pending_copy.new_id} (run {state.pending_copy.run_id})")
    return owed


def backing_off(state: TargetState, now: datetime) -> bool:
    return state.retry_at is not None and now < state.retry_at


def back_off(state: TargetState, now: datetime) -> None:
    """A discharge was refused: try again later, each time twice as late (bounded)."""
    state.tries += 1
    delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (state.tries - 1))
    state.retry_at = now + timedelta(seconds=delay)


def succeeded(state: TargetState) -> None:
    state.tries, state.retry_at = 0, None
