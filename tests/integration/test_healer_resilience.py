"""Crash points, chaos, concurrency and the recovery sweep: a principal is never left dropped.
(The kills at every crash point are in test_real_kills.py.)

Select these with `pytest -k "crash or chaos or inject or concurren"`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.world import World
from shared.runs import Healer
from tests.support.crash_points import ADD_TOGGLE_POINTS, RECREATE_POINTS, REFRESH_POINTS
from tests.support.healer_env import (
    Crash,
    Worker,
    changing_commands,
    healer_for,
    inject_and_wait,
    make_settings,
    queue_client,
)
from tests.support.helpers import wait_until

pytestmark = pytest.mark.integration
CONTOSO = "contoso:export-1:adx-1"
NOTE = "IoT Central contoso data export"


@pytest.fixture
def refresh_setup(healer_setup: Any, azurite: Any) -> Any:
    """(world, settings, healer, worker) with the forum's refresh as the only remedy."""
    world = healer_setup[0]
    settings = make_settings(world, azurite, remedy_order="refresh")
    healer = healer_for(settings)
    return world, settings, healer, Worker(healer, queue_client(settings))


def crash_once_at(point: str, seen: list[str]) -> Callable[[str], None]:
    def hook(name: str) -> None:
        seen.append(name)
        if name == point and seen.count(name) == 1:  # die once, at the first pass
            raise Crash(point)

    return hook


def principal_intact(world: World) -> bool:
    identity = world.iotc.identity_of("contoso")
    rows = [a for a in world.cluster.database("devicedata").principals if a.fqn.matches(identity)]
    return any(a.role == "admins" and a.notes == NOTE for a in rows)


def drive(world: World, healer: Healer, worker: Worker, timeout_s: float = 45) -> None:
    """Run the worker and the recovery sweep until the target settles."""

    def settled() -> bool:
        try:  # the sweep runs in the timer; it can die at a crash point too
            healer.sweep()
        except Crash:
            worker.crashes += 1
        state = healer.services.store.load(CONTOSO)
        finished = any(o.status in ("healed", "healthy", "not-healed") for o in worker.outcomes)
        return finished and state.pending_readd is None and not state.pending_enable and state.lease_owner == ""

    worker.run_until(settled, timeout_s)


def test_crash_points_are_the_ones_the_matrix_covers(refresh_setup: Any, azurite: Any) -> None:
    world, _, healer, worker = refresh_setup
    seen: list[str] = []
    healer.services.checkpoint = seen.append
    inject_and_wait(world, "stale-permission")
    worker.enqueue_start(CONTOSO)
    worker.run_until(lambda: any(o.status == "healed" for o in worker.outcomes), 40)
    assert list(dict.fromkeys(seen)) == REFRESH_POINTS

    inject_and_wait(world, "principal-removed", "fabrikam")
    toggling = healer_for(make_settings(world, azurite, toggle_export=True))
    seen_add: list[str] = []
    toggling.services.checkpoint = seen_add.append
    other = Worker(toggling, queue_client(toggling.services.settings))
    other.enqueue_start("fabrikam:export-1:adx-1")
    other.run_until(lambda: any(o.status == "healed" for o in other.outcomes), 40)
    assert list(dict.fromkeys(seen_add)) == ADD_TOGGLE_POINTS


def test_recovery_sweep_re_adds_when_the_re_add_message_is_lost(refresh_setup: Any) -> None:
    world, _, healer, worker = refresh_setup
    inject_and_wait(world, "stale-permission")
    worker.enqueue_start(CONTOSO)
    worker.run_until(lambda: any(o.status == "waiting" for o in worker.outcomes), 20)
    assert not principal_intact(world)  # dropped, waiting for its re-add
    worker.queue.clear_messages()  # the delayed re-add message is lost
    wait_until(lambda: bool(healer.sweep()), 10, "the sweep to find the overdue re-add")
    assert principal_intact(world)
    assert healer.services.store.load(CONTOSO).pending_readd is None


def test_chaos_30_percent_of_kusto_calls_fail(refresh_setup: Any) -> None:
    world, _, healer, worker = refresh_setup
    worker.visibility_s = 1
    for round_ in range(3):
        inject_and_wait(world, "stale-permission", "contoso")
        world.set_transport("kusto", throttle_rate=0.1, error_rate=0.1, reset_rate=0.1, retry_after_s=1)
        worker.outcomes.clear()
        worker.enqueue_start(CONTOSO)
        drive(world, healer, worker, timeout_s=90)
        world.faults.clear_transport("kusto")
        assert principal_intact(world), f"round {round_}: principal lost"
        assert healer.services.store.load(CONTOSO).pending_readd is None
    counters = world.faults.counters["kusto"]
    assert counters.throttled and counters.errors and counters.resets, f"every kind of fault happened: {counters}"
    identity = world.iotc.identity_of("contoso")
    grants = [a for a in world.cluster.database("devicedata").principals if a.fqn.matches(identity)]
    assert [(a.role, a.notes) for a in grants] == [("admins", NOTE)]  # no duplicate grant, nothing lost
    assert any(o.status == "healed" for o in worker.outcomes), [(o.status, o.detail) for o in worker.outcomes]


