"""One named test per fault the cloud delivers that once broke an invariant while the rest of the
suite stayed green (the numbered cases of the safety work), on the in-memory stand-ins. Each
failed on the engine before obligations, the run graph and idempotent writes."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from datetime import timedelta
from typing import Any, cast

import pytest

from shared.adapters.iotcentral_model import IotcError
from shared.domain.messages import new_run
from shared.domain.state import Dropped, PendingReadd, TargetState
from shared.runs import phases
from shared.runs.recovery import RECOVERY
from shared.runs.sweep import sweep
from tests.support.model_target import FQN, NOTES, TARGET
from tests.support.run_harness import Crash, crash_once_at, harness, held, hold_in_flight, owes_enable


def drops(h: Any) -> int:
    return len([entry for entry in h.adx.log if entry[0] == "drop"])


def test_case01_a_late_drop_that_lands_after_the_sweeps_readd_is_readded_again() -> None:
    """A worker renews, finds enough lease, then stalls before its `.drop` lands; the sweep re-adds
    the overdue snapshot meanwhile; then the stalled drop lands. The record must outlive it."""
    h = harness()

    paused, woken = hold_in_flight(h, "drop", "stalled")
    worker = threading.Thread(target=lambda: h.deliver(new_run(TARGET.key, "timer").to_json()), name="stalled")
    worker.start()
    assert paused.wait(10)  # the drop is on its way to ADX
    h.clock.advance(h.services.settings.lease_seconds + 1)
    sweep(h.healer)  # overdue: the sweep re-adds (the principal is still listed: nothing to send)
    assert held(h) == [("ingestors", NOTES)]
    woken.set()  # the late drop lands
    worker.join(10)
    assert held(h) == []
    state = h.store.load(TARGET.key)
    assert state.pending_readd is not None, "the re-add record was discharged while a drop could still land"
    settings = h.services.settings
    h.clock.advance(settings.lease_seconds + settings.verify_poll_seconds + 1)  # the verification's lease lapses
    sweep(h.healer)  # the next cycle re-applies
    assert held(h) == [("ingestors", NOTES)]
    assert state.pending_readd.land_by is not None
    h.clock.now = state.pending_readd.land_by
    sweep(h.healer)  # settled and observed: discharged
    assert h.store.load(TARGET.key).pending_readd is None and held(h) == [("ingestors", NOTES)]


def recreating(checkpoint: Any = None) -> Any:
    h = harness(checkpoint)
    h.services.settings = h.services.settings.model_copy(update={"remedy_order": "recreate-destination,refresh"})
    return h


def test_case02_a_new_start_never_takes_over_a_run_caught_mid_recreation() -> None:
    """A run's lease lapses after its copy was created; a new start arrives before the sweep looked.
    It must not plan over the earlier run (two copies, one orphaned): it hands the run to its
    phase's recovery owner, says so in the history, and waits."""
    h = recreating(crash_once_at("effect:create-destination"))
    iotc = cast(Any, h.services.iotc)
    first = new_run(TARGET.key, "timer")
    with pytest.raises(Crash):
        h.deliver(first.to_json())  # the copy exists; the worker died before it moved on
    assert len(iotc.destinations) == 2
    h.clock.advance(h.services.settings.lease_seconds + 1)
    assert h.deliver(new_run(TARGET.key, "http").to_json()) == "skipped"
    assert any(str(r.get("Detail", "")).startswith("handed over") for r in h.store.history_rows)
    for _ in range(10):
        h.clock.advance(61)
        h.run_due()
    copies = sorted(iotc.destinations)
    assert len(copies) == 1 and copies[0].startswith("adx-1-r" + first.run_id[:8]), copies
    assert [r["id"] for r in iotc.refs] == copies  # the export sends to exactly that one
    assert h.store.load(TARGET.key).destination_id == copies[0]


