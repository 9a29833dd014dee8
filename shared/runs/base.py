"""What every part of a run shares: the collaborators, the outcome, the phases and the errors
that stop a run without acting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.adapters.iotcentral import IoTCentralAdapter
from shared.adapters.kusto import KustoAdapter
from shared.adapters.storage import RemediationQueue, StateStore
from shared.config.settings import Settings
from shared.domain.messages import RemediationMessage
from shared.domain.plan import Plan
from shared.domain.targets import Target
from shared.runs.outcome import Outcome, Status
from shared.runs.phases import DONE, IDLE, PLANNED, TOGGLING, VERIFYING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.adapters.kusto_ingest import Ingestor
    from shared.adapters.loganalytics import LogAnalyticsAdapter
    from shared.reporting.notify import Notifier

# In a transition's `expect`: the state belongs to another run (this one has not begun there).
OTHER_RUN = "<another run>"
__all__ = ["DONE", "IDLE", "PLANNED", "TOGGLING", "VERIFYING", "Outcome", "Status"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UnknownTarget(ValueError):
    pass


class RunStopped(Exception):
    """The run may not go on: another run owns the target now, or the phase moved on."""


class LeaseLost(RunStopped):
    pass


class PhaseConflict(RunStopped):
    pass


class LeaseTooShort(LeaseLost):
    """The renewal left less lease than a worst-case step needs: the run does not act now; its
    message is queued again after `retry_s` (never ended silently)."""

    def __init__(self, message: str, retry_s: float) -> None:
        super().__init__(message)
        self.retry_s = retry_s


@dataclass
class Services:
    settings: Settings
    targets: dict[str, Target]
    store: StateStore
    queue: RemediationQueue
    kusto: Callable[[str], KustoAdapter]
    iotc: IoTCentralAdapter
    clock: Callable[[], datetime] = utcnow
    # Called after every side effect, state change and journal write. Tests make it raise (or
    # block, so a test can kill the process there) to prove a run survives dying at that point.
    checkpoint: Callable[[str], None] = field(default=lambda name: None)
    credential: TokenCredential | None = None
    # cluster URL → its azure-kusto-ingest clients, built on first use
    ingestor: Callable[[str], Ingestor] | None = None
    logs: LogAnalyticsAdapter | None = None  # ADXJournal for root causes
    notifier: Notifier | None = None  # set by shared.reporting.observers.install
    # Called with every history record (key, message, outcome, plan, gap): telemetry,
    # notifications, the remembered root cause (shared/reporting/observers.py). Their failures never fail a run.
    observers: list[Observer] = field(default_factory=list)


Observer = Callable[[str, RemediationMessage, Outcome, Plan | None, "dict[str, object] | None"], None]
