"""The add-role remedy (shared/runs/remedies/add_role.py) as a unit: only the missing role is added,
only for the target's principal; an add that landed is not sent again; observe mode adds nothing;
an identity Entra does not know yet is retried a bounded time, then escalated."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.adapters.kusto_errors import AdxError
from shared.domain.messages import parse_message
from shared.domain.principals import Assignment
from shared.runs.base import PhaseConflict
from shared.runs.fencing import Run
from shared.runs.outcome import Status
from shared.runs.phases import ADDING, VERIFYING
from shared.runs.remedies.add_role import AddRole
from shared.runs.remedy import Step
from tests.support.model_target import FQN, TARGET
from tests.support.run_harness import Crash
from tests.support.run_units import BYSTANDERS, bystanders_of, journal, planned, touched, unit_harness

UNKNOWN = AdxError(
    "BadRequest",
    f"Entity ID '{FQN}' of type 'AAD Application Id' was not found in the directory",
    transient=False,
    status=400,
)


def test_only_the_missing_role_is_added_and_only_for_the_target_principal() -> None:
    h = unit_harness(held=False)
    step, reading, plan = planned(h)
    action = plan.actions[0]
    assert (action.kind, action.role, action.fqn) == ("add-role", "ingestors", FQN)

    outcome = AddRole().begin(step, reading, action, plan)

    assert outcome.status == Status.WAITING
    assert h.adx.log == [("add", "ingestors", FQN.lower())]
    assert touched(h) == {FQN.lower()}
    assert bystanders_of(h) == list(BYSTANDERS)  # every other principal exactly as it was
    added = [a for a in h.adx.rows if a.fqn == FQN]
    assert [(a.role, a.notes) for a in added] == [("ingestors", action.notes)]
    assert journal(h, step.run.run_id) == [("add", "intent"), ("add", "done")]
    assert h.store.read_journal(TARGET.key, step.run.run_id)[-1]["Data"] == {"listed": True}
    state = h.store.load(TARGET.key)
    assert state.phase == VERIFYING and state.run_data.role == "ingestors"
    [verify] = h.queue.messages.values()
    assert parse_message(verify.body).step == "verify"


def test_roles_the_principal_already_holds_are_kept() -> None:
    h = unit_harness(held=False)
    h.adx.rows.append(Assignment("database", "viewers", FQN, "", "", "read access"))
    step, reading, plan = planned(h)
    assert plan.diagnosis.kind == "insufficient-role"
    AddRole().begin(step, reading, plan.actions[0], plan)
    assert h.adx.log == [("add", "ingestors", FQN.lower())]  # nothing dropped
    assert sorted((a.role, a.notes) for a in h.adx.rows if a.fqn == FQN) == [
        ("ingestors", plan.actions[0].notes),
        ("viewers", "read access"),
    ]


def test_an_add_that_landed_before_the_worker_died_is_not_sent_again() -> None:
    def die(name: str) -> None:
        if name == "effect:add":
            raise Crash(name)

    h = unit_harness(held=False, checkpoint=die)
    step, reading, plan = planned(h)
    with pytest.raises(Crash):
        AddRole().begin(step, reading, plan.actions[0], plan)
    assert h.store.load(TARGET.key).phase == ADDING
    assert journal(h, step.run.run_id)[-1] == ("add", "intent")  # landed, never confirmed

    h.services.checkpoint = lambda name: None
    h.clock.advance(h.services.settings.lease_seconds + 1)  # the redelivery comes after the lease lapsed
    again = Step(h.healer, Run(h.services, TARGET.key, step.run.run_id), TARGET, step.msg)
    assert again.run.acquire() is not None
    outcome = AddRole().resume(again, h.store.load(TARGET.key))

    assert outcome.status == Status.WAITING
    assert h.adx.log == [("add", "ingestors", FQN.lower())]  # read first, found listed: not sent twice
    assert h.store.load(TARGET.key).phase == VERIFYING


def test_observe_mode_adds_nothing() -> None:
    h = unit_harness(held=False, mode="observe")
    step, reading, plan = planned(h)
    with pytest.raises(PhaseConflict, match="observe mode"):
        AddRole().begin(step, reading, plan.actions[0], plan)
    assert h.adx.log == [] and h.adx.rows == list(BYSTANDERS)


def test_an_identity_entra_does_not_know_yet_is_retried_a_bounded_time_then_escalated() -> None:
    h = unit_harness(held=False)
    settings = h.services.settings

    def unknown(verb: str) -> None:
        raise UNKNOWN

    h.adx.before_command = unknown
    step, reading, plan = planned(h)
    outcome = AddRole().begin(step, reading, plan.actions[0], plan)

    assert outcome.status == Status.WAITING and "not known to Entra yet" in outcome.detail
    [retry] = h.queue.messages.values()
    assert parse_message(retry.body) == step.msg  # the same run, not a new one
    assert retry.visible_at == h.clock() + timedelta(seconds=settings.verify_poll_seconds)
    state = h.store.load(TARGET.key)
    assert state.phase == ADDING and state.leased(h.clock() + timedelta(seconds=settings.verify_poll_seconds))

    h.clock.advance(settings.unknown_identity_retry_seconds)
    outcome = AddRole().resume(step, h.store.load(TARGET.key))
    assert outcome.status == Status.ESCALATED and "still unknown to Entra" in outcome.detail
    state = h.store.load(TARGET.key)
    assert state.escalated and state.phase == "done" and state.lease_owner == ""
    assert len(h.queue.messages) == 1  # nothing more queued: never retried forever
    assert h.adx.rows == list(BYSTANDERS)


def test_any_other_refusal_of_the_add_is_not_mistaken_for_an_unknown_identity() -> None:
    h = unit_harness(held=False)

    def refuse(verb: str) -> None:
        raise AdxError("BadRequest", "Syntax error: the command could not be parsed", transient=False, status=400)

    h.adx.before_command = refuse
    step, reading, plan = planned(h)
    with pytest.raises(AdxError, match="Syntax error"):
        AddRole().begin(step, reading, plan.actions[0], plan)
    assert h.queue.messages == {} and not h.store.load(TARGET.key).escalated