def test_case08_observe_mode_mid_recreation_deletes_the_copy_and_changes_nothing_else() -> None:
    h = recreating(crash_once_at("effect:create-destination"))
    iotc = cast(Any, h.services.iotc)
    start = new_run(TARGET.key, "timer")
    with pytest.raises(Crash):
        h.deliver(start.to_json())
    h.services.settings = h.services.settings.model_copy(update={"mode": "observe"})
    h.clock.advance(h.services.settings.lease_seconds + 1)
    assert h.deliver(start.to_json()) == "skipped"  # the redelivery: discharge only
    assert sorted(iotc.destinations) == ["adx-1"] and [r["id"] for r in iotc.refs] == ["adx-1"]
    assert h.store.load(TARGET.key).phase == phases.DONE


def test_a_late_create_that_lands_after_its_copy_was_deleted_is_deleted_again() -> None:
    """The copy's create is in flight while the run's lease lapses and observe mode is switched on:
    the sweep discharges the re-creation (deletes the copy, which is not there yet), then the late
    create lands. The copy record outlives it, and the next sweep deletes the orphan."""
    h = recreating()
    iotc = cast(Any, h.services.iotc)

    paused, woken = hold_in_flight(h, "create", "stalled")
    worker = threading.Thread(target=lambda: h.deliver(new_run(TARGET.key, "timer").to_json()), name="stalled")
    worker.start()
    assert paused.wait(10)  # the create is on its way to IoT Central
    settings = h.services.settings = h.services.settings.model_copy(update={"mode": "observe"})
    h.clock.advance(settings.lease_seconds + settings.sweep_grace_seconds + 1)
    sweep(h.healer)  # the recovery owner, in observe mode: discharge only
    assert sorted(iotc.destinations) == ["adx-1"]
    woken.set()  # the late create lands: an orphan
    worker.join(10)
    assert len(iotc.destinations) == 2
    owed = h.store.load(TARGET.key).pending_copy
    assert owed is not None and owed.land_by is not None, "the copy record was discharged while a create could land"
    h.clock.now = owed.land_by
    sweep(h.healer)
    assert sorted(iotc.destinations) == ["adx-1"] and [r["id"] for r in iotc.refs] == ["adx-1"]
    assert h.store.load(TARGET.key).pending_copy is None


def test_case03_an_export_disabled_by_a_run_whose_target_left_the_configuration_is_re_enabled() -> None:
    h = harness(crash_once_at("effect:disable-export"))
    h.services.settings = h.services.settings.model_copy(update={"toggle_export": True})
    assert h.deliver(new_run(TARGET.key, "timer").to_json()) == "waiting"
    h.clock.advance(61)
    with pytest.raises(Crash):
        h.run_due()  # re-added, disabled the export, died
    assert not h.services.iotc.enabled
    h.services.targets.clear()  # an app-settings change (and a host restart) removes the target
    h.clock.advance(h.services.settings.lease_seconds + h.services.settings.sweep_grace_seconds + 1)
    report = sweep(h.healer)
    assert h.services.iotc.enabled, report
    assert not owes_enable(h.store.load(TARGET.key))


def test_case04_a_write_that_landed_but_whose_answer_was_lost_is_done_not_a_conflict() -> None:
    h = harness()
    assert h.deliver(new_run(TARGET.key, "timer").to_json()) == "waiting"
    lost: list[str] = []

    def lose(state: TargetState) -> bool:
        if state.phase == phases.VERIFYING and not lost:
            lost.append(state.phase)
            return True
        return False

    h.store.lose_answer = lose
    h.clock.advance(61)
    assert h.run_due() == ["waiting"]  # re-added; the move to verifying landed, its answer did not
    assert lost and h.store.lost_answers == 1
    state = h.store.load(TARGET.key)
    assert state.phase == phases.VERIFYING and len(h.queue.messages) == 1  # verification is on its way
    h.clock.advance(61)
    assert "healed" in h.run_due()


def test_likely_a_lost_answer_on_finish_counts_one_attempt() -> None:
    h = harness()
    h.services.settings = h.services.settings.model_copy(update={"verify_deadline_seconds": 0})
    assert h.deliver(new_run(TARGET.key, "timer").to_json()) == "waiting"
    h.clock.advance(61)
    h.run_due()  # re-added; verification scheduled
    h.adx.stale.add(FQN.lower())  # still denied: verification fails
    h.store.lose_answer = lambda state: state.last_outcome == "not-healed" and h.store.lost_answers == 0
    h.clock.advance(61)
    assert "not-healed" in h.run_due()
    assert len(h.store.load(TARGET.key).attempts) == 1


