"""Remedy: add the missing database role (planned → adding → verifying)."""

from __future__ import annotations

from typing import ClassVar

from shared.plan import Action, Plan
from shared.runs.base import PLANNED, Outcome
from shared.runs.reading import Reading
from shared.runs.remedy import Step, holds
from shared.storage import TargetState

ADDING = "adding"


class AddRole:
    action: ClassVar[str] = "add-role"
    phases: ClassVar[tuple[str, ...]] = (ADDING,)
    steps: ClassVar[tuple[str, ...]] = ()

    def begin(self, step: Step, reading: Reading, action: Action, plan: Plan) -> Outcome:
        intent = {"role": action.role, "fqn": action.fqn, "notes": action.notes}
        step.run.transition({PLANNED}, ADDING, lambda st: setattr(st, "run_data", intent))
        self._add(step, intent, reading)
        step.healer.history(step, Outcome("waiting", f"added {action.role} for {action.fqn}; verifying", plan), plan)
        return step.healer.to_verify(step, {ADDING}, step.healer.s.clock())

    def resume(self, step: Step, state: TargetState) -> Outcome:
        """A redelivered message whose add already began: finish that add, do not diagnose afresh
        (the export still reports the old failure until its next batch)."""
        self._add(step, state.run_data, None)
        return step.healer.to_verify(step, {ADDING}, state.phase_at or step.healer.s.clock())

    @staticmethod
    def _add(step: Step, intent: dict[str, str], reading: Reading | None) -> None:
        target = step.target
        assert target is not None  # an add is planned only for a known target
        kusto = step.healer.s.kusto(target.cluster_url)
        current = reading.adx.database_principals if reading else None
        role, fqn, notes = intent["role"], intent["fqn"], intent["notes"]
        step.run.effect(
            "add",
            ADDING,
            # set_role reads first when it has no listing: an add that landed before a crash is not sent twice.
            lambda: kusto.set_role(target.database, role, fqn, present=True, notes=notes or None, current=current),
            lambda listing: {"listed": holds(listing, role, fqn)},
            role=role,
            fqn=fqn,
            notes=notes,
        )
