"""The re-create remedy (shared/runs/remedies/recreate.py) as a unit: make-before-break (the copy
is created, the export re-pointed to it, then the old destination removed), its obligation
recorded before the copy exists, a refused copy or re-point escalated without overwriting
anything, an edit made meanwhile kept, and a copy settled from its record alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.iotcentral_model import IotcError
from shared.domain.destination_copy import new_destination_id
from shared.domain.state import TargetState
from shared.runs.fencing import Run
from shared.runs.outcome import Status
from shared.runs.phases import CREATED, PREPARED, VERIFYING
from shared.runs.remedies.recreate import RecreateDestination, refused, settle_copy
from shared.runs.remedy import Step
from tests.support.model_fakes import Harness
from tests.support.model_target import TARGET
from tests.support.run_harness import Crash
from tests.support.run_units import BYSTANDERS, bystanders_of, iotc_of, journal, planned, unit_harness

TRANSFORM = 'import "iotc" as iotc; {deviceId: .device.id}'
OLD = "adx-1"


def recreating(checkpoint: Any = None) -> Harness:
    h = unit_harness(remedy_order="recreate-destination", checkpoint=checkpoint)
    # The export also sends elsewhere, and shapes what it sends to ADX with a transform.
    iotc_of(h).refs = [{"id": "blob-1"}, {"id": OLD, "transform": TRANSFORM}]
    return h


def on(h: Harness, verb: str, do: Callable[[], None]) -> list[str]:
    """Record every command IoT Central receives; run `do` once, as the command `verb` arrives."""
    seen: list[str] = []

    def command(name: str) -> None:
        seen.append(name)
        if name == verb and seen.count(verb) == 1:
            do()

    h.adx.before_command = command
    return seen


def test_the_copy_is_created_the_export_re_pointed_and_only_then_the_old_destination_removed() -> None:
    h = recreating()
    iotc = iotc_of(h)
    original = dict(iotc.destinations[OLD])
    step, reading, plan = planned(h)
    action = plan.actions[0]
    assert action.kind == "recreate-destination"
    new = new_destination_id(OLD, step.run.run_id)
    at: dict[str, tuple[TargetState, list[str], list[str]]] = {}

    def command(verb: str) -> None:
        at[verb] = (h.store.load(TARGET.key), [r["id"] for r in iotc.refs], sorted(iotc.destinations))

    h.adx.before_command = command
    outcome = RecreateDestination().begin(step, reading, action, plan)

    assert outcome.status == Status.WAITING
    assert list(at) == ["create", "repoint", "delete"]
    state_at_create, _, _ = at["create"]
    # The obligation was written before the copy existed, stamped with how late the create may land.
    assert state_at_create.pending_copy is not None and state_at_create.pending_copy.new_id == new
    assert state_at_create.pending_copy.land_by is not None
    assert at["repoint"][2] == sorted([OLD, new])  # both exist while the export is re-pointed
    assert at["delete"][1] == ["blob-1", new]  # the export sent to the copy before the old one went
    assert iotc.refs == [{"id": "blob-1"}, {"id": new, "transform": TRANSFORM}]
    assert sorted(iotc.destinations) == [new]
    assert {k: v for k, v in iotc.destinations[new].items() if k != "id"} == {
        k: v for k, v in original.items() if k != "id"
    }
    state = h.store.load(TARGET.key)
    assert state.phase == VERIFYING and state.destination_id == new
    assert state.pending_copy is not None and state.pending_copy.settled_at is not None  # observed settled
    assert journal(h, step.run.run_id) == [
        ("destination-copy", "done"),
        ("create-destination", "intent"),
        ("create-destination", "done"),
        ("repoint-export", "intent"),
        ("repoint-export", "done"),
        ("delete-destination", "intent"),
        ("delete-destination", "done"),
    ]
    assert h.adx.log == [] and bystanders_of(h) == list(BYSTANDERS)  # no role was touched


def test_a_resumed_re_creation_repeats_at_most_the_step_that_died() -> None:
    def die(name: str) -> None:
        if name == "effect:repoint-export":
            raise Crash(name)

    h = recreating(die)
    commands = on(h, "", lambda: None)
    step, reading, plan = planned(h)
    with pytest.raises(Crash):
        RecreateDestination().begin(step, reading, plan.actions[0], plan)
    assert h.store.load(TARGET.key).phase == CREATED
    h.services.checkpoint = lambda name: None
    again = Step(h.healer, Run(h.services, TARGET.key, step.run.run_id), TARGET, step.msg)
    assert again.run.acquire() is not None
    assert RecreateDestination().resume(again, h.store.load(TARGET.key)).status == Status.WAITING
    assert commands == ["create", "repoint", "delete"]  # the re-point that landed was read, not sent again
    assert [r["id"] for r in iotc_of(h).refs] == ["blob-1", new_destination_id(OLD, step.run.run_id)]


def test_a_copy_iot_central_refuses_escalates_and_leaves_the_export_as_it_was() -> None:
    h = recreating()
    iotc = iotc_of(h)
    before = [dict(r) for r in iotc.refs]

    def too_many() -> None:
        raise IotcError(400, "BadRequest", "an application can have at most 10 destinations")

    commands = on(h, "create", too_many)
    step, reading, plan = planned(h)
    outcome = RecreateDestination().begin(step, reading, plan.actions[0], plan)
    assert outcome.status == Status.ESCALATED and "refused the copy" in outcome.detail
    assert commands == ["create"] and iotc.refs == before and sorted(iotc.destinations) == [OLD]
    state = h.store.load(TARGET.key)
    assert state.escalated and state.lease_owner == "" and state.destination_id in ("", OLD)
    assert state.pending_copy is not None  # kept: whether the create landed is settled from the record


def test_throttling_and_timeouts_are_not_a_refusal() -> None:
    assert refused(IotcError(400, "BadRequest", "x")) and refused(IotcError(409, "Conflict", "x"))
    assert not refused(IotcError(429, "TooManyRequests", "x")) and not refused(IotcError(408, "Timeout", "x"))
    assert not refused(IotcError(503, "Unavailable", "x")) and not refused(IotcError(None, "Timeout", "x"))


def test_an_export_that_no_longer_sends_to_the_destination_is_not_re_created() -> None:
    h = recreating()
    step, reading, plan = planned(h)
    iotc_of(h).refs = [{"id": "blob-1"}]  # someone removed the destination from the export meanwhile
    commands = on(h, "", lambda: None)
    outcome = RecreateDestination().begin(step, reading, plan.actions[0], plan)
    assert outcome.status == Status.ESCALATED and "not possible" in outcome.detail
    assert commands == [] and iotc_of(h).refs == [{"id": "blob-1"}]


def test_a_re_point_refused_for_a_concurrent_edit_keeps_the_edit_and_deletes_the_copy() -> None:
    h = recreating()
    iotc = iotc_of(h)
    edited = [{"id": "blob-1"}, {"id": OLD, "transform": TRANSFORM}, {"id": "adx-2"}]

    def someone_edits() -> None:  # lands between the adapter's read of the export and its write
        iotc.refs = [dict(r) for r in edited]

    commands = on(h, "repoint", someone_edits)
    step, reading, plan = planned(h)
    new = new_destination_id(OLD, step.run.run_id)
    outcome = RecreateDestination().begin(step, reading, plan.actions[0], plan)

    assert outcome.status == Status.ESCALATED and "the edit was kept, not overwritten" in outcome.detail
    assert iotc.refs == edited  # never written over
    assert commands == ["create", "repoint", "delete"] and sorted(iotc.destinations) == [OLD]  # copy deleted
    assert ("repoint-export", "refused") in journal(h, step.run.run_id)
    assert new not in iotc.destinations
    state = h.store.load(TARGET.key)
    assert state.escalated and state.destination_id in ("", OLD)


def test_a_reference_edited_since_the_copy_was_planned_is_not_overwritten() -> None:
    h = recreating()
    iotc = iotc_of(h)

    def retransform() -> None:  # the transform changes after the copy was planned, before the re-point
        iotc.refs = [{"id": "blob-1"}, {"id": OLD, "transform": "."}]

    commands = on(h, "create", retransform)
    step, reading, plan = planned(h)
    outcome = RecreateDestination().begin(step, reading, plan.actions[0], plan)
    assert outcome.status == Status.ESCALATED and "changed since the copy was planned" in outcome.detail
    assert "repoint" not in commands  # the export was not written at all
    assert iotc.refs == [{"id": "blob-1"}, {"id": OLD, "transform": "."}] and sorted(iotc.destinations) == [OLD]


def test_an_editor_who_pointed_the_export_at_the_copy_keeps_it_and_the_old_one() -> None:
    h = recreating()
    iotc = iotc_of(h)
    step, reading, plan = planned(h)
    new = new_destination_id(OLD, step.run.run_id)

    def point_at_copy() -> None:
        iotc.refs = [{"id": new}]

    on(h, "repoint", point_at_copy)
    outcome = RecreateDestination().begin(step, reading, plan.actions[0], plan)
    assert outcome.status == Status.ESCALATED and f"now sends to the copy {new}" in outcome.detail
    assert iotc.refs == [{"id": new}] and sorted(iotc.destinations) == sorted([OLD, new])
    assert h.store.load(TARGET.key).pending_copy is None  # in use: not an orphan to delete


def test_a_copy_is_settled_from_its_record_deleted_or_its_re_point_finished() -> None:
    h = recreating()
    iotc = iotc_of(h)
    step, reading, plan = planned(h)
    new = new_destination_id(OLD, step.run.run_id)

    def stop(name: str) -> None:
        if name == "phase:destination-created":
            raise Crash(name)

    h.services.checkpoint = stop
    with pytest.raises(Crash):
        RecreateDestination().begin(step, reading, plan.actions[0], plan)
    h.services.checkpoint = lambda name: None
    state = h.store.load(TARGET.key)
    assert state.phase in (PREPARED, CREATED) and state.pending_copy is not None
    owed = state.pending_copy
    sweep = Run(h.services, TARGET.key, step.run.run_id, holder="sweep-1")
    h.clock.advance(h.services.settings.lease_seconds + 1)
    assert sweep.acquire(exclusive=True) is not None

    # The export still sends to the old destination: the copy goes.
    assert settle_copy(h.services, sweep, TARGET.key, owed).startswith(f"deleted the copy {new}")
    assert sorted(iotc.destinations) == [OLD] and [r["id"] for r in iotc.refs] == ["blob-1", OLD]

    # Sending to both (a re-point half done by hand): the old reference goes first, then the old destination.
    iotc.destinations[new] = {**iotc.destinations[OLD], "id": new}
    iotc.refs = [{"id": "blob-1"}, {"id": OLD}, {"id": new}]
    assert settle_copy(h.services, sweep, TARGET.key, owed) == f"finished the re-point to {new}"
    assert [r["id"] for r in iotc.refs] == ["blob-1", new] and sorted(iotc.destinations) == [new]
    assert h.store.load(TARGET.key).destination_id == new


def test_repointed_keeps_the_transform_and_never_names_a_destination_twice() -> None:
    from shared.domain.destination_copy import repointed

    refs = [{"id": "a", "transform": "{x}"}, {"id": "other"}]
    assert repointed(refs, "a", "b") == [{"id": "b", "transform": "{x}"}, {"id": "other"}]
    assert repointed([{"id": "b"}, {"id": "a", "transform": "{x}"}], "a", "b") == [{"id": "b"}]  # already there
    assert repointed(refs, "missing", "b") == refs
