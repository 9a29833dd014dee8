"""The run engine: every message is decided from the run's phase (in the target's state) and the
message's step, along the graph in shared/runs/phases.py: start → planned → (a remedy's phases)
→ [toggling] → verifying → [backfilling] → done.

A redelivered message of a run that already acted resumes from its phase or does nothing; it
never plans again. Whatever a message asks for, a pending re-add is done first: a principal is
never left dropped. A new start never takes over another run caught mid-way (it waits, or hands
that run to its phase's recovery owner), observe mode lets a run in flight only discharge what it
owes, and a lease too short to act re-queues the message instead of ending it silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from shared.domain.alerts import ALERT_WITHOUT_CODE
from shared.domain.diagnosis import Evidence
from shared.domain.messages import RemediationMessage
from shared.domain.plan import Plan
from shared.domain.state import PendingReadd, RunData, TargetState
from shared.domain.targets import Target
from shared.runs import history, obligations, phases, reading, verifying
from shared.runs.backfill import Backfill
from shared.runs.base import (
    DONE,
    IDLE,
    OTHER_RUN,
    PLANNED,
    TOGGLING,
    VERIFYING,
    LeaseTooShort,
    Outcome,
    PhaseConflict,
    RunStopped,
    Services,
    UnknownTarget,
)
from shared.runs.fencing import Run
from shared.runs.outcome import Status, ended, escalate
from shared.runs.recovery import recover
from shared.runs.remedies.add_role import AddRole
from shared.runs.remedies.recreate import RecreateDestination
from shared.runs.remedies.refresh import ReaddAbandoned, ReaddBlocked, Refresh, escalate_blocked, readd
from shared.runs.remedy import FollowUp, Remedy, Step
from shared.runs.sweep import sweep

log = logging.getLogger(__name__)

# The remedies, mildest first, and what may follow a healed verification. A new remedy or
# follow-up is a module with its phases, registered here (and its queue steps in messages.MessageStep).
REMEDIES: tuple[Remedy, ...] = (AddRole(), RecreateDestination(), Refresh())
FOLLOW_UPS: tuple[FollowUp, ...] = (Backfill(),)


class Healer:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.remedies: dict[str, Remedy] = {r.action: r for r in REMEDIES}
        self.follow_ups: tuple[FollowUp, ...] = FOLLOW_UPS

    # ------------------------------------------------------------------ reading and planning

    def read(self, target: Target, extra: list[Evidence] | None = None) -> reading.Reading:
        return reading.read(self.services, target, extra)

    def plan(
        self, target: Target, correlation_id: str = "dry-run", extra: list[Evidence] | None = None
    ) -> tuple[reading.Reading, Plan]:
        return reading.plan(self.services, target, correlation_id, extra)

    def known(self, key: str, state: TargetState | None = None) -> Target | None:
        """The target, at the destination the healer re-created for it (if it did)."""
        target = self.services.targets.get(key)
        state = state or self.services.store.load(key)
        if target is None and state.discovered is not None:
            target = Target.model_validate(state.discovered)
        return target.at_destination(state.destination_id) if target is not None else None

    def target(self, key: str) -> Target:
        target = self.known(key)
        if target is None:
            raise UnknownTarget(f"target={key!r} is not configured or discovered")
        return target

    def sweep(self) -> list[str]:
        """The recovery sweep (shared/runs/sweep.py): what it re-added or re-enabled."""
        return sweep(self).done

    # ------------------------------------------------------------------ dispatch

    def handle(self, msg: RemediationMessage) -> Outcome:
        state = self.services.store.load(msg.target)
        target = self.known(msg.target, state)
        pending = state.pending_readd
        if pending is not None and pending.abandoned:
            return Outcome(Status.SKIPPED, f"escalated: {pending.abandoned}")
        if pending is not None and pending.run_id != msg.run_id:
            if pending.readded_at is None:
                return self._recover_first(target, msg, pending)
            return self._settling(target, msg, pending.run_id, pending.land_by)
        own = state.run_id == msg.run_id and state.phase not in (PLANNED, DONE, "")
        if target is None and pending is None and not own:
            if msg.step == "readd":  # never dead-lettered: nothing is pending, so nothing is dropped
                return Outcome(Status.SKIPPED, f"no re-add pending for {msg.target}")
            raise UnknownTarget(f"target={msg.target!r} is not configured or discovered")
        step = Step(self, Run(self.services, msg.target, msg.run_id), target, msg)
        try:
            if pending is not None and pending.readded_at is None and state.phase not in Refresh.phases:
                if step.run.acquire() is None:
                    return Outcome(Status.SKIPPED, "another remediation holds this target")
                return self.finish_readd(step, pending)
            if own:
                stray = self._stray(state, msg)
                if stray:  # touches nothing, not even the lease: the sweep must see a stalled run lapse
                    return Outcome(Status.SKIPPED, stray)
                if step.run.acquire() is None:
                    return Outcome(Status.SKIPPED, "another remediation holds this target")
                return self._resume(step, state)
            if msg.step in ("start", "backfill") and target is not None:
                waiting = self._door(step, state)
                if waiting is not None:
                    return waiting
            if msg.step == "start":
                return self._start(step, state)
            if msg.step == "backfill" and target is not None:  # asked for by hand: a run of its own
                return Backfill().begin(step, state)
            return Outcome(Status.SKIPPED, f"run {msg.run_id} is not in progress (phase {state.phase or 'idle'})")
        except LeaseTooShort as short:
            # Never silently: the same message comes back once the lease can hold a whole step.
            self.services.queue.send(msg.to_json(), delay_s=short.retry_s)
            self.services.checkpoint("enqueue:lease-too-short")
            return self.history(step, Outcome(Status.WAITING, f"{short}; queued again in {short.retry_s:.0f} s"))
        except RunStopped as stopped:
            log.warning("%s run %s stopped: %s", msg.target, msg.run_id, stopped)
            return Outcome(Status.SKIPPED, str(stopped))

    def _settling(self, target: Target | None, msg: RemediationMessage, run_id: str, until: datetime | None) -> Outcome:
        """Another run's obligation is discharged but not settled (an act it issued may still land):
        a new run waits for the sweep to discharge it, and says so."""
        detail = f"waiting: run {run_id}'s obligations settle at {until:%H:%M:%S}Z" if until else "waiting"
        if msg.step != "start" or target is None:
            return Outcome(Status.SKIPPED, detail)
        return self.history(
            Step(self, Run(self.services, msg.target, msg.run_id), target, msg), Outcome(Status.SKIPPED, detail)
        )

    def _door(self, step: Step, state: TargetState) -> Outcome | None:
        """No silent takeover: a new run never begins over another run caught mid-way. A live lease
        makes it wait; a lapsed one hands the earlier run to its phase's recovery owner (the
        sweep's), recorded in the history as a hand-over, and this start waits for it."""
        if state.run_id in ("", step.msg.run_id) or state.phase in phases.REPLACEABLE:
            copy = state.pending_copy
            if copy is not None and copy.run_id != step.msg.run_id:
                # Another run's destination copy is not settled yet: a new run waits for the sweep.
                return self._settling(step.target, step.msg, copy.run_id, copy.land_by)
            return None
        if state.leased(self.services.clock()):
            return Outcome(Status.SKIPPED, f"run {state.run_id} holds this target ({state.phase})")
        did = recover(self, state)
        detail = f"handed over: run {state.run_id} was {state.phase} with its lease lapsed"
        detail += f"; {'; '.join(did)}" if did else "; its recovery owner could not act yet"
        return self.history(step, Outcome(Status.SKIPPED, f"{detail}; this start waits"))

    def _stray(self, state: TargetState, msg: RemediationMessage) -> str:
        """Why a message of this run has nothing to do in the run's follow-up phase ("" if it has):
        an earlier step delivered again (a verify redelivered after verification handed over)."""
        for follow_up in self.follow_ups:
            if state.phase in follow_up.phases and msg.step not in follow_up.steps:
                return f"run {msg.run_id} is {state.phase}; {msg.step} is not its step"
        return ""

    def _resume(self, step: Step, state: TargetState) -> Outcome:
        if state.phase in Refresh.phases and state.pending_readd is not None and self.services.settings.observe_only:
            # Observe mode: what was dropped goes back now (a discharge), nothing more is dropped.
            return self.finish_readd(step, state.pending_readd)
        if step.target is None and state.pending_readd is None:
            # Removed from configuration mid-run: discharge what the run owes, then it ends here.
            return self._discharge_and_end(step, state, f"{step.key} is no longer configured")
        if self.services.settings.observe_only and state.phase not in (VERIFYING, *self._follow_up_phases()):
            return self._discharge_and_end(step, state, "observe mode")
        for remedy in self.remedies.values():
            if state.phase in remedy.phases:
                return remedy.resume(step, state)
        for follow_up in self.follow_ups:
            if state.phase in follow_up.phases:
                return follow_up.resume(step, state)
        if state.phase == TOGGLING:
            return self.to_verify(step, {TOGGLING}, step.msg.action_at or self.services.clock())
        if state.phase == VERIFYING:
            if step.msg.step == "verify":
                return verifying.verify_step(self, step)
            return verifying.send_verify(self, step, step.msg.action_at or state.phase_at or self.services.clock())
        raise RuntimeError(f"{step.key}: run {state.run_id} is in an unknown phase {state.phase!r}")

    def _follow_up_phases(self) -> tuple[str, ...]:
        return tuple(p for f in self.follow_ups for p in f.phases)

    def _discharge_and_end(self, step: Step, state: TargetState, why: str) -> Outcome:
        """Only discharge what the run owes (from its records alone), then end it: a copy it
        created is deleted or its re-point finished, an export it disabled is enabled again."""
        done: list[str] = []
        if state.phase in RecreateDestination.phases:
            done.append(RecreateDestination.discharge(step, state))
        enable = state.pending_enable
        if enable is not None:
            iotc = self.services.iotc
            step.run.effect(
                "enable-export",
                None,
                lambda: iotc.set_enabled(enable.app, enable.export_id, True),
                app=enable.app,
                export=enable.export_id,
            )
            done.append(f"re-enabled export {enable.export_id}")
        now = self.services.clock()

        def ended(st: TargetState) -> None:
            if enable is not None:
                obligations.enabled(st, now)
            st.last_outcome = Status.SKIPPED.value

        step.run.finish(ended)
        detail = f"{why}: run stopped in phase {state.phase}" + (
            f" after discharging: {'; '.join(done)}" if done else ""
        )
        return self.history(step, Outcome(Status.SKIPPED, detail))

    # ------------------------------------------------------------------ start

    def _start(self, step: Step, state: TargetState) -> Outcome:
        settings, now, msg = self.services.settings, self.services.clock(), step.msg
        target = step.target
        assert target is not None
        if state.last_run_id == msg.run_id or (state.run_id == msg.run_id and state.phase == DONE):
            return Outcome(Status.SKIPPED, f"run {msg.run_id} already ended")
        if state.escalated:
            return self.history(step, Outcome(Status.SKIPPED, f"escalated: {state.escalation_reason}"))
        manual = msg.trigger in ("http", "cli")
        if state.cooldown_until and now < state.cooldown_until and state.lease_owner != msg.run_id and not manual:
            return self.history(step, Outcome(Status.SKIPPED, f"cooling down until {state.cooldown_until:%H:%M:%S}Z"))
        window = now - timedelta(seconds=settings.attempt_window_seconds)
        if len([a for a in state.attempts if a > window]) >= settings.max_attempts:
            reason = f"{settings.max_attempts} failed attempts within {settings.attempt_window_seconds}s"
            self.services.store.update(target.key, lambda st: escalate(st, reason))
            return self.history(step, Outcome(Status.ESCALATED, reason))
        if step.run.acquire() is None:
            return self.history(step, Outcome(Status.SKIPPED, "another remediation holds this target"))
        if state.run_id != msg.run_id and any(
            r["Status"] == "intent" for r in self.services.store.read_journal(target.key, msg.run_id)
        ):
            # A start delivered again after its run ended and another began: it acted once already.
            step.run.finish()
            return Outcome(Status.SKIPPED, f"run {msg.run_id} already acted")

        carried = [Evidence(e.source, e.code, e.message) for e in msg.evidence]
        # An alert that names no error is a reason to look, not a failure to classify.
        telling = [e for e in carried if e.permission or e.code != ALERT_WITHOUT_CODE]
        read, plan = self.plan(target, msg.correlation_id, telling)
        step.run.journal("plan", "done", plan=plan.to_dict(), trigger=msg.trigger)
        kind = str(plan.diagnosis.kind)

        # Only a run that has not acted may plan: a twin delivery that got further wins.
        def planned(state: TargetState) -> None:
            if state.pending_readd is not None:  # a drop happened since this message looked
                raise PhaseConflict(f"{target.key}: run {state.pending_readd.run_id}'s re-add is pending")
            state.last_diagnosis, state.run_data = kind, RunData()

        step.run.transition({OTHER_RUN, IDLE, PLANNED}, PLANNED, planned)
        if settings.observe_only:
            step.run.finish(lambda st: ended(st, Status.PLANNED))
            return self.history(
                step, Outcome(Status.PLANNED, "observe mode: plan recorded, nothing changed", plan), plan
            )
        if plan.escalates:
            reason = plan.actions[0].reason
            step.run.finish(lambda st: escalate(st, reason, kind))
            return self.history(step, Outcome(Status.ESCALATED, reason, plan), plan)
        if not plan.actions:
            if carried:  # healthy despite the evidence that started the run: do not re-queue every cycle
                until = now + timedelta(seconds=settings.healthy_cooldown_seconds)
                step.run.finish(lambda st: ended(st, Status.HEALTHY, cooldown_until=until))
            else:
                step.run.finish(lambda st: ended(st, Status.HEALTHY))
            return self.history(step, Outcome(Status.HEALTHY, plan.diagnosis.summary, plan), plan)
        first = plan.actions[0]
        remedy = self.remedies.get(first.kind)
        if remedy is None:
            raise RuntimeError(f"no remedy carries out {first.kind!r}")
        return remedy.begin(step, read, first, plan)

    # ------------------------------------------------------------------ re-add (refresh and recovery)

    def _recover_first(self, target: Target | None, msg: RemediationMessage, pending: PendingReadd) -> Outcome:
        """Another run's principal is dropped: re-add it (as that run) before anything else."""
        owner = msg.model_copy(
            update={"run_id": pending.run_id, "correlation_id": pending.correlation_id, "step": "readd"}
        )
        # Held under this message's own name: the dropping run's own messages must not act beside it.
        step = Step(self, Run(self.services, msg.target, pending.run_id, holder=msg.run_id), target, owner)
        if step.run.acquire(exclusive=True) is None:
            return Outcome(Status.SKIPPED, f"run {pending.run_id} holds this target (its re-add is pending)")
        try:
            outcome = self.finish_readd(step, pending, verb="recovered: re-added first")
        except RunStopped as stopped:
            return Outcome(Status.SKIPPED, str(stopped))
        if msg.step == "start" and target is not None:
            self.history(
                Step(self, Run(self.services, msg.target, msg.run_id), target, msg),
                Outcome(Status.SKIPPED, f"superseded: finished run {pending.run_id} first"),
            )
        return outcome

    def finish_readd(self, step: Step, pending: PendingReadd, verb: str = "re-added") -> Outcome:
        """Re-add the pending snapshot, then verify (or, for a target no longer known, end the run)."""
        try:
            readd(self.services, step.run, pending)
        except ReaddBlocked as blocked:
            abandon = isinstance(blocked, ReaddAbandoned)
            escalate_blocked(self.services, step.key, step.run.holder, str(blocked), abandon=abandon)
            return self.history(step, Outcome(Status.ESCALATED, str(blocked)))

        now = self.services.clock()

        def cleared(state: TargetState) -> None:
            obligations.readded(state, pending.run_id, now)  # discharged once settled, else the sweep's
            obligations.succeeded(state)
            if state.escalated and state.escalation_reason.startswith("re-add pending"):
                state.escalated, state.escalation_reason = False, ""

        detail = f"{verb} {len(pending.snapshot)} role(s) of {pending.principal}"
        if step.target is None:
            step.run.finish(cleared)
            return self.history(step, Outcome(Status.RECOVERED, f"{detail}; the target is no longer configured"))
        self.history(step, Outcome(Status.WAITING, f"{detail}; listed again"))
        return self.to_verify(step, {"re-adding"}, pending.dropped_at, cleared)

    # ------------------------------------------------------------------ what remedies call

    def to_verify(
        self,
        step: Step,
        expect: Collection[str],
        action_at: datetime,
        mutate: Callable[[TargetState], None] | None = None,
    ) -> Outcome:
        """After a remedy: toggle the export when asked, then schedule verification."""
        return verifying.to_verify(self, step, expect, action_at, mutate)

    def history(
        self, step: Step, outcome: Outcome, plan: Plan | None = None, gap: dict[str, object] | None = None
    ) -> Outcome:
        """One history row for the run's outcome, then every observer (telemetry, notifications)."""
        return history.record(self, step, outcome, plan, gap)