def test_case07_a_message_that_fails_every_delivery_escalates_its_run_once() -> None:
    from shared.runs.poison import MAX_DEQUEUE_COUNT, escalate_poisoned, last_delivery

    h = harness()
    told: list[str] = []
    h.services.notifier = cast(Any, type("N", (), {"raise_incident": lambda self, i: told.append(i.kind)})())
    msg = new_run(TARGET.key, "timer")
    assert not last_delivery(MAX_DEQUEUE_COUNT - 1) and last_delivery(MAX_DEQUEUE_COUNT)
    assert escalate_poisoned(h.services, msg, RuntimeError("IoT Central answered 403"))
    assert not escalate_poisoned(h.services, msg, RuntimeError("IoT Central answered 403"))  # a twin
    state = h.store.load(TARGET.key)
    assert state.escalated and state.escalation_reason.startswith(f"poisoned: run {msg.run_id}")
    assert told == ["poisoned"]


def test_case07_poison_count_matches_host_json() -> None:
    import json

    from shared.runs.poison import MAX_DEQUEUE_COUNT
    from tests.support.helpers import ROOT

    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == MAX_DEQUEUE_COUNT


def test_case08_observe_mode_switched_on_mid_run_only_discharges() -> None:
    h = harness()
    h.services.settings = h.services.settings.model_copy(update={"toggle_export": True})
    calls: list[bool] = []
    iotc = h.services.iotc
    original = iotc.set_enabled

    def recording(app: str, export_id: str, enabled: bool) -> Any:
        calls.append(enabled)
        return original(app, export_id, enabled)

    iotc.set_enabled = recording
    assert h.deliver(new_run(TARGET.key, "timer").to_json()) == "waiting"  # dropped
    h.services.settings = h.services.settings.model_copy(update={"mode": "observe"})
    h.clock.advance(61)
    h.run_due()
    assert held(h) == [("ingestors", NOTES)]  # what was dropped is put back: a discharge
    assert calls == []  # and nothing else changes: no export toggle
    for _ in range(5):
        h.clock.advance(61)
        h.run_due()
    assert drops(h) == 1 and calls == []


def test_case09_one_app_answering_garbage_does_not_stop_the_cycle() -> None:
    from shared.detection.detector import Detector
    from shared.domain.targets import Target

    h = harness()
    other = Target(**{**TARGET.model_dump(), "app": "fabrikam"})
    h.services.targets[other.key] = other
    iotc = cast(Any, h.services.iotc)

    def exports(app: str) -> list[dict[str, Any]]:
        if app == "contoso":
            raise ValueError("Expecting value: line 1 column 1 (char 0)")  # HTTP 200, a gateway page
        return [{"id": "export-1", "destinations": [{"id": "adx-1"}], "status": "error"}]

    iotc.exports = exports
    iotc.destinations = lambda app: [
        {"id": "adx-1", "type": "dataexplorer@v1", "status": "error", "errors": [{"code": "Forbidden", "message": "x"}]}
    ]
    report = Detector(h.healer, None).run_cycle()
    assert "contoso" in report.failed_apps and "ValueError" in report.failed_apps["contoso"]
    assert report.enqueued == [other.key]
    from shared.detection.detector import last_cycle

    assert last_cycle() is report  # what /api/health reports


