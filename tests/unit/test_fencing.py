"""Fencing (shared/runs/fencing.py) as a unit: a run acts only while it holds the target's lease,
every state change is an ETag-guarded write that checks the lease first, every effect is renewed
right before it and journaled intent → result, and a write whose answer was lost is not applied twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from shared.domain.state import Dropped, PendingReadd, TargetState
from shared.runs.base import OTHER_RUN, LeaseLost, LeaseTooShort, PhaseConflict
from shared.runs.fencing import DISCHARGES, Run, discharges
from shared.runs.phases import DONE, DROPPED, PLANNED, READDING, SNAPSHOTTED, VERIFYING
from tests.support.model_fakes import Harness
from tests.support.model_target import FQN, TARGET
from tests.support.run_units import unit_harness

A = "a" * 32
B = "b" * 32
KEY = TARGET.key


def started(h: Harness, run_id: str = A, holder: str | None = None) -> Run:
    run = Run(h.services, KEY, run_id, holder)
    assert run.acquire() is not None
    run.transition({OTHER_RUN, ""}, PLANNED)
    return run


def pending(run_id: str, h: Harness) -> PendingReadd:
    now = h.clock()
    return PendingReadd(
        run_id=run_id,
        cluster_url=TARGET.cluster_url,
        database=TARGET.database,
        principal=FQN,
        snapshot=(Dropped(role="ingestors", fqn=FQN),),
        dropped_at=now,
        due=now + timedelta(seconds=60),
        correlation_id=run_id,
    )


def act_counter() -> tuple[list[str], Callable[[], str]]:
    acts: list[str] = []

    def act() -> str:
        acts.append("acted")
        return "result"

    return acts, act


def test_a_live_lease_keeps_every_other_holder_out_and_a_lapsed_one_can_be_taken() -> None:
    h = unit_harness()
    a = started(h)
    assert Run(h.services, KEY, B).acquire() is None
    # The sweep standing in for run A must not act beside it while A's own lease is live.
    assert Run(h.services, KEY, A).acquire(exclusive=True) is None
    assert a.acquire() is not None  # its own holder may extend it
    h.clock.advance(h.services.settings.lease_seconds + 1)
    taken = Run(h.services, KEY, B).acquire()
    assert taken is not None and taken.lease_owner == B


def test_a_holder_whose_lease_was_taken_is_refused_before_it_acts() -> None:
    h = unit_harness()
    a = started(h)
    h.clock.advance(h.services.settings.lease_seconds + 1)  # A stalled past its lease
    assert Run(h.services, KEY, B).acquire() is not None
    acts, act = act_counter()
    with pytest.raises(LeaseLost, match=f"held by {B}"):
        a.effect("drop-ingestors", None, act)
    assert acts == []
    steps = [(r["Step"], r["Status"]) for r in h.store.read_journal(KEY, A)]
    assert steps == [("drop-ingestors", "intent")]  # the intent, never a result
    with pytest.raises(LeaseLost):
        a.transition({PLANNED}, SNAPSHOTTED)
    with pytest.raises(LeaseLost):
        a.finish()
    assert h.store.load(KEY).lease_owner == B and h.store.load(KEY).phase == PLANNED


def test_a_lapsed_lease_nobody_took_may_still_be_renewed() -> None:
    h = unit_harness()
    a = started(h)
    h.clock.advance(h.services.settings.lease_seconds + 1)
    acts, act = act_counter()
    assert a.effect("add", PLANNED, act) == "result" and acts == ["acted"]


def test_a_write_that_lands_between_the_read_and_the_save_is_seen_by_the_etag() -> None:
    """Another holder takes the lease after the renewal read the state and before it saved: the
    save is refused by the ETag, the retry reads the new owner, and the run does not act."""
    h = unit_harness()
    a = started(h)
    save = h.store.save
    raced: list[str] = []

    def racing_save(state: TargetState) -> TargetState:
        if not raced:
            raced.append("taken")
            other = h.store.load(KEY)
            other.lease_owner, other.lease_until = B, h.clock() + timedelta(seconds=600)
            save(other)
        return save(state)

    h.store.save = racing_save  # type: ignore[method-assign]
    acts, act = act_counter()
    with pytest.raises(LeaseLost):
        a.effect("drop-ingestors", None, act)
    assert raced and acts == []
    assert h.store.load(KEY).lease_owner == B


def test_each_effect_is_renewed_right_before_it_and_journaled_intent_act_result() -> None:
    seen: list[str] = []
    h = unit_harness(checkpoint=seen.append)
    a = started(h)
    h.clock.advance(100)
    lease_at_act: list[object] = []

    def act() -> int:
        lease_at_act.append(h.store.load(KEY).lease_until)
        return 3

    value = a.effect("drop-ingestors", PLANNED, act, lambda n: {"listed": n > 0}, role="ingestors", fqn=FQN)
    assert value == 3
    assert lease_at_act == [h.clock() + timedelta(seconds=h.services.settings.lease_seconds)]
    rows = h.store.read_journal(KEY, A)
    assert [(r["Step"], r["Status"], r["Data"]) for r in rows] == [
        ("drop-ingestors", "intent", {"role": "ingestors", "fqn": FQN}),
        ("drop-ingestors", "done", {"listed": True}),
    ]
    assert seen[-3:] == ["journal:drop-ingestors:intent", "effect:drop-ingestors", "journal:drop-ingestors:done"]


def test_an_act_that_fails_leaves_its_intent_without_a_result() -> None:
    h = unit_harness()
    a = started(h)

    def act() -> None:
        raise TimeoutError("the command's answer never came")

    with pytest.raises(TimeoutError):
        a.effect("drop-ingestors", PLANNED, act)
    statuses = [r["Status"] for r in h.store.read_journal(KEY, A)]
    assert statuses == ["intent"]  # a resumed run reads first: it does not trust an unconfirmed act


def test_a_state_write_whose_answer_was_lost_is_applied_once() -> None:
    """The write lands, its answer is lost, the SDK's retry meets the new ETag (412): the store
    recognises its own write by name and does not apply the change a second time."""
    h = unit_harness()
    a = started(h)
    lose = ["once"]
    h.store.lose_answer = lambda state: bool(lose and lose.pop())
    applied: list[int] = []

    def count(state: TargetState) -> None:
        applied.append(1)
        state.tries += 1

    state = a.transition({PLANNED}, PLANNED, count)
    assert h.store.lost_answers == 1
    assert applied == [1] and state.tries == 1 and h.store.load(KEY).tries == 1


def test_an_effect_whose_renewal_answer_was_lost_acts_once() -> None:
    h = unit_harness()
    a = started(h)
    lose = ["once"]
    h.store.lose_answer = lambda state: bool(lose and lose.pop())
    acts, act = act_counter()
    a.effect("add", PLANNED, act)
    assert h.store.lost_answers == 1 and acts == ["acted"]


def test_a_renewal_that_ate_the_lease_refuses_the_act() -> None:
    h = unit_harness()
    a = started(h)
    settings = h.services.settings
    needed = settings.worst_case_step_seconds + 2 * settings.clock_skew_seconds
    save = h.store.save

    def slow_save(state: TargetState) -> TargetState:
        h.clock.advance(settings.lease_seconds - needed + 1)  # the storage round trip took this long
        return save(state)

    h.store.save = slow_save  # type: ignore[method-assign]
    acts, act = act_counter()
    with pytest.raises(LeaseTooShort) as refused:
        a.effect("drop-ingestors", PLANNED, act)
    assert acts == [] and refused.value.retry_s == settings.verify_poll_seconds


def test_a_move_the_run_graph_does_not_hold_is_refused() -> None:
    h = unit_harness()
    a = started(h)
    with pytest.raises(PhaseConflict, match="no move from 'planned' to 'dropped'"):
        a.transition(None, DROPPED)
    with pytest.raises(PhaseConflict, match="expected one of"):
        a.transition({SNAPSHOTTED}, DROPPED)
    assert h.store.load(KEY).phase == PLANNED


def test_another_runs_phase_is_never_taken_over_mid_way_only_at_rest() -> None:
    h = unit_harness()
    a = started(h)
    a.transition({PLANNED}, SNAPSHOTTED)
    h.clock.advance(h.services.settings.lease_seconds + 1)
    b = Run(h.services, KEY, B)
    assert b.acquire() is not None  # the lease lapsed: B may hold it, not take A's phase
    with pytest.raises(PhaseConflict, match="not taken over"):
        b.transition(None, PLANNED)
    state = h.store.load(KEY)
    assert (state.run_id, state.phase) == (A, SNAPSHOTTED)
    h.store.update(KEY, lambda st: setattr(st, "phase", DONE))
    assert b.transition({OTHER_RUN}, PLANNED).run_id == B  # a run at rest may be begun over


def test_putting_back_what_the_run_dropped_is_allowed_from_any_phase_while_its_record_exists() -> None:
    h = unit_harness()
    a = started(h)
    a.transition({PLANNED}, SNAPSHOTTED)
    a.transition({SNAPSHOTTED}, DROPPED)
    a.transition({DROPPED}, READDING)
    a.transition({READDING}, VERIFYING)
    with pytest.raises(PhaseConflict):  # no record: verifying → re-adding is not a move
        a.transition(None, READDING)
    h.store.update(KEY, lambda st: setattr(st, "pending_readd", pending(A, h)))
    assert a.transition(None, READDING).phase == READDING
    # Another run's record does not count as this run's discharge.
    h.store.update(KEY, lambda st: setattr(st, "pending_readd", pending(B, h)))
    a.transition({READDING}, VERIFYING)
    with pytest.raises(PhaseConflict):
        a.transition(None, READDING)


def test_a_straggler_whose_run_moved_on_is_refused_at_its_renewal() -> None:
    h = unit_harness()
    a = started(h)
    a.transition({PLANNED}, SNAPSHOTTED)
    straggler = Run(h.services, KEY, A)  # a second delivery of run A, still believing it snapshotted
    a.transition({SNAPSHOTTED}, DROPPED)
    acts, act = act_counter()
    with pytest.raises(PhaseConflict, match="not 'snapshotted'"):
        straggler.effect("drop-ingestors", SNAPSHOTTED, act)
    assert acts == []


def test_a_twin_delivery_whose_claim_was_overtaken_stands_back() -> None:
    h = unit_harness()
    first, twin = started(h), Run(h.services, KEY, A)
    first.claim = "first"
    h.store.update(KEY, lambda st: setattr(st, "run_data", st.run_data.model_copy(update={"claim": "first"})))
    twin.claim = "twin"
    h.store.update(KEY, lambda st: setattr(st, "run_data", st.run_data.model_copy(update={"claim": "twin"})))
    acts, act = act_counter()
    with pytest.raises(PhaseConflict, match="claimed by a twin"):
        first.effect("disable-export", None, act)
    assert acts == []
    twin.effect("disable-export", None, act)  # the latest claim acts
    assert acts == ["acted"]


def test_the_renewal_before_an_act_that_creates_an_obligation_stamps_how_late_it_may_land() -> None:
    h = unit_harness()
    a = started(h)
    h.store.update(KEY, lambda st: setattr(st, "pending_readd", pending(A, h)))
    h.clock.advance(5)
    renewed_at = h.clock()
    a.effect("drop-ingestors", PLANNED, lambda: None, obligation="readd")
    record = h.store.load(KEY).pending_readd
    assert record is not None
    assert record.land_by == renewed_at + timedelta(seconds=h.services.settings.act_window_seconds)
    h.clock.advance(-1)  # a later renewal never moves it earlier (a clock behind)
    a.effect("drop-admins", PLANNED, lambda: None, obligation="readd")
    again = h.store.load(KEY).pending_readd
    assert again is not None and again.land_by == record.land_by


def test_observe_mode_sends_only_what_discharges_an_obligation() -> None:
    h = unit_harness(mode="observe")
    a = started(h)
    acts, act = act_counter()
    for change in ("drop-ingestors", "add", "disable-export", "create-destination", "repoint-export"):
        with pytest.raises(PhaseConflict, match="observe mode"):
            a.effect(change, None, act)
    assert acts == []
    for discharge in ("readd-ingestors", "enable-export", "delete-copy", "unpoint-old", "delete-destination"):
        a.effect(discharge, None, act)
    assert len(acts) == 5
    assert all(discharges(step) for step in DISCHARGES) and not discharges("drop-admins")


def test_finish_ends_the_run_and_releases_the_lease() -> None:
    h = unit_harness()
    a = started(h)
    state = a.finish(lambda st: setattr(st, "last_outcome", "healed"))
    assert (state.phase, state.lease_owner, state.lease_until, state.last_run_id) == (DONE, "", None, A)
    assert Run(h.services, KEY, B).acquire() is not None


def test_the_sweep_holding_for_a_run_moves_that_runs_phase_under_its_own_name() -> None:
    h = unit_harness()
    a = started(h)
    a.transition({PLANNED}, SNAPSHOTTED)
    h.clock.advance(h.services.settings.lease_seconds + 1)
    sweep = Run(h.services, KEY, A, holder="sweep-1")
    assert sweep.acquire(exclusive=True) is not None
    state = sweep.transition({SNAPSHOTTED}, READDING)
    assert (state.run_id, state.phase, state.lease_owner) == (A, READDING, "sweep-1")
    with pytest.raises(LeaseLost):  # the run's own straggler no longer holds it
        a.effect("drop-ingestors", None, lambda: None)
