"""How a step of a run ended: one of a fixed set of outcomes (recorded in the history, counted by
telemetry, mapped to CLI exit codes), and the single way a run is escalated."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from shared.domain.plan import Plan
    from shared.domain.state import TargetState


class Status(StrEnum):
    PLANNED = "planned"  # observe mode: the plan is recorded, nothing changed
    HEALTHY = "healthy"
    WAITING = "waiting"  # the run goes on in a later message
    HEALED = "healed"
    NOT_HEALED = "not-healed"
    ESCALATED = "escalated"  # left to people
    SKIPPED = "skipped"  # nothing done by this message (the detail says why)
    RECOVERED = "recovered"  # a re-add finished for a target no longer configured
    BACKFILLED = "backfilled"
    BACKFILL_PLANNED = "backfill-planned"
    BACKFILL_REFUSED = "backfill-refused"


@dataclass
class Outcome:
    status: Status
    detail: str
    plan: Plan | None = None
    incident: str = ""  # shared/reporting/notify.py KINDS: something people must hear about

    def __post_init__(self) -> None:
        self.status = Status(self.status)  # an unknown outcome is a bug, refused here


def escalate(state: TargetState, reason: str, diagnosis: str = "") -> None:
    """Mark the target escalated (left to people) with the reason; the one way every part of a run
    escalates, so the state always says the same thing."""
    state.escalated = True
    state.escalation_reason = reason[:1000]
    state.last_outcome = Status.ESCALATED.value
    if diagnosis:
        state.last_diagnosis = diagnosis


def ended(
    state: TargetState, outcome: Status, *, cooldown_until: datetime | None = None, healed_at: datetime | None = None
) -> None:
    """A run ends without escalation: its outcome, and the cooldown and healing time when given."""
    state.last_outcome = outcome.value
    if cooldown_until is not None:
        state.cooldown_until = cooldown_until
    if healed_at is not None:
        state.healed_at = healed_at
