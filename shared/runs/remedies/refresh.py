"""Remedy: refresh a stale principal (planned → snapshotted → dropped → re-adding → verifying).

Rule 1: never drop what cannot be put back. The exact snapshot (role, FQN, notes), with the
cluster and database, is stored in the target's state before the first drop; the re-add works
from that record alone. The wait is a delayed queue message, never a sleep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import ClassVar

from shared.adapters.kusto_errors import AdxError
from shared.domain.diagnosis import healer_is_admin
from shared.domain.plan import Action, Plan
from shared.domain.principals import Assignment
from shared.domain.state import Dropped, PendingReadd, TargetState
from shared.runs import obligations
from shared.runs.base import PLANNED, Outcome, PhaseConflict, Services
from shared.runs.fencing import JournalValue, Run
from shared.runs.outcome import Status, escalate
from shared.runs.phases import DROPPED, READDING, SNAPSHOTTED
from shared.runs.reading import Reading
from shared.runs.remedy import Step, holds

log = logging.getLogger(__name__)


def _listed(item: Dropped) -> Callable[[list[Assignment]], dict[str, JournalValue]]:
    """The journaled result of a role change: does ADX list the assignment afterwards?"""
    return lambda listing: {"listed": holds(listing, item.role, item.fqn)}


class ReaddBlocked(Exception):
    """The re-add cannot be done now; the text is the reason people are told."""


class ReaddAbandoned(ReaddBlocked):
    """The re-add can never be done by the healer (its principal stayed unknown to Entra)."""


class Refresh:
    action: ClassVar[str] = "refresh"
    phases: ClassVar[tuple[str, ...]] = (SNAPSHOTTED, DROPPED, READDING)
    steps: ClassVar[tuple[str, ...]] = ("readd",)

    def begin(self, step: Step, reading: Reading, action: Action, plan: Plan) -> Outcome:
        services, target = step.healer.services, reading.target
        if not healer_is_admin(reading.adx.healer_roles):  # rule 1: never drop what cannot be put back
            raise RuntimeError("refusing to drop: the healer is not Database Admin")
        now = services.clock()
        pending = PendingReadd(
            run_id=step.run.run_id,
            cluster_url=target.cluster_url,
            database=target.database,
            principal=action.snapshot[0].fqn,
            snapshot=tuple(Dropped(role=a.role, fqn=a.fqn, notes=a.notes) for a in action.snapshot),
            dropped_at=now,
            due=now + timedelta(seconds=services.settings.refresh_wait_seconds),
            correlation_id=step.msg.correlation_id,
            trigger=step.msg.trigger,
        )
        step.run.journal("snapshot", "done", snapshot=[d.model_dump() for d in pending.snapshot])
        kind = str(plan.diagnosis.kind)

        def keep(state: TargetState) -> None:
            if state.pending_readd is not None and state.pending_readd.run_id != pending.run_id:
                # Never overwrite another run's record of what it dropped.
                raise PhaseConflict(f"{step.key}: run {state.pending_readd.run_id}'s re-add is pending")
            state.pending_readd, state.last_diagnosis = pending, kind

        step.run.transition({PLANNED}, SNAPSHOTTED, keep)
        return self._drop(step, pending, reading.adx.database_principals, plan)

    def _drop(self, step: Step, pending: PendingReadd, listing: list[Assignment] | None, plan: Plan | None) -> Outcome:
        services = step.healer.services
        kusto = services.kusto(pending.cluster_url)
        for item in pending.snapshot:

            def drop(item: Dropped = item, current: list[Assignment] | None = listing) -> list[Assignment]:
                # set_role reads first when given no listing: a drop that landed is not sent again.
                return kusto.set_role(pending.database, item.role, item.fqn, present=False, current=current)

            listing = step.run.effect(
                f"drop-{item.role}",
                SNAPSHOTTED,
                drop,
                _listed(item),
                obligation="readd",
                **item.model_dump(),
            )
        step.run.transition({SNAPSHOTTED}, DROPPED, lease_until=pending.due)
        self._send_readd(step, pending)
        roles = ", ".join(i.role for i in pending.snapshot)
        detail = f"dropped {roles} of {pending.principal}; re-add due {pending.due:%H:%M:%S}Z"
        return step.healer.history(step, Outcome(Status.WAITING, detail, plan), plan)

    @staticmethod
    def _send_readd(step: Step, pending: PendingReadd) -> None:
        services = step.healer.services
        delay = max(0.0, (pending.due - services.clock()).total_seconds())
        services.queue.send(step.msg.next("readd", action_at=pending.dropped_at).to_json(), delay_s=delay)
        services.checkpoint("enqueue:readd")

    def resume(self, step: Step, state: TargetState) -> Outcome:
        pending = state.pending_readd
        if pending is None:  # cannot happen: the phases of a refresh keep the record until re-added
            raise RuntimeError(f"{step.key}: phase {state.phase} without a pending re-add")
        if state.phase == SNAPSHOTTED:
            return self._drop(step, pending, None, None)
        if state.phase == DROPPED and step.msg.step != "readd" and step.healer.services.clock() < pending.due:
            self._send_readd(step, pending)  # the delivery that died may not have sent it
            return Outcome(Status.WAITING, f"re-add due {pending.due:%H:%M:%S}Z")
        return step.healer.finish_readd(step, pending)


def readd(services: Services, run: Run, pending: PendingReadd) -> None:
    """Re-add the snapshot exactly, from the pending record alone; ReaddBlocked with the reason
    people are told when it cannot be done (the record is kept and the sweep tries again)."""

    def still_pending(state: TargetState) -> None:
        # Any phase: while the record exists, putting the principal back is always right; once it
        # is gone (someone finished the re-add), a late copy of this run has nothing to do.
        if state.pending_readd is None or state.pending_readd.run_id != pending.run_id:
            raise PhaseConflict(f"{run.key}: the re-add of run {pending.run_id} is already done")

    run.transition(None, READDING, still_pending)
    readd_roles(services, run, pending, READDING)


def readd_roles(services: Services, run: Run, pending: PendingReadd, during: str | None) -> None:
    """Put every role of the snapshot back (each a journaled, fenced effect; one already listed
    is not sent again); ReaddBlocked when it cannot be done now."""
    kusto = services.kusto(pending.cluster_url)
    missing = []
    for item in pending.snapshot:

        def add(item: Dropped = item) -> list[Assignment]:
            return kusto.set_role(pending.database, item.role, item.fqn, present=True, notes=item.notes or None)

        try:
            listing = run.effect(
                f"readd-{item.role}",
                during,
                add,
                _listed(item),
                **item.model_dump(),
            )
        except AdxError as exc:
            if exc.unknown_principal:
                waited = (services.clock() - pending.dropped_at).total_seconds()
                if waited >= services.settings.unknown_identity_retry_seconds:
                    raise ReaddAbandoned(
                        f"re-add abandoned: {item.fqn} is unknown to Entra {int(waited)}s after it was dropped "
                        f"({item.role} on {pending.database}, notes {item.notes!r}); re-add it by hand once it exists"
                    ) from exc
                raise ReaddBlocked(f"re-add pending: {item.fqn} is not known to Entra yet ({exc.message})") from exc
            if exc.forbidden:
                raise ReaddBlocked(
                    f"re-add pending: the healer is not Database Admin on {pending.database} "
                    f"({item.role} of {item.fqn} is dropped)"
                ) from exc
            if not exc.transient:
                raise ReaddBlocked(f"re-add pending: {pending.database} refused it: {exc}") from exc
            raise
        if not holds(listing, item.role, item.fqn):
            missing.append(item.role)
    if missing:
        raise ReaddBlocked(f"re-add pending: {', '.join(missing)} of {pending.principal} not listed after the re-add")


def escalate_blocked(services: Services, key: str, holder: str | None, reason: str, *, abandon: bool = False) -> None:
    """Tell people at once; keep the record (the sweep keeps trying, unless `abandon`: then
    nothing retries it any more); let go of `holder`'s lease."""

    runs: list[str] = []

    def apply(state: TargetState) -> None:
        if abandon and state.pending_readd is not None:
            state.pending_readd = state.pending_readd.model_copy(update={"abandoned": reason[:1000]})
        escalate(state, reason)
        obligations.back_off(state, services.clock())  # the sweep retries later, each time later
        if holder is not None and state.lease_owner == holder:
            state.lease_owner, state.lease_until = "", None
        runs[:] = [state.pending_readd.run_id if state.pending_readd else holder or "unknown"]

    services.store.update(key, apply)
    log.error("%s: %s", key, reason)
    from shared.reporting.observers import raise_incident

    raise_incident(services, "readd-failed", key, runs[0], runs[0], reason)  # once per dropped snapshot