def test_case11_evidence_older_than_the_last_verified_healing_starts_nothing() -> None:
    from shared.adapters.loganalytics import FailureGroup
    from shared.detection.detector import Detector

    h = harness()
    h.adx.stale.clear()
    iotc = cast(Any, h.services.iotc)
    iotc.exports = lambda app: [{"id": "export-1", "destinations": [{"id": "adx-1"}], "status": "healthy"}]
    iotc.destinations = lambda app: [{"id": "adx-1", "type": "dataexplorer@v1", "status": "healthy"}]
    healed = h.clock()
    h.store.update(TARGET.key, lambda st: setattr(st, "healed_at", healed))
    h.services.settings = h.services.settings.model_copy(
        update={"log_analytics_workspace_id": "00000000-0000-0000-0000-000000000000"}
    )
    old = FailureGroup(
        TARGET.database,
        TARGET.table,
        "Forbidden",
        12,
        healed - timedelta(minutes=10),
        healed - timedelta(seconds=5),
        "Principal lacks required permissions",
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/y/providers/Microsoft.Kusto/clusters/model",
    )
    logs = cast(Any, type("L", (), {"failed_ingestion": lambda self, w, m: [old]})())
    h.clock.advance(30)
    report = Detector(h.healer, logs).run_cycle()
    assert report.enqueued == [] and TARGET.key in report.stale_evidence
    newer = dataclasses.replace(old, last_seen=h.clock())
    logs.failed_ingestion = lambda w, m: [newer]
    assert Detector(h.healer, logs).run_cycle().enqueued == [TARGET.key]  # a new failure still counts


def test_case12_the_sweep_backs_off_while_its_readd_is_refused() -> None:
    h = harness()
    assert h.deliver(new_run(TARGET.key, "timer").to_json()) == "waiting"
    h.queue.messages.clear()  # the re-add message is lost
    h.adx.healer_admin = False  # the healer's own admin role is gone mid-refresh
    h.clock.advance(400)
    for _ in range(30):  # a 1 s timer for 30 s
        sweep(h.healer)
        h.clock.advance(1)
    assert h.adx.refused <= 5, f"{h.adx.refused} refused re-adds in 30 s"
    assert h.store.load(TARGET.key).escalated


def test_likely_a_state_row_with_an_unknown_field_or_garbage_is_isolated_to_its_target() -> None:
    import json

    h = harness()
    now = h.clock()
    pending = PendingReadd(
        run_id="a" * 32,
        cluster_url=TARGET.cluster_url,
        database=TARGET.database,
        principal=FQN,
        snapshot=(Dropped(role="ingestors", fqn=FQN, notes=NOTES),),
        dropped_at=now,
        due=now,
        correlation_id="a" * 32,
    )
    newer = TargetState(key="gone:export-1:adx-1", pending_readd=pending).to_entity()
    newer["PendingReadd"] = json.dumps({**json.loads(newer["PendingReadd"]), "written_by": "a newer version"})
    newer["SomethingNew"] = "x"
    h.store.entities["gone:export-1:adx-1"] = (newer, 1)
    broken = TargetState(key="broken:export-1:adx-1").to_entity()
    broken["LeaseUntil"] = "not a time"
    h.store.entities["broken:export-1:adx-1"] = (broken, 2)
    h.adx.rows.clear()  # r1 dropped the principal
    h.clock.advance(400)
    report = sweep(h.healer)
    assert any(e.startswith("broken:export-1:adx-1: state unreadable") for e in report.errors), report
    assert held(h) == [("ingestors", NOTES)]  # the other row's re-add went on, from its record alone


def test_likely_the_sweep_stops_before_function_timeout_and_resumes_next_cycle() -> None:
    h = harness()
    now = h.clock()
    for i in range(10):
        pending = PendingReadd(
            run_id=f"{i:032x}",
            cluster_url=f"https://c{i}.westeurope.kusto.windows.net",
            database=TARGET.database,
            principal=FQN,
            snapshot=(Dropped(role="ingestors", fqn=FQN, notes=NOTES),),
            dropped_at=now,
            due=now,
            correlation_id=f"{i:032x}",
        )
        h.store.save(TargetState(key=f"app{i}:export-1:adx-1", pending_readd=pending))
    h.adx.seconds_per_call = 30  # slow clusters
    h.services.settings = h.services.settings.model_copy(update={"sweep_concurrency": 1})
    h.clock.advance(400)
    first = sweep(h.healer)
    assert first.deferred, "the sweep ran past its budget"
    assert (h.clock() - now - timedelta(seconds=400)).total_seconds() < h.services.settings.sweep_budget_seconds + 120
    second = sweep(h.healer)
    assert set(second.overdue) <= set(first.deferred) and second.overdue


