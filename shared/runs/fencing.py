"""The single path by which a run changes anything: fenced state transitions and journaled effects.

A run acts only while it holds the target's lease. Every state change is an ETag-guarded update
that first checks the lease is still this run's (fencing): a holder whose lease was taken by
another run is refused, whatever it believes. Every side effect renews the lease first (so one
bounded step always fits inside it: settings validation keeps the lease longer than the worst-case
step by a margin, and the run acts only if a step plus the clock skew both ways is left once the
renewal itself has returned) and is journaled intent → effect → result. The renewal before an act
that creates an obligation stamps the obligation with how late the act may land. A transition
refuses a move the run graph (shared/runs/phases.py) does not hold, and never overwrites another
run's phase unless it is at rest. In observe mode only acts that discharge an obligation are sent.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from shared.domain.state import TargetState
from shared.runs import obligations, phases
from shared.runs.base import OTHER_RUN, LeaseLost, LeaseTooShort, PhaseConflict, Services

log = logging.getLogger(__name__)
T = TypeVar("T")
JournalValue = str | int | float | bool | None | list[object] | dict[str, object]


class Run:
    """One run's hands on one target.

    `run_id` names the run whose phases are changed; `holder` is who holds the lease for it
    (the run itself, or the recovery sweep acting on its behalf).
    """

    def __init__(self, services: Services, key: str, run_id: str, holder: str | None = None) -> None:
        self.services = services
        self.key = key
        self.run_id = run_id
        self.holder = holder or run_id
        self.claim: str | None = None  # set while this hand holds a claimed phase (the export toggle)
        self.last_write: str | None = None  # the state's write id after this hand's last renewal or move

    # ---------------------------------------------------------------- the lease

    def _hold(self, extra_s: float) -> timedelta:
        return timedelta(seconds=self.services.settings.lease_seconds + extra_s)

    def acquire(self, extra_s: float = 0, *, exclusive: bool = False) -> TargetState | None:
        """Take (or extend) the lease; None when another holder has it. `exclusive` also refuses a
        live lease of this same holder (the sweep must not act beside the run it stands in for)."""
        now = self.services.clock()
        if exclusive:
            current = self.services.store.load(self.key)
            if current.leased(now):
                return None
        return self.services.store.acquire(self.key, self.holder, now, self._hold(extra_s))

    def _check(self, state: TargetState) -> None:
        # The owner is overwritten by whoever takes the lease, so "still mine" means nobody else
        # acted since: a lapsed lease nobody took may be renewed; a taken one may not.
        if state.lease_owner != self.holder:
            taken = f"held by {state.lease_owner}" if state.lease_owner else "released"
            raise LeaseLost(f"run {self.run_id} no longer holds {self.key} (lease {taken})")
        # A twin delivery of the same run holds the same lease: a claim tells them apart.
        if self.claim is not None and state.run_data.claim != self.claim:
            raise PhaseConflict(
                f"run {self.run_id} on {self.key}: phase {state.phase!r} was claimed by a twin delivery"
            )

    def renew(self, extra_s: float = 0, during: str | None = None, obligation: str | None = None) -> TargetState:
        """Extend the lease before acting; LeaseLost if another holder took it meanwhile, and
        PhaseConflict if the run is no longer in phase `during` (a woken straggler whose run has
        moved on, perhaps finished by someone standing in for it, must not act). With
        `obligation`, the act about to be issued creates that obligation: its record learns, in
        this same write, until when the act may land."""
        now = self.services.clock()
        until = now + self._hold(extra_s)

        def apply(state: TargetState) -> None:
            self._check(state)
            if during is not None and (state.run_id != self.run_id or state.phase != during):
                raise PhaseConflict(
                    f"run {self.run_id} on {self.key}: phase is {state.phase!r} of run {state.run_id!r}, not {during!r}"
                )
            state.lease_until = until
            if obligation is not None:
                obligations.stamp(state, obligation, obligations.land_by(self.services.settings, now))

        state = self.services.store.update(self.key, apply, name=f"{self.holder}:renew")
        self.last_write = state.write_id
        return state

    def moved_on(self) -> bool:
        """Someone wrote the target's state since this hand last did: a twin delivery of this run
        (it holds the same lease), the sweep standing in for it, or another run."""
        return self.last_write is not None and self.services.store.load(self.key).write_id != self.last_write

    # ---------------------------------------------------------------- phases

    def transition(
        self,
        expect: Collection[str] | None,
        to: str,
        mutate: Callable[[TargetState], None] | None = None,
        *,
        hold_s: float | None = None,
        lease_until: datetime | None = None,
    ) -> TargetState:
        """Move this run's phase from one of `expect` (None: any) to `to`, fenced by the lease."""
        now = self.services.clock()

        def apply(state: TargetState) -> None:
            self._check(state)
            if expect is not None:
                phase = state.phase if state.run_id == self.run_id else OTHER_RUN
                if phase not in expect:
                    raise PhaseConflict(
                        f"run {self.run_id} on {self.key}: phase is {state.phase!r} of run {state.run_id!r}, "
                        f"expected one of {sorted(expect)}"
                    )
            # Putting back what the run dropped is a discharge: allowed from any phase while its record exists.
            owed = (
                to == phases.READDING and state.pending_readd is not None and state.pending_readd.run_id == self.run_id
            )
            if state.run_id == self.run_id and not owed and not phases.allowed(state.phase, to):
                raise PhaseConflict(f"run {self.run_id} on {self.key}: no move from {state.phase!r} to {to!r}")
            if (
                state.run_id != self.run_id
                and not owed
                and (to not in phases.STARTS or state.phase not in phases.REPLACEABLE)
            ):
                # No silent takeover: another run's phase is never overwritten mid-way.
                raise PhaseConflict(
                    f"run {self.run_id} on {self.key}: run {state.run_id} is {state.phase!r}; not taken over"
                )
            if mutate is not None:
                mutate(state)
            state.run_id, state.phase, state.phase_at = self.run_id, to, now
            state.lease_until = lease_until or now + self._hold(hold_s or 0)

        state = self.services.store.update(self.key, apply, name=f"{self.holder}:{to}")
        self.last_write = state.write_id
        self.services.checkpoint(f"phase:{to}")
        return state

    def finish(self, mutate: Callable[[TargetState], None] | None = None) -> TargetState:
        """End the run: phase done, the lease released. Refused if another holder took the lease."""
        now = self.services.clock()

        def apply(state: TargetState) -> None:
            if state.lease_owner not in (self.holder, ""):
                self._check(state)
            if mutate is not None:
                mutate(state)
            state.last_run_id = self.run_id
            if state.run_id in (self.run_id, ""):
                state.run_id, state.phase, state.phase_at = self.run_id, "done", now
            state.lease_owner, state.lease_until = "", None

        return self.services.store.update(self.key, apply, name=f"{self.holder}:finish")

    # ---------------------------------------------------------------- journal and effects

    def journal(self, step: str, status: str, **data: JournalValue) -> None:
        self.services.store.write_journal(self.key, self.run_id, step, status, dict(data), self.services.clock())
        self.services.checkpoint(f"journal:{step}:{status}")

    def effect(
        self,
        step: str,
        during: str | None,
        act: Callable[[], T],
        result: Callable[[T], Mapping[str, JournalValue]] = lambda _: {},
        *,
        obligation: str | None = None,
        **intent: JournalValue,
    ) -> T:
        """Journal the intent, renew the lease (still in phase `during`), act, journal the result.
        Nothing acts without the lease, and the renewal comes right before the act so the whole
        bounded act fits inside it. `obligation`: the act creates that obligation (its record is
        stamped with how late the act may land)."""
        self.journal(step, "intent", **intent)
        state = self.renew(during=during, obligation=obligation)
        # The renewal's own storage round trip (retries included) ran on the lease it was setting;
        # and the clock that judges the lease elsewhere may be ahead of ours by the skew, and ours
        # behind: act only if a whole worst-case step still fits with both allowed for.
        settings = self.services.settings
        needed = settings.worst_case_step_seconds + 2 * settings.clock_skew_seconds
        left = (state.lease_until - self.services.clock()).total_seconds() if state.lease_until else 0.0
        if left < needed:
            raise LeaseTooShort(
                f"run {self.run_id} on {self.key}: {left:.0f} s of lease left after renewing, less than the "
                f"{needed:.0f} s a worst-case step needs (with the clock skew allowed); not acting",
                retry_s=settings.verify_poll_seconds,
            )
        if settings.observe_only and not discharges(step):
            # Observe mode may have been switched on since this delivery began: from then on a
            # run only discharges what it owes.
            raise PhaseConflict(f"run {self.run_id} on {self.key}: observe mode; {step} is a change, not sent")
        value = act()
        self.services.checkpoint(f"effect:{step}")
        self.journal(step, "done", **dict(result(value)))
        return value


# Acts that discharge an obligation (allowed in observe mode): putting a dropped role back,
# enabling an export, deleting a copy or finishing a re-point.
DISCHARGES = frozenset({"enable-export", "delete-destination", "delete-copy", "unpoint-old", "point-back"})


def discharges(step: str) -> bool:
    return step in DISCHARGES or step.startswith("readd-")


def stand_in(services: Services, key: str, run_id: str) -> Run:
    """The sweep's hands on a run, never under the run's own name: a late message of the run must
    not act beside it (the lease goes back to the run when verification is scheduled)."""
    return Run(services, key, run_id, f"sweep-{uuid.uuid4().hex[:12]}")
