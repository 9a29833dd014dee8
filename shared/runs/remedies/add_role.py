"""Remedy: add the missing database role (planned → adding → verifying).

An identity Entra does not know yet (a new one takes minutes to replicate) makes ADX refuse the
`.add`: the same run retries, through delayed queue messages, for at most
HEALER_UNKNOWN_IDENTITY_RETRY_SECONDS from its first attempt, then escalates."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from shared.adapters.kusto_errors import AdxError
from shared.domain.plan import Action, Plan
from shared.domain.state import RunData, TargetState
from shared.runs.base import PLANNED, Outcome
from shared.runs.outcome import Status, escalate
from shared.runs.phases import ADDING
from shared.runs.reading import Reading
from shared.runs.remedy import Step, holds


class AddRole:
    action: ClassVar[str] = "add-role"
    phases: ClassVar[tuple[str, ...]] = (ADDING,)
    steps: ClassVar[tuple[str, ...]] = ()

    def begin(self, step: Step, reading: Reading, action: Action, plan: Plan) -> Outcome:
        intent = RunData(role=action.role, fqn=action.fqn, notes=action.notes, since=step.healer.services.clock())

        def adding(state: TargetState) -> None:
            state.run_data = intent

        step.run.transition({PLANNED}, ADDING, adding)
        blocked = self._add(step, intent, reading)
        if blocked is not None:
            return blocked
        step.healer.history(
            step, Outcome(Status.WAITING, f"added {action.role} for {action.fqn}; verifying", plan), plan
        )
        return step.healer.to_verify(step, {ADDING}, step.healer.services.clock())

    def resume(self, step: Step, state: TargetState) -> Outcome:
        """A redelivered message whose add already began: finish that add, do not diagnose afresh
        (the export still reports the old failure until its next batch)."""
        blocked = self._add(step, state.run_data, None)
        if blocked is not None:
            return blocked
        return step.healer.to_verify(step, {ADDING}, state.phase_at or step.healer.services.clock())

    def _add(self, step: Step, intent: RunData, reading: Reading | None) -> Outcome | None:
        try:
            self._effect(step, intent, reading)
        except AdxError as exc:
            if not exc.unknown_principal:
                raise
            return self._unknown(step, intent, exc)
        return None

    @staticmethod
    def _unknown(step: Step, intent: RunData, exc: AdxError) -> Outcome:
        """Retry the same run a bounded time (delayed messages), then escalate; never forever."""
        services = step.healer.services
        now = services.clock()
        since = intent.since or now
        budget = services.settings.unknown_identity_retry_seconds
        waited = (now - since).total_seconds()
        fqn = intent.fqn
        if waited < budget:
            delay = max(1.0, min(float(services.settings.verify_poll_seconds), budget - waited))
            step.run.renew(extra_s=delay, during=ADDING)
            services.queue.send(step.msg.to_json(), delay_s=delay)
            services.checkpoint("enqueue:add-again")
            until = since + timedelta(seconds=budget)
            detail = f"{fqn} is not known to Entra yet ({exc.message}); retrying until {until:%H:%M:%S}Z"
            return step.healer.history(step, Outcome(Status.WAITING, detail))
        reason = (
            f"{fqn} is still unknown to Entra after {int(waited)}s of retries ({exc.message}): check IoT Central's "
            "managed identity (ARM) and that the identity exists, then resume the target"
        )

        step.run.finish(lambda state: escalate(state, reason))
        return step.healer.history(step, Outcome(Status.ESCALATED, reason))

    @staticmethod
    def _effect(step: Step, intent: RunData, reading: Reading | None) -> None:
        target = step.target
        assert target is not None  # an add is planned only for a known target
        kusto = step.healer.services.kusto(target.cluster_url)
        current = reading.adx.database_principals if reading else None
        role, fqn, notes = intent.role, intent.fqn, intent.notes
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
