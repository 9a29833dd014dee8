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
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from shared.alerts import ALERT_WITHOUT_CODE
from shared.diagnosis import Evidence
from shared.messages import RemediationMessage, new_run
from shared.plan import Plan
from shared.runs import obligations, phases, reading
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
from shared.runs.fencing import JournalValue, Run
from shared.runs.outcome import Status, escalate
from shared.runs.remedies.add_role import AddRole
from shared.runs.remedies.recreate import RecreateDestination
from shared.runs.remedies.refresh import ReaddAbandoned, ReaddBlocked, Refresh, escalate_blocked, readd
from shared.runs.remedy import FollowUp, Remedy, Step
from shared.runs.sweep import recover, sweep
from shared.state import PendingEnable, PendingReadd, RunData, TargetState
from shared.targets import Target
from shared.verification import verify

log = logging.getLogger(__name__)

# The remedies, mildest first, and what may follow a healed verification. A new remedy or
# follow-up is a module with its phases, registered here (and its queue steps in messages.Step).
REMEDIES: tuple[Remedy, ...] = (AddRole(), RecreateDestination(), Refresh())
FOLLOW_UPS: tuple[FollowUp, ...] = (Backfill(),)


class Healer:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.remedies: dict[str, Remedy] = {r.action: r for r in REMEDIES}
        self.follow_ups: tuple[FollowUp, ...] = FOLLOW_UPS

    # ------------------------------------------------------------------ reading and planning

    def read(self, target: Target, extra: list[Evidence] | None = None) -> reading.Reading:
        return reading.read(self.s, target, extra)

    def plan(
        self, target: Target, correlation_id: str = "dry-run", extra: list[Evidence] | None = None
    ) -> tuple[reading.Reading, Plan]:
        return reading.plan(self.s, target, correlation_id, extra)

    def known(self, key: str, state: TargetState | None = None) -> Target | None:
        """The target, at the destination the healer re-created for it (if it did)."""
        target = self.s.targets.get(key)
        state = state or self.s.store.load(key)
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
        state = self.s.store.load(msg.target)
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
        step = Step(self, Run(self.s, msg.target, msg.run_id), target, msg)
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
            self.s.queue.send(msg.to_json(), delay_s=short.retry_s)
            self.s.checkpoint("enqueue:lease-too-short")
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
            Step(self, Run(self.s, msg.target, msg.run_id), target, msg), Outcome(Status.SKIPPED, detail)
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
        if state.leased(self.s.clock()):
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
        if state.phase in Refresh.phases and state.pending_readd is not None and self.s.settings.observe_only:
            # Observe mode: what was dropped goes back now (a discharge), nothing more is dropped.
            return self.finish_readd(step, state.pending_readd)
        if step.target is None and state.pending_readd is None:
            # Removed from configuration mid-run: discharge what the run owes, then it ends here.
            return self._discharge_and_end(step, state, f"{step.key} is no longer configured")
        if self.s.settings.observe_only and state.phase not in (VERIFYING, *self._follow_up_phases()):
            return self._discharge_and_end(step, state, "observe mode")
        for remedy in self.remedies.values():
            if state.phase in remedy.phases:
                return remedy.resume(step, state)
        for follow_up in self.follow_ups:
            if state.phase in follow_up.phases:
                return follow_up.resume(step, state)
        if state.phase == TOGGLING:
            return self.to_verify(step, {TOGGLING}, step.msg.action_at or self.s.clock())
        if state.phase == VERIFYING:
            if step.msg.step == "verify":
                return self._verify(step)
            return self._send_verify(step, step.msg.action_at or state.phase_at or self.s.clock())
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
            iotc = self.s.iotc
            step.run.effect(
                "enable-export",
                None,
                lambda: iotc.set_enabled(enable.app, enable.export_id, True),
                app=enable.app,
                export=enable.export_id,
            )
            done.append(f"re-enabled export {enable.export_id}")
        now = self.s.clock()

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
        settings, now, msg = self.s.settings, self.s.clock(), step.msg
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
            self.s.store.update(target.key, lambda st: escalate(st, reason))
            return self.history(step, Outcome(Status.ESCALATED, reason))
        if step.run.acquire() is None:
            return self.history(step, Outcome(Status.SKIPPED, "another remediation holds this target"))
        if state.run_id != msg.run_id and any(
            r["Status"] == "intent" for r in self.s.store.read_journal(target.key, msg.run_id)
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
            step.run.finish(lambda st: _ended(st, Status.PLANNED))
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
                step.run.finish(lambda st: _ended(st, Status.HEALTHY, cooldown_until=until))
            else:
                step.run.finish(lambda st: _ended(st, Status.HEALTHY))
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
        step = Step(self, Run(self.s, msg.target, pending.run_id, holder=msg.run_id), target, owner)
        if step.run.acquire(exclusive=True) is None:
            return Outcome(Status.SKIPPED, f"run {pending.run_id} holds this target (its re-add is pending)")
        try:
            outcome = self.finish_readd(step, pending, verb="recovered: re-added first")
        except RunStopped as stopped:
            return Outcome(Status.SKIPPED, str(stopped))
        if msg.step == "start" and target is not None:
            self.history(
                Step(self, Run(self.s, msg.target, msg.run_id), target, msg),
                Outcome(Status.SKIPPED, f"superseded: finished run {pending.run_id} first"),
            )
        return outcome

    def finish_readd(self, step: Step, pending: PendingReadd, verb: str = "re-added") -> Outcome:
        """Re-add the pending snapshot, then verify (or, for a target no longer known, end the run)."""
        try:
            readd(self.s, step.run, pending)
        except ReaddBlocked as blocked:
            abandon = isinstance(blocked, ReaddAbandoned)
            escalate_blocked(self.s, step.key, step.run.holder, str(blocked), abandon=abandon)
            return self.history(step, Outcome(Status.ESCALATED, str(blocked)))

        now = self.s.clock()

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

    # ------------------------------------------------------------------ export toggle and verify

    def to_verify(
        self,
        step: Step,
        expect: Collection[str],
        action_at: datetime,
        mutate: Callable[[TargetState], None] | None = None,
    ) -> Outcome:
        """After a remedy: toggle the export when asked, then schedule verification."""
        if self.s.settings.toggle_export and not self.s.settings.observe_only:
            target = step.target
            assert target is not None
            since = self.s.clock()

            # The toggle is two effects that must stay paired (a twin delivery of this run that
            # disabled after this one enabled would leave the export off): each toggle claims the
            # phase, and only the latest claim may act or end it.
            claim = uuid.uuid4().hex

            def disabling(state: TargetState) -> None:
                if mutate is not None:
                    mutate(state)
                if state.pending_enable is None:  # the obligation is recorded before the disable
                    state.pending_enable = PendingEnable(
                        run_id=step.run.run_id, app=target.app, export_id=target.export_id, since=since
                    )
                state.run_data = state.run_data.model_copy(update={"claim": claim})

            step.run.transition(expect, TOGGLING, disabling)
            step.run.claim = claim
            iotc = self.s.iotc
            step.run.effect(
                "disable-export",
                TOGGLING,
                lambda: iotc.set_enabled(target.app, target.export_id, False),
                obligation="enable",
            )
            step.run.effect("enable-export", TOGGLING, lambda: iotc.set_enabled(target.app, target.export_id, True))
            enabled_at = self.s.clock()
            expect, mutate = {TOGGLING}, lambda st: obligations.enabled(st, enabled_at)
        last = mutate

        def verifying(state: TargetState) -> None:
            if last is not None:
                last(state)
            state.run_data = state.run_data.model_copy(update={"claim": ""})
            # Whoever stood in for the run (the sweep, another run's message) keeps the lease
            # through the toggle and hands it back here: the run's own verification comes next.
            state.lease_owner = step.run.run_id

        step.run.transition(expect, VERIFYING, verifying, hold_s=self.s.settings.verify_poll_seconds)
        step.run.claim = None
        return self._send_verify(step, action_at)

    def _send_verify(self, step: Step, action_at: datetime) -> Outcome:
        settings = self.s.settings
        until = self.s.clock() + timedelta(seconds=settings.verify_deadline_seconds)
        self.s.queue.send(
            step.msg.next("verify", action_at=action_at, verify_until=until).to_json(),
            delay_s=settings.verify_poll_seconds,
        )
        self.s.checkpoint("enqueue:verify")
        return Outcome(Status.WAITING, f"verification scheduled until {until:%H:%M:%S}Z")

    def _verify(self, step: Step) -> Outcome:
        settings, now, msg, target = self.s.settings, self.s.clock(), step.msg, step.target
        assert target is not None
        journal = self.s.store.read_journal(target.key, msg.run_id)
        changes = [
            r
            for r in journal
            if r["Status"] == "done" and (r["Step"] in ("add", "repoint-export") or r["Step"].startswith("readd-"))
        ]
        # A fallback's re-add supersedes what an earlier remedy of the run saw.
        latest = [r for r in changes if r["Step"].startswith("readd-")] or changes
        listed = bool(latest) and all(r["Data"].get("listed") for r in latest)
        action_at = msg.action_at or now
        result = verify(target, self.s.kusto(target.cluster_url), self.s.iotc, action_at, listed)
        step.run.journal("verify", "done", healed=result.healed, detail=result.detail)
        observe = settings.observe_only  # observe mode starts no change: no next remedy, no retry
        if not result.healed and result.still_denied and not observe:
            following = self._next_remedy(journal)
            taken = self._fall_back(step, following, result.detail) if following is not None else None
            if taken is not None:
                return taken
        if result.healed:
            state = self.s.store.load(target.key)
            for follow_up in self.follow_ups:
                taken = follow_up.after_healed(step, state)
                if taken is not None:
                    return taken
            cooldown = now + timedelta(seconds=settings.cooldown_seconds)
            step.run.finish(lambda st: _ended(st, Status.HEALED, cooldown_until=cooldown, healed_at=now))
            return self.history(step, Outcome(Status.HEALED, result.detail))
        if msg.verify_until and now < msg.verify_until:
            step.run.renew(extra_s=settings.verify_poll_seconds, during=VERIFYING)
            self.s.queue.send(msg.to_json(), delay_s=settings.verify_poll_seconds)
            self.s.checkpoint("enqueue:verify-again")
            return Outcome(Status.WAITING, f"not yet: {result.detail}")
        window = now - timedelta(seconds=settings.attempt_window_seconds)

        def failed(state: TargetState) -> None:
            state.attempts = [a for a in state.attempts if a > window] + [now]
            state.last_outcome = Status.NOT_HEALED.value
            if len(state.attempts) >= settings.max_attempts:
                escalate(state, f"not healed after {len(state.attempts)} attempts: {result.detail}")

        state = step.run.finish(failed)
        if state.escalated:
            return self.history(step, Outcome(Status.ESCALATED, state.escalation_reason))
        if observe:
            return self.history(step, Outcome(Status.NOT_HEALED, f"{result.detail}; observe mode: no retry"))
        retry = new_run(target.key, "retry", msg.correlation_id, f"retry after: {result.detail}"[:500])
        self.s.queue.send(retry.to_json(), delay_s=settings.verify_poll_seconds)
        return self.history(step, Outcome(Status.NOT_HEALED, f"{result.detail}; retry scheduled"))

    # ------------------------------------------------------------------ the next remedy

    def _next_remedy(self, journal: list[dict[str, Any]]) -> str | None:
        """The plan's next remedy after those this run already began (None if none is left)."""
        plans = [r for r in journal if r["Step"] == "plan"]
        if not plans:
            return None
        data = plans[0]["Data"]
        actions = data.get("plan", {}).get("actions", []) if isinstance(data, dict) else []
        remedies = [str(a["action"]) for a in actions if str(a.get("action")) in self.remedies]
        tried = remedies[:1] + [
            str(r["Data"].get("action")) for r in journal if r["Step"] == "next-remedy" and isinstance(r["Data"], dict)
        ]
        return next((a for a in remedies if a not in tried), None)

    def _fall_back(self, step: Step, action_kind: str, seen: str) -> Outcome | None:
        """The remedy done left ingestion denied: read afresh and, if the principal is still listed
        yet denied, carry out the plan's next remedy in this same run."""
        target = step.target
        assert target is not None
        fresh, plan = self.plan(target, step.msg.correlation_id)
        action = next((a for a in plan.actions if a.kind == action_kind), None)
        step.run.journal(
            "next-remedy", "done", action=action_kind, seen=seen[:500], diagnosis=str(fresh.diagnosis.kind)
        )
        if action is None:
            return None  # not applicable now (the diagnosis changed): verification goes on
        step.run.transition({VERIFYING}, PLANNED, _fresh_run_data)
        return self.remedies[action_kind].begin(step, fresh, action, plan)

    # ------------------------------------------------------------------ history

    def history(
        self, step: Step, outcome: Outcome, plan: Plan | None = None, gap: dict[str, object] | None = None
    ) -> Outcome:
        msg = step.msg
        record: dict[str, JournalValue] = {
            "Target": str(step.target) if step.target else step.key,
            "Trigger": msg.trigger,
            "CorrelationId": msg.correlation_id,
            "Mode": self.s.settings.mode,
            "Outcome": outcome.status.value,
            "Detail": outcome.detail[:8000],
        }
        if plan is not None:
            record["Diagnosis"] = str(plan.diagnosis.kind)
            record["Summary"] = plan.diagnosis.summary[:2000]
            record["Actions"] = [a.to_dict() for a in plan.actions]
            record["Notes"] = list(plan.diagnosis.notes)
        if gap is not None:
            record["Gap"] = gap
        if plan is not None and plan.diagnosis.root_cause is not None:
            record["RootCause"] = plan.diagnosis.root_cause
        self.s.store.append_history(step.key, msg.run_id, record, self.s.clock())
        log.info("remediation %s %s: %s (%s)", step.key, msg.run_id, outcome.status, outcome.detail)
        for observe in self.s.observers:
            try:
                observe(step.key, msg, outcome, plan, gap)
            except Exception:  # telemetry or a notification must never break a run
                log.exception("observer failed for %s %s", step.key, msg.run_id)
        return outcome


def _ended(
    state: TargetState, outcome: Status, *, cooldown_until: datetime | None = None, healed_at: datetime | None = None
) -> None:
    state.last_outcome = outcome.value
    if cooldown_until is not None:
        state.cooldown_until = cooldown_until
    if healed_at is not None:
        state.healed_at = healed_at


def _fresh_run_data(state: TargetState) -> None:
    state.run_data = RunData()
