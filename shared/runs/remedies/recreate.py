"""Remedy: re-create the export's destination, Microsoft's documented repair
(planned → destination-prepared → destination-created → export-repointed → verifying).

Make-before-break: the copy exists and the export sends to it before the old destination is
deleted, so the export is never without a destination. What the copy needs (the destination's
body, the export's reference with its transform, the new id) is kept in the run's state before
the first change; each step is an idempotent effect (PUT, PATCH, DELETE that tolerates 404), so
a redelivered message resumes from the phase and repeats at most the step that died. The phase
that re-points the export also records the new destination id in the target's state: from then
on the target (same key) is judged by the new destination.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from shared.adapters.iotcentral_model import IotcError
from shared.domain.destination_copy import DestinationCopy, NotRecreatable, repointed
from shared.domain.plan import Action, Plan
from shared.domain.state import PendingCopy, RunData, TargetState
from shared.runs import obligations
from shared.runs.base import PLANNED, Outcome, PhaseConflict, Services
from shared.runs.fencing import Run
from shared.runs.outcome import Status, escalate
from shared.runs.phases import CREATED, PREPARED, REPOINTED
from shared.runs.reading import Reading
from shared.runs.remedies import recreate_calls as rd
from shared.runs.remedy import Step, holds


class RecreateDestination:
    action: ClassVar[str] = "recreate-destination"
    phases: ClassVar[tuple[str, ...]] = (PREPARED, CREATED, REPOINTED)
    steps: ClassVar[tuple[str, ...]] = ()

    def begin(self, step: Step, reading: Reading, action: Action, plan: Plan) -> Outcome:
        target = reading.target
        iotc = step.healer.services.iotc
        try:
            copy = rd.prepare(iotc, target.app, target.export_id, target.destination_id, step.run.run_id)
        except NotRecreatable as exc:
            reason = f"re-creating the destination is not possible: {exc}"
            step.run.finish(lambda st: escalate(st, reason, str(plan.diagnosis.kind)))
            return step.healer.history(step, Outcome(Status.ESCALATED, reason, plan), plan)
        # The principal keeps its listing: what verification counts as "listed" is what was read.
        fqn = plan.diagnosis.principal.fqn()
        listed = any(holds(reading.adx.database_principals, role, fqn) for role in ("admins", "ingestors"))
        step.run.journal("destination-copy", "done", copy=copy.to_dict(), listed=listed)
        data = RunData(destination_copy=copy.to_dict(), listed=listed)

        since = step.healer.services.clock()
        owed = PendingCopy(
            run_id=step.run.run_id,
            app=copy.app,
            export_id=copy.export_id,
            old_id=copy.old_id,
            new_id=copy.new_id,
            since=since,
        )

        def prepared(state: TargetState) -> None:
            state.run_data = data
            state.pending_copy = owed  # the obligation is recorded before the copy is created

        step.run.transition({PLANNED}, PREPARED, prepared)
        outcome = self._carry_on(step, PREPARED, data)
        step.healer.history(
            step,
            Outcome(Status.WAITING, f"re-created destination {copy.old_id} as {copy.new_id}; verifying", plan),
            plan,
        )
        return outcome

    def resume(self, step: Step, state: TargetState) -> Outcome:
        return self._carry_on(step, state.phase, state.run_data)

    @staticmethod
    def discharge(step: Step, state: TargetState) -> str:
        return discharge(step, state)

    def _carry_on(self, step: Step, phase: str, data: RunData) -> Outcome:
        services = step.healer.services
        iotc = services.iotc
        copy = DestinationCopy.from_dict(data.destination_copy or {})
        listed = data.listed
        if phase in (CREATED, REPOINTED) and not iotc.has_destination(copy.app, copy.new_id):
            # While this run was away (its lease lapsed, observe mode came and went), a discharge
            # deleted the copy. Make-before-break holds on resuming too: the copy is put back
            # (the same idempotent PUT) before the export points at it or the old one goes.
            step.run.effect(
                "create-destination",
                phase,
                lambda: rd.create(iotc, copy),
                lambda body: {"destination_status": str(body.get("status", "")), "again": True},
                obligation="copy",
                destination=copy.new_id,
            )
        if phase == PREPARED:
            try:
                step.run.effect(
                    "create-destination",
                    PREPARED,
                    lambda: rd.create(iotc, copy),
                    lambda body: {"destination_status": str(body.get("status", ""))},
                    obligation="copy",
                    destination=copy.new_id,
                )
            except IotcError as exc:
                if not refused(exc):
                    raise
                # Nothing changed yet (e.g. the app already has 10 destinations): tell people.
                return _give_up(step, f"IoT Central refused the copy of destination {copy.old_id}: {exc}")
            step.run.transition({PREPARED}, CREATED)
            phase = CREATED
        if phase == CREATED:
            try:
                step.run.effect(
                    "repoint-export",
                    CREATED,
                    lambda: rd.point(iotc, copy),
                    lambda changed: {"changed": changed, "listed": listed},
                    obligation="copy",
                    export=copy.export_id,
                    old=copy.old_id,
                    new=copy.new_id,
                )
            except NotRecreatable as exc:
                return _edited_meanwhile(step, copy, str(exc))
            step.run.transition({CREATED}, REPOINTED, _at(copy.new_id))
            phase = REPOINTED
        step.run.effect(
            "delete-destination",
            REPOINTED,
            lambda: rd.delete_old(iotc, copy),
            lambda deleted: {"deleted": deleted},
            destination=copy.old_id,
        )
        state = services.store.load(step.key)
        if step.target is not None:
            step.target = step.target.at_destination(copy.new_id)
        done_at = services.clock()
        return step.healer.to_verify(
            step, {REPOINTED}, state.phase_at or done_at, lambda st: obligations.copied(st, done_at)
        )


def discharge(step: Step, state: TargetState) -> str:
    """Discharge a re-creation's obligation (observe mode, a target that left the configuration,
    an escalated run) from its record alone, then mark it observed."""
    owed = state.pending_copy
    if owed is None:  # a run of an earlier version: its record is the run's data
        copy = DestinationCopy.from_dict(state.run_data.destination_copy or {})
        owed = PendingCopy(
            run_id=state.run_id,
            app=copy.app,
            export_id=copy.export_id,
            old_id=copy.old_id,
            new_id=copy.new_id,
            since=step.healer.services.clock(),
        )
    return settle_copy(step.healer.services, step.run, step.key, owed)


def settle_copy(services: Services, run: Run, key: str, owed: PendingCopy) -> str:
    """If the export sends to the copy, finish the re-point (the old reference goes first, then
    the old destination); otherwise delete the copy. Each a journaled, fenced effect; then the
    record is discharged once no create or re-point of its run can land any more."""
    iotc = services.iotc
    export = iotc.export(owed.app, owed.export_id)
    refs = [r for r in export.get("destinations") or [] if isinstance(r, dict)]
    ids = [r.get("id") for r in refs]
    moved: str | None = None
    if owed.new_id in ids and not iotc.has_destination(owed.app, owed.new_id):
        # A late re-point landed after this record's earlier settlement deleted the copy: the
        # export sends to nothing. It goes back to the old destination, which is never deleted
        # while the copy is missing.
        back = repointed(refs, owed.new_id, owed.old_id)
        run.effect(
            "point-back",
            None,
            lambda: iotc.set_destinations(owed.app, owed.export_id, back),
            export=owed.export_id,
            old=owed.old_id,
        )
        did = f"pointed the export back to {owed.old_id} (a late re-point sent it to the deleted copy {owed.new_id})"
    elif owed.new_id in ids:
        if owed.old_id in ids:  # never left sending to both: the old reference goes first
            kept = [r for r in refs if r.get("id") != owed.old_id]
            run.effect("unpoint-old", None, lambda: iotc.set_destinations(owed.app, owed.export_id, kept))
        run.effect(
            "delete-destination",
            None,
            lambda: iotc.delete_destination(owed.app, owed.old_id),
            destination=owed.old_id,
        )
        did, moved = f"finished the re-point to {owed.new_id}", owed.new_id
    else:
        run.effect("delete-copy", None, lambda: iotc.delete_destination(owed.app, owed.new_id), destination=owed.new_id)
        did = f"deleted the copy {owed.new_id} (the export still sends to {owed.old_id})"
    now = services.clock()

    def observed(st: TargetState) -> None:
        if moved is not None:
            st.destination_id = moved
        if st.pending_copy is not None and st.pending_copy.new_id == owed.new_id:
            obligations.copied(st, now)

    services.store.update(key, observed, name=f"{run.holder}:copy-settled")
    return did


def _edited_meanwhile(step: Step, copy: DestinationCopy, why: str) -> Outcome:
    """The export was edited between the copy's planning and its re-point (IoT Central does not
    say by whom). The edit wins: the export is never written again by this run. The copy is
    settled from its record: deleted while the export does not send to it (its obligation then
    discharged like any other, by the sweep if a late create may still land); if the editor
    pointed the export at the copy themselves, the copy is in use and everything is left as it
    is. The run is escalated once, with what to check."""
    services = step.healer.services
    if step.run.moved_on():
        # The export changed under this hand's re-point, and so did the run's state: a twin
        # delivery of this run (at-least-once delivery) carried the re-creation on meanwhile, and
        # the export's edit is likely its re-point. It, or the run's recovery owner, finishes the
        # re-creation; this hand stands back without judging the edit.
        raise PhaseConflict(f"run {step.run.run_id} on {step.key}: re-pointed meanwhile by another hand of the run")
    step.run.journal("repoint-export", "refused", reason=why[:1000])
    refs = services.iotc.export(copy.app, copy.export_id).get("destinations") or []
    in_use = copy.new_id in [r.get("id") for r in refs if isinstance(r, dict)]
    if in_use:
        did = f"the export now sends to the copy {copy.new_id}: it and {copy.old_id} are left as they are"

        def forget(st: TargetState) -> None:
            if st.pending_copy is not None and st.pending_copy.new_id == copy.new_id:
                st.pending_copy = None  # in use by the export: deleting it would break the edit

        services.store.update(step.key, forget, name=f"{step.run.holder}:copy-in-use")
    else:
        did = discharge(step, services.store.load(step.key))
    reason = (
        f"export {copy.export_id} was edited while its destination {copy.old_id} was being re-created; "
        f"the edit was kept, not overwritten ({why}). {did[:1].upper()}{did[1:]}. Who edited it is not "
        f"known: check the export's destinations in app {copy.app} are as intended, then let the healer "
        "diagnose it again (or re-create the destination by hand) if it still fails."
    )
    return _give_up(step, reason)


def refused(exc: IotcError) -> bool:
    """A 4xx that a retry will not change (throttling and timeouts are retried by the pipeline)."""
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429)


def _give_up(step: Step, reason: str) -> Outcome:
    step.run.finish(lambda st: escalate(st, reason))
    return step.healer.history(step, Outcome(Status.ESCALATED, reason))


def _at(destination_id: str) -> Callable[[TargetState], None]:
    """The target is judged by the re-created destination from now on."""

    def moved(state: TargetState) -> None:
        state.destination_id = destination_id

    return moved
