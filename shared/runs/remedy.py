"""What a remedy is. Each remedy is one module: the plan action it carries out, the phases it
owns, the queue steps it answers, and how it begins and resumes. The machine knows remedies only
through this interface (`shared/runs/engine.py` lists them), so a new one is a new module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from shared.domain.messages import RemediationMessage
from shared.domain.plan import Action, Plan
from shared.domain.principals import Assignment, PrincipalRef
from shared.domain.state import TargetState
from shared.domain.targets import Target
from shared.runs.base import Outcome
from shared.runs.fencing import Run
from shared.runs.reading import Reading

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from datetime import datetime

    from shared.domain.diagnosis import Evidence
    from shared.domain.state import PendingReadd
    from shared.runs.base import Services


class Machine(Protocol):
    """What remedies, follow-ups, verification and the sweep use of the run engine (the `Healer` of
    shared/runs/engine.py): they name this, never the engine, so the engine is the one module that
    imports them all and none imports it back."""

    services: Services
    remedies: dict[str, Remedy]
    follow_ups: tuple[FollowUp, ...]

    def plan(
        self, target: Target, correlation_id: str = "dry-run", extra: list[Evidence] | None = None
    ) -> tuple[Reading, Plan]: ...

    def known(self, key: str, state: TargetState | None = None) -> Target | None: ...

    def finish_readd(self, step: Step, pending: PendingReadd, verb: str = "re-added") -> Outcome: ...

    def to_verify(
        self,
        step: Step,
        expect: Collection[str],
        action_at: datetime,
        mutate: Callable[[TargetState], None] | None = None,
    ) -> Outcome: ...

    def history(
        self, step: Step, outcome: Outcome, plan: Plan | None = None, gap: dict[str, object] | None = None
    ) -> Outcome: ...


@dataclass
class Step:
    """One invocation's view of a run: the machine, the run's fenced hands, its target, its message."""

    healer: Machine
    run: Run
    target: Target | None  # None: a run whose target left the configuration (only a re-add may go on)
    msg: RemediationMessage

    @property
    def key(self) -> str:
        return self.run.key


class Remedy(Protocol):
    action: ClassVar[str]  # the plan action it carries out (Action.kind)
    phases: ClassVar[tuple[str, ...]]  # the run phases it owns, in order
    steps: ClassVar[tuple[str, ...]]  # queue message steps it sends (they come back to `resume`)

    def begin(self, step: Step, reading: Reading, action: Action, plan: Plan) -> Outcome:
        """Act on a fresh plan; the run is in phase `planned` and holds the lease."""

    def resume(self, step: Step, state: TargetState) -> Outcome:
        """A message of this run found it in one of `phases`: carry on from there, never re-plan."""


class FollowUp(Protocol):
    """A phase after verification (for example a backfill of the rows missed while broken)."""

    phases: ClassVar[tuple[str, ...]]
    steps: ClassVar[tuple[str, ...]]

    def after_healed(self, step: Step, state: TargetState) -> Outcome | None:
        """Called once verification healed the target, before the run ends. An outcome means the
        follow-up took over (it moved the phase on and ends the run itself); None, nothing to do."""

    def resume(self, step: Step, state: TargetState) -> Outcome:
        """A message of this run found it in one of `phases`."""


def holds(listing: list[Assignment], role: str, fqn: str) -> bool:
    """`fqn` holds `role` on the database: listed under either id or by PrincipalObjectId (ADX may
    list an application under its application id whatever id was added)."""
    who = PrincipalRef.from_fqn(fqn)
    return any(a.scope == "database" and a.role == role and who.matches(a) for a in listing)