def test_likely_a_lease_that_leaves_less_than_a_step_plus_the_skew_does_not_act() -> None:
    """The clock that judges the lease elsewhere may be ahead by the skew, ours behind: a renewal
    leaving a worst-case step but not the skew both ways must not act."""
    slow: list[bool] = []

    def checkpoint(name: str) -> None:
        if name == "journal:drop-ingestors:intent" and not slow:
            slow.append(True)  # the next state update is the renewal before the drop

    h = harness(checkpoint)
    settings = h.services.settings
    update = h.store.update

    def slow_update(key: str, mutate: Any, *args: Any, **kwargs: Any) -> Any:
        result = update(key, mutate, *args, **kwargs)
        if slow == [True]:
            slow.append(False)
            left = settings.worst_case_step_seconds + getattr(settings, "clock_skew_seconds", 30)
            h.clock.advance(settings.lease_seconds - left)
        return result

    h.store.update = slow_update  # type: ignore[method-assign]
    assert h.deliver(new_run(TARGET.key, "timer").to_json()) == "waiting"
    assert drops(h) == 0 and len(h.queue.messages) == 1  # queued again, said so, did not act


def test_every_phase_that_is_not_at_rest_has_a_recovery_owner() -> None:
    missing = [p for p in phases.PHASES if p not in phases.AT_REST and p not in RECOVERY]
    assert missing == [], f"phases without a recovery owner: {missing}"
    assert set(RECOVERY) <= set(phases.PHASES)


def test_transition_refuses_a_move_the_graph_does_not_hold() -> None:
    from shared.runs.base import PhaseConflict
    from shared.runs.fencing import Run

    h = harness()
    run = Run(h.services, TARGET.key, "r1")
    assert run.acquire() is not None
    run.transition(None, phases.PLANNED)
    with pytest.raises(PhaseConflict, match="no move from 'planned' to 'verifying'"):
        run.transition(None, phases.VERIFYING)
    other = Run(h.services, TARGET.key, "r2")
    run.transition(None, phases.SNAPSHOTTED)
    h.clock.advance(h.services.settings.lease_seconds + 1)
    assert other.acquire() is not None
    with pytest.raises(PhaseConflict, match="not taken over"):
        other.transition(None, phases.PLANNED)


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_the_docs_show_the_run_graph_generated_from_the_table(doc: str) -> None:
    import re

    from tests.support.helpers import ROOT

    shown = re.search(r"```mermaid\n(stateDiagram-v2\n.*?)\n```", (ROOT / doc).read_text(), re.S)
    assert shown, f"{doc} has no run graph"
    assert shown.group(1) == phases.mermaid(), f"{doc}'s run graph differs from shared/runs/phases.py MOVES"