def test_concurrent_workers_on_one_target_do_one_refresh(refresh_setup: Any) -> None:
    world, settings, _, worker = refresh_setup
    second = Worker(healer_for(settings), queue_client(settings))
    inject_and_wait(world, "stale-permission", "contoso")
    before = len(world.cluster.command_log)
    for _ in range(3):
        worker.enqueue_start(CONTOSO)
    stop = threading.Event()
    threads = [worker.run_in_thread(stop), second.run_in_thread(stop)]
    try:
        wait_until(lambda: any(o.status == "healed" for o in worker.outcomes + second.outcomes), 40, "healed")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    changes = changing_commands(world, before)
    assert [c.split()[0] for c in changes] == [".drop", ".add"]
    statuses = [o.status for o in worker.outcomes + second.outcomes]
    assert statuses.count("skipped") >= 2
    assert principal_intact(world)


def export_has_a_destination(world: World) -> bool:
    app = world.iotc.apps["contoso"]
    refs = app.exports["export-1"]["destinations"]
    return bool(refs) and all(r["id"] in app.destinations for r in refs)


def test_recreate_crash_points_are_the_ones_the_matrix_covers(healer_setup: Any) -> None:
    world, _, healer, worker = healer_setup
    seen: list[str] = []
    healer.services.checkpoint = seen.append
    inject_and_wait(world, "destination-stale")
    worker.enqueue_start(CONTOSO)
    worker.run_until(lambda: any(o.status == "healed" for o in worker.outcomes), 40)
    assert list(dict.fromkeys(seen)) == RECREATE_POINTS


# Every side effect and every phase change of the re-creation (the journal writes between them
# are covered by the refresh matrix, which shares the same effect helper).
RECREATE_CRASHES = [p for p in RECREATE_POINTS if p.startswith(("effect:", "phase:destination", "phase:export"))]


@pytest.mark.parametrize("point", RECREATE_CRASHES)
def test_crash_during_recreate_keeps_the_export_sending(healer_setup: Any, point: str) -> None:
    """Make-before-break: at every step the export sends to a destination that exists; a crash
    anywhere resumes to one re-created destination, the transform kept, no principal touched."""
    world, _, healer, worker = healer_setup
    worker.visibility_s = 1
    world.iotc.apps["contoso"].exports["export-1"]["destinations"] = [{"id": "adx-1", "transform": "{ d: .device }"}]
    seen: list[str] = []
    crash = crash_once_at(point, seen)
    gaps: list[str] = []

    def hook(name: str) -> None:
        if not export_has_a_destination(world):
            gaps.append(name)
        crash(name)

    healer.services.checkpoint = hook
    inject_and_wait(world, "destination-stale")
    worker.enqueue_start(CONTOSO)
    drive(world, healer, worker)
    assert point in seen and gaps == []
    assert any(o.status == "healed" for o in worker.outcomes), [(o.status, o.detail) for o in worker.outcomes]
    app = world.iotc.apps["contoso"]
    refs = app.exports["export-1"]["destinations"]
    assert len(refs) == 1 and refs[0]["id"] != "adx-1" and refs[0]["transform"] == "{ d: .device }"
    assert list(app.destinations) == [refs[0]["id"]]  # the old one deleted, one copy only
    assert changing_commands(world) == []
    assert healer.services.store.load(CONTOSO).destination_id == refs[0]["id"]


def test_recovery_sweep_finishes_a_re_creation_whose_messages_were_lost(healer_setup: Any) -> None:
    world, _, healer, worker = healer_setup
    worker.visibility_s = 1
    healer.services.checkpoint = crash_once_at("effect:create-destination", [])
    inject_and_wait(world, "destination-stale")
    worker.enqueue_start(CONTOSO)
    worker.run_until(lambda: worker.crashes == 1, 20)
    worker.queue.clear_messages()  # the redelivery is lost: nobody will resume the run
    assert healer.services.store.load(CONTOSO).phase == "destination-prepared"
    # Once the lease lapses (here: set to the past) the sweep finishes it: the copy is used, the
    # old one is gone.
    assert not healer.sweep()  # not while the dead worker's lease still runs
    lapsed = datetime.now(UTC) - timedelta(seconds=1)
    healer.services.store.update(CONTOSO, lambda st: setattr(st, "lease_until", lapsed))
    assert healer.sweep()
    app = world.iotc.apps["contoso"]
    refs = app.exports["export-1"]["destinations"]
    assert len(refs) == 1 and list(app.destinations) == [refs[0]["id"]] and refs[0]["id"] != "adx-1"
    worker.run_until(lambda: any(o.status == "healed" for o in worker.outcomes), 30)


def test_an_export_edited_between_the_copy_and_the_repoint_keeps_the_edit(healer_setup: Any) -> None:
    """Someone edits the export (its transform) after the copy was created and before the re-point:
    the run does not write the export again, deletes its copy and escalates once, saying so."""
    world, _, healer, worker = healer_setup
    app = world.iotc.apps["contoso"]
    app.exports["export-1"]["destinations"] = [{"id": "adx-1", "transform": "{ d: .device }"}]
    edited = [{"id": "adx-1", "transform": "{ e: .device }"}]

    def edit_after_copy(name: str) -> None:
        if name == "effect:create-destination":
            app.exports["export-1"]["destinations"] = [dict(r) for r in edited]

    healer.services.checkpoint = edit_after_copy
    inject_and_wait(world, "destination-stale")
    worker.enqueue_start(CONTOSO)
    worker.run_until(lambda: any(o.status == "escalated" for o in worker.outcomes), 40)
    assert app.exports["export-1"]["destinations"] == edited, "the edit was overwritten"
    assert list(app.destinations) == ["adx-1"], "the copy was left behind"
    state = healer.services.store.load(CONTOSO)
    assert state.escalated and "was edited while its destination adx-1 was being re-created" in state.escalation_reason
    assert state.pending_copy is None and state.phase == "done"
    assert [o.status for o in worker.outcomes].count("escalated") == 1
    assert changing_commands(world) == []
