"""The refresh remedy (shared/runs/remedies/refresh.py) as a unit: the snapshot is recorded (the
re-add obligation) before the first drop; drop, then a delayed message, then the exact re-add from
the record alone; never a drop without the healer being Database Admin nor over another run's
record; a drop that landed not sent again; a re-add that fails keeps its record and says why."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from shared.adapters.kusto_errors import AdxError
from shared.domain.messages import parse_message
from shared.domain.principals import Assignment
from shared.domain.state import PendingReadd, TargetState
from shared.runs.base import LeaseLost, PhaseConflict
from shared.runs.fencing import Run
from shared.runs.outcome import Status
from shared.runs.phases import DROPPED, READDING, SNAPSHOTTED, VERIFYING
from shared.runs.remedies.refresh import ReaddAbandoned, ReaddBlocked, Refresh, escalate_blocked, readd
from shared.runs.remedy import Step
from tests.support.model_fakes import Harness
from tests.support.model_target import FQN, NOTES, TARGET
from tests.support.run_harness import Crash
from tests.support.run_units import BYSTANDERS, bystanders_of, journal, planned, touched, unit_harness

UNKNOWN = AdxError(
    "BadRequest", f"Entity ID '{FQN}' of type 'AAD Application Id' was not found", transient=False, status=400
)


def roles(h: Harness) -> list[tuple[str, str]]:
    return sorted((a.role, a.notes) for a in h.adx.rows if a.fqn.lower() == FQN.lower())


def dropped(h: Harness) -> tuple[Step, PendingReadd]:
    """A refresh that dropped the principal and waits for its re-add."""
    step, reading, plan = planned(h)
    assert Refresh().begin(step, reading, plan.actions[0], plan).status == Status.WAITING
    record = h.store.load(TARGET.key).pending_readd
    assert record is not None
    return step, record


def test_the_snapshot_is_recorded_before_the_drop_then_dropped_then_the_re_add_waits() -> None:
    h = unit_harness()
    settings = h.services.settings
    at_drop: list[TargetState] = []
    h.adx.before_command = lambda verb: at_drop.append(h.store.load(TARGET.key))
    step, reading, plan = planned(h)
    action = plan.actions[0]
    assert action.kind == "refresh"

    outcome = Refresh().begin(step, reading, action, plan)

    assert outcome.status == Status.WAITING
    [before] = at_drop
    assert before.phase == SNAPSHOTTED and before.pending_readd is not None  # written before the drop
    assert [(d.role, d.fqn, d.notes) for d in before.pending_readd.snapshot] == [("ingestors", FQN, NOTES)]
    assert before.pending_readd.land_by is not None  # the renewal allowing the drop stamped it
    assert h.adx.log == [("drop", "ingestors", FQN.lower())] and roles(h) == []
    state = h.store.load(TARGET.key)
    record = state.pending_readd
    assert record is not None and state.phase == DROPPED
    assert record.due == h.clock() + timedelta(seconds=settings.refresh_wait_seconds)
    assert state.lease_until == record.due  # the run holds the target through the wait
    [readd_msg] = h.queue.messages.values()
    message = parse_message(readd_msg.body)
    assert (message.step, message.run_id, message.action_at) == ("readd", step.run.run_id, record.dropped_at)
    assert readd_msg.visible_at == record.due  # the wait is a delayed message, never a sleep
    assert journal(h, step.run.run_id) == [
        ("snapshot", "done"),
        ("drop-ingestors", "intent"),
        ("drop-ingestors", "done"),
    ]
    assert touched(h) == {FQN.lower()} and bystanders_of(h) == list(BYSTANDERS)


def test_after_the_wait_the_snapshot_is_re_added_exactly_and_verified() -> None:
    h = unit_harness()
    step, record = dropped(h)
    h.clock.now = record.due
    h.queue.messages.clear()
    readd_step = Step(h.healer, Run(h.services, TARGET.key, step.run.run_id), TARGET, step.msg.next("readd"))
    assert readd_step.run.acquire() is not None

    outcome = Refresh().resume(readd_step, h.store.load(TARGET.key))

    assert outcome.status == Status.WAITING
    assert roles(h) == [("ingestors", NOTES)]  # role and notes exactly as they were
    assert h.adx.log == [("drop", "ingestors", FQN.lower()), ("add", "ingestors", FQN.lower())]
    assert bystanders_of(h) == list(BYSTANDERS)
    state = h.store.load(TARGET.key)
    assert state.phase == VERIFYING
    assert state.pending_readd is not None and state.pending_readd.readded_at == record.due  # settles later
    [verify] = h.queue.messages.values()
    assert parse_message(verify.body).step == "verify"


def test_a_start_delivered_again_during_the_wait_only_makes_sure_the_re_add_is_queued() -> None:
    h = unit_harness()
    step, record = dropped(h)
    h.queue.messages.clear()  # the delivery that dropped died before its re-add message was sent
    again = Step(h.healer, Run(h.services, TARGET.key, step.run.run_id), TARGET, step.msg)
    outcome = Refresh().resume(again, h.store.load(TARGET.key))
    assert outcome.status == Status.WAITING
    [readd_msg] = h.queue.messages.values()
    assert parse_message(readd_msg.body).step == "readd" and readd_msg.visible_at == record.due
    assert h.adx.log == [("drop", "ingestors", FQN.lower())]  # no second drop, no early re-add


def test_no_drop_unless_the_healer_is_database_admin() -> None:
    h = unit_harness()
    step, reading, plan = planned(h)
    not_admin = dataclasses.replace(reading, adx=dataclasses.replace(reading.adx, healer_roles={"viewers"}))
    with pytest.raises(RuntimeError, match="not Database Admin"):
        Refresh().begin(step, not_admin, plan.actions[0], plan)
    assert h.adx.log == [] and h.store.load(TARGET.key).pending_readd is None


def test_another_runs_record_of_what_it_dropped_is_never_overwritten() -> None:
    h = unit_harness()
    _, theirs = dropped(h)
    h.adx.rows.append(Assignment("database", "ingestors", FQN, "", "", NOTES))  # a person re-added it
    h.adx.stale.add(FQN.lower())  # and it is denied again: a new run plans another refresh
    h.clock.advance(h.services.settings.lease_seconds + h.services.settings.refresh_wait_seconds)
    h.store.update(TARGET.key, lambda st: setattr(st, "phase", "done"))
    step, reading, plan = planned(h)
    with pytest.raises(PhaseConflict, match="re-add is pending"):
        Refresh().begin(step, reading, plan.actions[0], plan)
    assert h.store.load(TARGET.key).pending_readd == theirs
    assert [verb for verb, _, _ in h.adx.log] == ["drop"]  # nothing more dropped


def test_a_drop_that_landed_before_the_worker_died_is_not_sent_again() -> None:
    def die(name: str) -> None:
        if name == "effect:drop-ingestors":
            raise Crash(name)

    h = unit_harness(checkpoint=die)
    step, reading, plan = planned(h)
    with pytest.raises(Crash):
        Refresh().begin(step, reading, plan.actions[0], plan)
    assert h.store.load(TARGET.key).phase == SNAPSHOTTED
    h.services.checkpoint = lambda name: None
    again = Step(h.healer, Run(h.services, TARGET.key, step.run.run_id), TARGET, step.msg)
    assert again.run.acquire() is not None
    assert Refresh().resume(again, h.store.load(TARGET.key)).status == Status.WAITING
    assert h.adx.log == [("drop", "ingestors", FQN.lower())]  # read first, found dropped
    assert h.store.load(TARGET.key).phase == DROPPED


def test_a_refresh_that_fails_between_two_drops_puts_back_the_one_it_dropped() -> None:
    h = unit_harness()
    h.adx.rows.append(Assignment("database", "viewers", FQN, "", "", "read access"))
    drops: list[str] = []

    def second_drop_fails(verb: str) -> None:
        drops.append(verb)
        if drops.count("drop") == 2:
            raise AdxError("ServiceError", "the cluster is unavailable", transient=True, status=503)

    h.adx.before_command = second_drop_fails
    step, reading, plan = planned(h)
    with pytest.raises(AdxError):
        Refresh().begin(step, reading, plan.actions[0], plan)
    state = h.store.load(TARGET.key)
    assert state.pending_readd is not None and len(state.pending_readd.snapshot) == 2
    assert roles(h) == [("viewers", "read access")]  # one dropped, one still held

    h.adx.before_command = None
    readd(h.services, step.run, state.pending_readd)
    assert roles(h) == [("ingestors", NOTES), ("viewers", "read access")]
    assert [verb for verb, _, _ in h.adx.log] == ["drop", "add"]  # only the dropped one re-added
    assert h.store.load(TARGET.key).phase == READDING


def test_a_re_add_that_fails_keeps_its_record_and_says_why() -> None:
    h = unit_harness()
    step, record = dropped(h)
    h.clock.now = record.due
    run = Run(h.services, TARGET.key, step.run.run_id)

    h.adx.failing = True  # an outage: raised, so the message is retried; the record stays
    with pytest.raises(AdxError):
        readd(h.services, run, record)
    assert h.store.load(TARGET.key).pending_readd == record and roles(h) == []

    h.adx.failing, h.adx.healer_admin = False, False
    with pytest.raises(ReaddBlocked, match="not Database Admin") as blocked:
        readd(h.services, run, record)
    escalate_blocked(h.services, TARGET.key, run.holder, str(blocked.value))
    state = h.store.load(TARGET.key)
    assert state.escalated and state.escalation_reason.startswith("re-add pending")
    assert state.pending_readd is not None and not state.pending_readd.abandoned  # the sweep keeps trying
    assert state.lease_owner == "" and state.retry_at is not None and state.retry_at > h.clock()

    h.adx.healer_admin = True
    with pytest.raises(LeaseLost):  # the escalation let go of the lease: nothing acts without taking it again
        readd(h.services, run, record)
    assert run.acquire() is not None
    readd(h.services, run, record)
    assert roles(h) == [("ingestors", NOTES)]


def test_an_identity_unknown_to_entra_is_retried_then_the_re_add_is_abandoned_to_people() -> None:
    h = unit_harness()
    step, record = dropped(h)
    run = Run(h.services, TARGET.key, step.run.run_id)

    def unknown(verb: str) -> None:
        raise UNKNOWN

    h.adx.before_command = unknown
    h.clock.now = record.due
    with pytest.raises(ReaddBlocked, match="not known to Entra yet") as blocked:
        readd(h.services, run, record)
    assert not isinstance(blocked.value, ReaddAbandoned)
    h.clock.now = record.dropped_at + timedelta(seconds=h.services.settings.unknown_identity_retry_seconds)
    with pytest.raises(ReaddAbandoned, match="re-add it by hand"):
        readd(h.services, run, record)


def test_a_re_add_already_finished_is_not_done_again() -> None:
    h = unit_harness()
    step, record = dropped(h)
    h.clock.now = record.due
    run = Run(h.services, TARGET.key, step.run.run_id)
    readd(h.services, run, record)
    h.store.update(TARGET.key, lambda st: setattr(st, "pending_readd", None))  # discharged
    with pytest.raises(PhaseConflict, match="already done"):
        readd(h.services, run, record)
    assert [verb for verb, _, _ in h.adx.log] == ["drop", "add"]


def test_observe_mode_drops_nothing_but_still_puts_back_what_was_dropped() -> None:
    h = unit_harness(mode="observe")
    step, reading, plan = planned(h)
    with pytest.raises(PhaseConflict, match="observe mode"):
        Refresh().begin(step, reading, plan.actions[0], plan)
    assert h.adx.log == []

    h = unit_harness()
    step, record = dropped(h)
    h.services.settings = h.services.settings.model_copy(update={"mode": "observe"})  # switched on mid-run
    readd(h.services, Run(h.services, TARGET.key, step.run.run_id), record)
    assert roles(h) == [("ingestors", NOTES)]