def test_case09_an_answer_that_is_not_json_is_an_iot_central_error_naming_the_call() -> None:
    """HTTP 200 with a gateway's HTML page: the adapter says so (status, content type, size; never
    the body), as an IotcError the detection cycle reports for that app."""
    from datetime import UTC, datetime
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from azure.core.credentials import AccessToken

    from shared.adapters.iotcentral import IoTCentralAdapter
    from shared.adapters.iotcentral_model import IotcError

    class Gateway(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>502 Bad Gateway (cached)</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Token:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("token", int(datetime.now(UTC).timestamp()) + 3600)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        adapter = IoTCentralAdapter(f"http://127.0.0.1:{port}/{{subdomain}}", Token(), timeout_s=5, retry_budget_s=1)
        with pytest.raises(IotcError) as info:
            adapter.exports("contoso")
        assert info.value.status == 200 and info.value.code == "UnexpectedBody"
        assert "text/html" in str(info.value) and "not JSON" in str(info.value) and "Gateway" not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()


def _edit_before_repoint(h: Any, edit: Any) -> None:
    """Someone edits the export between the copy's creation and the re-point's write."""
    done: list[str] = []

    def meanwhile(verb: str) -> None:
        if verb == "repoint" and not done:
            done.append(verb)
            edit(cast(Any, h.services.iotc))

    h.adx.before_command = meanwhile


def test_an_export_edited_during_a_recreation_keeps_the_edit_deletes_the_copy_and_escalates_once() -> None:
    h = recreating()
    iotc = cast(Any, h.services.iotc)
    edited = [{"id": "adx-1", "transform": 'import "iotc" as iotc; .'}]
    _edit_before_repoint(h, lambda i: setattr(i, "refs", [dict(r) for r in edited]))
    h.queue.send(new_run(TARGET.key, "timer").to_json())
    assert h.run_due() == ["escalated"]  # a clear outcome, not an exception left to poison
    assert iotc.refs == edited, "the edit was overwritten"
    assert sorted(iotc.destinations) == ["adx-1"], "the copy was left behind"
    state = h.store.load(TARGET.key)
    assert state.escalated and "edited while its destination adx-1 was being re-created" in state.escalation_reason
    assert "not overwritten" in state.escalation_reason and "check the export" in state.escalation_reason
    assert state.destination_id in ("", "adx-1") and state.phase == phases.DONE
    owed = state.pending_copy
    assert owed is not None and owed.land_by is not None  # a late create may still land: kept until then
    h.clock.now = owed.land_by
    sweep(h.healer)  # settled: discharged, the export untouched
    h.run_due()
    state = h.store.load(TARGET.key)
    assert state.pending_copy is None and iotc.refs == edited and sorted(iotc.destinations) == ["adx-1"]
    assert h.queue.poisoned() == 0
    assert [r["Outcome"] for r in h.store.history_rows].count("escalated") == 1


def test_an_export_pointed_at_the_copy_by_someone_else_is_left_as_it_is() -> None:
    h = recreating()
    iotc = cast(Any, h.services.iotc)

    def to_copy(i: Any) -> None:
        i.refs = [{"id": next(d for d in i.destinations if d != "adx-1")}]

    _edit_before_repoint(h, to_copy)
    assert h.deliver(new_run(TARGET.key, "timer").to_json()) == "escalated"
    assert len(iotc.destinations) == 2 and iotc.refs[0]["id"] != "adx-1"  # nothing deleted, nothing re-written
    state = h.store.load(TARGET.key)
    assert state.pending_copy is None and "left as they are" in state.escalation_reason
    h.clock.advance(h.services.settings.act_window_seconds + 1)
    sweep(h.healer)
    assert len(iotc.destinations) == 2


@pytest.mark.parametrize("iotc_refuses_unknown_ids", [False, True])
def test_a_late_repoint_that_lands_after_its_copy_was_deleted_is_pointed_back(iotc_refuses_unknown_ids: bool) -> None:
    """The re-point is in flight while the run's lease lapses and observe mode is switched on: the
    sweep deletes the copy (the export does not send to it yet), then the late re-point lands on a
    destination that is gone. Whether IoT Central accepts a reference to a missing destination is
    not documented: both ways, the export must end on the old destination and it must never be
    deleted (the export left with no destination at all)."""
    h = recreating()
    iotc = cast(Any, h.services.iotc)
    iotc.refuses_unknown_ids = iotc_refuses_unknown_ids

    def deliver() -> None:
        with contextlib.suppress(IotcError):  # a refused re-point fails the invocation: the host retries
            h.deliver(new_run(TARGET.key, "timer").to_json())

    paused, woken = hold_in_flight(h, "repoint", "stalled")
    worker = threading.Thread(target=deliver, name="stalled")
    worker.start()
    assert paused.wait(10)  # the re-point is on its way to IoT Central
    settings = h.services.settings = h.services.settings.model_copy(update={"mode": "observe"})
    h.clock.advance(settings.lease_seconds + settings.sweep_grace_seconds + 1)
    sweep(h.healer)  # the recovery owner, in observe mode: the copy is deleted
    assert sorted(iotc.destinations) == ["adx-1"]
    woken.set()  # the late re-point lands (or is refused)
    worker.join(10)
    owed = h.store.load(TARGET.key).pending_copy
    assert owed is not None and owed.land_by is not None, "the copy record was discharged while a re-point could land"
    for _ in range(3):
        h.clock.now = max(h.clock.now, owed.land_by) + timedelta(seconds=61)
        sweep(h.healer)
    assert sorted(iotc.destinations) == ["adx-1"], "the export's only destination was deleted"
    assert [r["id"] for r in iotc.refs] == ["adx-1"]
    assert h.store.load(TARGET.key).pending_copy is None


def test_a_twin_that_re_points_while_the_first_re_point_is_in_flight_is_not_taken_for_a_person() -> None:
    """At-least-once delivery: one delivery's re-point is in flight (its read of the export done,
    its write not yet), a twin delivery of the same run re-points and dies. The first one's write
    then meets the changed export: that is the run's own twin, not a person's edit. It must not
    escalate, forget the copy and leave two destinations: it stands back, and the run finishes."""
    h = recreating(crash_once_at("effect:repoint-export"))
    iotc = cast(Any, h.services.iotc)
    start = new_run(TARGET.key, "timer").to_json()

    paused, woken = hold_in_flight(h, "repoint", "first")
    outcomes: list[str] = []
    first = threading.Thread(target=lambda: outcomes.append(h.deliver(start)), name="first")
    first.start()
    assert paused.wait(10)  # the first delivery's re-point is on its way
    with pytest.raises(Crash):
        h.deliver(start)  # the twin re-points (it lands) and dies right after
    assert [r["id"] for r in iotc.refs] != ["adx-1"]
    woken.set()
    first.join(10)
    assert outcomes == ["skipped"], outcomes  # it stood back
    assert not h.store.load(TARGET.key).escalated
    for _ in range(10):  # the twin's message comes back; verification follows
        h.clock.advance(h.services.settings.lease_seconds + 1)
        h.run_due()
        sweep(h.healer)
    copies = sorted(iotc.destinations)
    assert len(copies) == 1 and copies[0] != "adx-1", copies
    assert [r["id"] for r in iotc.refs] == copies
    assert h.store.load(TARGET.key).pending_copy is None


@pytest.mark.parametrize("iotc_refuses_unknown_ids", [False, True])
def test_a_run_resumed_after_a_discharge_deleted_its_copy_puts_the_copy_back_first(
    iotc_refuses_unknown_ids: bool,
) -> None:
    """A run dies once its copy exists; observe mode is switched on and the sweep discharges the
    re-creation (deletes the copy) but dies before recording it; enforce mode again, the run's
    message comes back and resumes. It must not point the export at the deleted copy and then
    delete the old destination (the export left with none): the copy is put back first."""
    crashes = ["phase:destination-created", "effect:delete-copy"]

    def checkpoint(name: str) -> None:
        if crashes and name == crashes[0]:
            crashes.pop(0)
            raise Crash(name)

    h = recreating(checkpoint)
    iotc = cast(Any, h.services.iotc)
    iotc.refuses_unknown_ids = iotc_refuses_unknown_ids
    start = new_run(TARGET.key, "timer").to_json()
    with pytest.raises(Crash):
        h.deliver(start)
    enforce = h.services.settings
    h.services.settings = enforce.model_copy(update={"mode": "observe"})
    h.clock.advance(enforce.lease_seconds + enforce.sweep_grace_seconds + 1)
    assert sweep(h.healer).errors  # the sweep deleted the copy and died
    assert sorted(iotc.destinations) == ["adx-1"]
    h.services.settings = enforce
    h.clock.advance(enforce.lease_seconds + 1)
    h.deliver(start)  # the run's own message, delivered again
    for _ in range(15):
        h.clock.advance(61)
        h.run_due()
        sweep(h.healer)
    copies = sorted(iotc.destinations)
    assert len(copies) == 1, f"destinations left: {copies}"
    assert [r["id"] for r in iotc.refs] == copies
    assert h.store.load(TARGET.key).pending_copy is None
