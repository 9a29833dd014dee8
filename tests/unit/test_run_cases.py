"""Named cases of the run machine, on the in-memory stand-ins: the healer losing Database Admin
between drop and re-add, a start delivered again after its re-add (the double drop), and a run
whose lease lapsed while it stalled."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any, cast

import pytest

from shared.domain.messages import new_run
from shared.runs.sweep import overdue_readds, sweep
from tests.support.model_fakes import FakeIotc
from tests.support.model_target import NOTES, TARGET, TENANT
from tests.support.run_harness import Crash, crash_once_at, harness, held, owes_enable


def test_admin_lost_mid_refresh_escalates_at_once_and_the_sweep_finishes_the_readd() -> None:
    h = harness()
    h.queue.send(new_run(TARGET.key, "timer").to_json())
    assert h.run_due() == ["waiting"] and held(h) == []  # dropped, re-add due in a minute
    h.adx.healer_admin = False  # someone removed the healer's Database Admin meanwhile
    h.clock.advance(61)
    assert h.run_due() == ["escalated"]
    state = h.store.load(TARGET.key)
    assert state.escalated and state.escalation_reason.startswith("re-add pending: the healer is not Database Admin")
    assert state.pending_readd is not None and not state.leased(h.clock())  # kept; the sweep may act
    h.clock.advance(180)
    report = sweep(h.healer)  # still not admin: escalated, retried, never stops
    assert report.overdue == [TARGET.key] and held(h) == []
    assert overdue_readds(h.services) == [TARGET.key]  # /api/health counts it
    h.adx.healer_admin = True  # a person granted it back
    assert sweep(h.healer).backing_off == [TARGET.key]  # refused twice: the sweep waits before trying again
    h.clock.advance(30)
    sweep(h.healer)
    assert held(h) == [("ingestors", NOTES)]
    state = h.store.load(TARGET.key)
    # Re-added; the record stays until no drop of the run can land any more, then the sweep discharges it.
    assert state.pending_readd is not None and state.pending_readd.readded_at is not None
    assert state.pending_readd.land_by is not None
    h.clock.now = state.pending_readd.land_by
    sweep(h.healer)
    state = h.store.load(TARGET.key)
    assert state.pending_readd is None and not state.escalated
    h.clock.advance(61)
    outcomes = h.run_due()
    assert "healed" in outcomes, outcomes


def test_a_start_delivered_again_after_its_readd_does_not_drop_twice() -> None:
    h = harness()
    start = new_run(TARGET.key, "timer").to_json()
    assert h.deliver(start) == "waiting"
    h.clock.advance(61)
    h.run_due()  # the re-add; verification scheduled
    assert held(h) == [("ingestors", NOTES)]
    # The host delivers the start again (its first delivery's delete was lost): the run is past its
    # drop, so this only makes sure verification is on its way. Planning afresh would drop again.
    assert h.deliver(start) == "waiting"
    h.clock.advance(61)
    assert "healed" in h.run_due()
    assert h.deliver(start) == "skipped"  # and once more after the run ended
    drops = [entry for entry in h.adx.log if entry[0] == "drop"]
    assert len(drops) == 1, h.adx.log
    assert held(h) == [("ingestors", NOTES)]


def test_a_run_whose_lease_lapsed_while_stalled_does_not_act_again() -> None:
    stall_at = "journal:drop-ingestors:intent"  # right before its drop
    paused, woken = threading.Event(), threading.Event()
    stalled: list[str] = []

    def checkpoint(name: str) -> None:
        if name == stall_at and threading.current_thread().name == "stalled" and not stalled:
            stalled.append(name)
            paused.set()
            woken.wait(10)

    h = harness(checkpoint)
    slow = new_run(TARGET.key, "timer")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            h.deliver(slow.to_json())
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, name="stalled")
    worker.start()
    assert paused.wait(10)  # snapshotted, about to drop; then it stalls past its lease
    h.clock.advance(h.services.settings.lease_seconds + 1)
    h.deliver(new_run(TARGET.key, "timer").to_json())  # another run: finishes the snapshot's re-add first
    state = h.store.load(TARGET.key)
    assert state.pending_readd is None and state.run_id == slow.run_id and state.phase == "verifying"
    woken.set()
    worker.join(10)
    assert not errors, errors
    assert [entry for entry in h.adx.log if entry[0] == "drop"] == []  # the straggler was refused
    assert h.outcomes[-1] == "skipped"  # the straggler's own outcome: refused, nothing done
    assert held(h) == [("ingestors", NOTES)]
    for _ in range(20):  # nothing was refreshed: verification fails, and a retry run refreshes
        h.clock.advance(61)
        h.run_due()
        if h.store.load(TARGET.key).last_outcome == "healed":
            break
    assert h.store.load(TARGET.key).last_outcome == "healed"
    assert len([entry for entry in h.adx.log if entry[0] == "drop"]) == 1
    assert held(h) == [("ingestors", NOTES)]


def test_evidence_that_started_the_run_informs_its_diagnosis() -> None:
    from shared.domain.messages import EvidenceItem

    h = harness()
    iotc = cast(FakeIotc, h.services.iotc)
    iotc.fqn = "aadapp=00000000-0000-4000-8000-000000000000;" + TENANT  # IoT Central sees nothing wrong
    denied = EvidenceItem(source="loganalytics", code="Forbidden", message="Principal is not authorized")
    start = new_run(TARGET.key, "timer", evidence=(denied,))
    assert h.deliver(start.to_json()) == "waiting"  # the logs' denial makes it a refresh, not "healthy"
    assert [entry[0] for entry in h.adx.log] == ["drop"]


def test_healthy_despite_evidence_cools_down_and_without_evidence_does_not() -> None:
    from shared.domain.messages import EvidenceItem

    h = harness()
    h.adx.stale.clear()  # nothing is wrong
    assert h.deliver(new_run(TARGET.key, "timer").to_json()) == "healthy"
    assert h.store.load(TARGET.key).cooldown_until is None
    seen = EvidenceItem(source="alert", code="AlertFired", message="ingestion failures")
    assert h.deliver(new_run(TARGET.key, "alert", evidence=(seen,)).to_json()) == "healthy"
    until = h.store.load(TARGET.key).cooldown_until
    assert until == h.clock() + timedelta(seconds=h.services.settings.healthy_cooldown_seconds)


def test_a_readd_for_a_target_removed_from_configuration_still_re_adds() -> None:
    h = harness()
    h.queue.send(new_run(TARGET.key, "timer").to_json())
    assert h.run_due() == ["waiting"] and held(h) == []
    h.services.targets.clear()  # configuration changed while the principal was dropped
    h.clock.advance(61)
    assert h.run_due() == ["recovered"]  # from the pending record alone: cluster, database, snapshot
    assert held(h) == [("ingestors", NOTES)]
    assert h.queue.dead_letters == []  # a re-add is never dead-lettered


def test_a_renewal_that_ate_the_lease_does_not_act() -> None:
    """The storage round trip that renews the lease runs on the lease it sets: when it was so slow
    that a worst-case step no longer fits in what is left, the run does not act."""
    slow: list[bool] = []

    def checkpoint(name: str) -> None:
        if name == "journal:drop-ingestors:intent" and not slow:
            slow.append(True)  # the next state update (the renewal before the drop) is slow

    h = harness(checkpoint)
    settings = h.services.settings
    update = h.store.update

    def slow_update(key: str, mutate: Any, name: str = "", attempts: int = 10) -> Any:
        result = update(key, mutate, name, attempts)
        if slow == [True]:
            slow.append(False)
            h.clock.advance(settings.lease_seconds - settings.worst_case_step_seconds + 1)
        return result

    h.store.update = slow_update  # type: ignore[method-assign]
    # Not silently: the run says it did not act, and its message comes back after a delay.
    assert h.deliver(new_run(TARGET.key, "timer").to_json()) == "waiting"
    assert "queued again" in h.store.history_rows[-1]["Detail"] and len(h.queue.messages) == 1
    assert [entry for entry in h.adx.log if entry[0] == "drop"] == []  # refused before acting
    assert held(h) == [("ingestors", NOTES)]
    for _ in range(20):  # a later run (the message's retry, or the next cycle's) heals it
        h.clock.advance(settings.lease_seconds + 1)
        if "healed" in h.run_due():
            break
        h.queue.send(new_run(TARGET.key, "timer").to_json())
    assert len([entry for entry in h.adx.log if entry[0] == "drop"]) == 1
    assert held(h) == [("ingestors", NOTES)]


def test_the_sweep_finishes_an_overdue_readd_with_the_export_toggle_and_hands_verification_back() -> None:
    """With HEALER_TOGGLE_EXPORT the sweep, standing in for the run, toggles the export after the
    re-add: it must keep the lease through the toggle and hand it to the run only when the run's
    verification is scheduled (handing it over first refused the toggle and stranded the run)."""
    h = harness()
    h.services.settings = h.services.settings.model_copy(update={"toggle_export": True})
    h.queue.send(new_run(TARGET.key, "timer").to_json())
    assert h.run_due() == ["waiting"] and held(h) == []
    h.queue.messages.clear()  # the re-add message is lost
    h.clock.advance(400)
    report = sweep(h.healer)
    assert report.errors == [] and any("re-added overdue" in line for line in report.done), report
    assert held(h) == [("ingestors", NOTES)]
    state = h.store.load(TARGET.key)
    assert state.phase == "verifying" and state.lease_owner == state.run_id and not owes_enable(state)
    outcomes: list[str] = []
    for _ in range(10):
        h.clock.advance(61)
        outcomes += h.run_due()
        if "healed" in outcomes:
            break
    assert "healed" in outcomes, outcomes


def test_twin_deliveries_never_leave_the_export_toggled_off() -> None:
    """Two deliveries of one run's re-add share its lease. One stalls after enabling the export;
    its twin toggles again, disables, and dies before enabling. The stalled one, woken, must not
    end the toggle (it would clear the pending enable while the export is off): the latest claim
    owns the phase, and the twin's redelivery finishes it."""
    paused, woken = threading.Event(), threading.Event()
    crash_at: list[str] = []

    def checkpoint(name: str) -> None:
        if threading.current_thread().name == "stalled" and name == "journal:enable-export:done":
            paused.set()
            woken.wait(10)
        elif crash_at and name == crash_at[0]:
            crash_at.clear()
            raise Crash(name)

    h = harness(checkpoint)
    h.services.settings = h.services.settings.model_copy(update={"toggle_export": True})
    start = new_run(TARGET.key, "timer")
    assert h.deliver(start.to_json()) == "waiting"
    readd = next(iter(h.queue.messages.values())).body
    h.clock.advance(61)
    errors: list[BaseException] = []

    def stalled() -> None:
        try:
            h.deliver(readd)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=stalled, name="stalled")
    worker.start()
    assert paused.wait(10)  # re-added, disabled, enabled; not yet verifying
    assert h.services.iotc.enabled
    crash_at.append("effect:disable-export")
    with pytest.raises(Crash):
        h.deliver(readd)  # the twin: toggles again and dies with the export off
    assert not h.services.iotc.enabled
    woken.set()
    worker.join(10)
    assert not errors, errors
    state = h.store.load(TARGET.key)
    assert state.phase == "toggling" and owes_enable(state)  # the stalled one stood back
    h.deliver(readd)  # the twin's message comes back
    state = h.store.load(TARGET.key)
    assert h.services.iotc.enabled and not owes_enable(state)
    assert state.phase == "verifying"


def test_a_toggle_the_sweep_died_in_is_queued_again_and_verified() -> None:
    """The sweep re-adds an overdue principal and toggles the export for the run; it dies with the
    export off. No message of the run is left to resume it, so a later sweep queues one."""
    h = harness(crash_once_at("effect:disable-export"))
    settings = h.services.settings = h.services.settings.model_copy(update={"toggle_export": True})
    h.queue.send(new_run(TARGET.key, "timer").to_json())
    assert h.run_due() == ["waiting"]
    h.queue.messages.clear()  # the re-add message is lost
    h.clock.advance(400)
    report = sweep(h.healer)
    assert report.errors and "Crash" in report.errors[0]
    assert held(h) == [("ingestors", NOTES)] and not h.services.iotc.enabled
    h.clock.advance(settings.lease_seconds + settings.sweep_grace_seconds + 1)
    report = sweep(h.healer)
    assert any("finish toggling" in line or "toggling the export" in line for line in report.done), report
    outcomes: list[str] = []
    for _ in range(10):
        outcomes += h.run_due()
        if "healed" in outcomes:
            break
        h.clock.advance(61)
    assert "healed" in outcomes, outcomes
    state = h.store.load(TARGET.key)
    assert h.services.iotc.enabled and not owes_enable(state)
