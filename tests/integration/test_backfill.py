"""Backfill end to end: an outage across two templates with a filter and a jq transform, healed,
then backfilled from the query API through queued ingestion on Azurite: nothing missing, nothing
twice, a second backfill adds nothing, and a crash in the middle resumes to the same result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox import backfill_fleet
from sandbox.azurite import Azurite
from sandbox.waiting import wait_for
from sandbox.world import World
from shared.domain.messages import new_run
from tests.support.fleet import KEY, TABLE
from tests.support.healer_env import Crash, Worker, healer_for, inject_and_wait, make_settings, queue_client
from tests.support.helpers import wait_until
from tests.support.kusto_parser import parse_all

pytestmark = pytest.mark.integration


def _setup(world: World, azurite: Azurite, **overrides: Any) -> tuple[Any, Worker]:
    settings = make_settings(world, azurite, backfill="on", **overrides)
    healer = healer_for(settings)
    return healer, Worker(healer, queue_client(settings))


def _outage(world: World, worker: Worker) -> datetime:
    wait_until(lambda: len(world.cluster.table("devicedata", TABLE).rows) > 20, 10, "rows before the outage")
    broke = datetime.now(UTC)
    inject_and_wait(world, "principal-removed", "fleet")

    def lost() -> int:
        return sum(1 for r in world.workspace.tables["FailedIngestion"] if r["Table"] == TABLE)

    wait_until(lambda: lost() >= 12, 10, "batches lost in the outage")  # over two seconds of telemetry
    worker.enqueue_start(KEY)
    return broke


def _settled(world: World, until: datetime) -> dict[str, int]:
    """Compare once queued ingestion has drained (the worker polls Azurite)."""
    result: dict[str, int] = {}

    def done() -> bool:
        result.update(backfill_fleet.compare(world, "fleet", TABLE, until))
        return result["rows_missing"] == 0 and result["rows_duplicated"] == 0

    wait_for(done, 15)  # the caller asserts on the counts, which say more than a timeout would
    return result


def _gap_end(healer: Any) -> datetime:
    gap = healer.services.store.load(KEY).gap
    assert gap and gap["status"] == "done", gap
    return datetime.fromisoformat(gap["end"].replace("Z", "+00:00"))


def test_outage_is_backfilled_exactly_once_and_a_second_backfill_adds_nothing(
    fleet_world: World, azurite: Azurite
) -> None:
    world = fleet_world
    healer, worker = _setup(world, azurite)
    broke = _outage(world, worker)
    worker.run_until(lambda: any(o.status == "backfilled" for o in worker.outcomes), 60)
    gap = healer.services.store.load(KEY).gap
    assert gap["rows_missing"] > 0 and gap["rows_ingested"] == gap["rows_missing"], gap
    # The gap starts at the last row before the outage and ends at the first after the repair.
    assert datetime.fromisoformat(gap["last_good"]) <= broke < datetime.fromisoformat(gap["first_new"]), gap
    assert any("messageProperties" in n for n in gap["unrecoverable"])
    until = _gap_end(healer)
    before = _settled(world, until)
    assert before["rows_missing"] == 0 and before["rows_duplicated"] == 0, before
    assert before["rows_expected"] > 0

    # Every query the healer sent kept to the documented limits; everything it sent to ADX is Kusto.
    assert world.iotc.queries and all(len(q) <= 350 and "*" not in q for q in world.iotc.queries)
    assert world.iotc.query_throttle.refused == 0
    emitted = list(dict.fromkeys(healer.services.kusto(world.cluster.url).sent))
    assert any("cslschema" in t for t in emitted) and any(">= datetime(" in t for t in emitted)
    assert [(r.text, r.errors) for r in parse_all(emitted) if not r.ok] == []

    # The same window again: everything is already there.
    start = datetime.fromisoformat(gap["start"].replace("Z", "+00:00"))
    again = new_run(KEY, "cli").next("backfill", window_start=start, window_end=until, backfill_mode="on")
    outcome = healer.handle(again)
    assert outcome.status == "backfilled", outcome
    assert healer.services.store.load(KEY).gap["rows_ingested"] == 0
    assert backfill_fleet.compare(world, "fleet", TABLE, until) == before


@pytest.mark.parametrize("point", ["effect:backfill-ingest"])  # sent, not yet journaled: the worst moment
def test_a_crash_in_the_middle_of_a_backfill_resumes_to_zero_missing_zero_duplicated(
    fleet_world: World, azurite: Azurite, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.backfill import engine
    from shared.backfill.progress import tag_for
    from shared.runs import backfill

    # Small windows over a short gap: several windows and several chunks, in seconds.
    monkeypatch.setattr(backfill, "GAP_MARGIN", timedelta(seconds=1))
    monkeypatch.setattr(engine, "FIRST_WINDOW", timedelta(seconds=1))
    monkeypatch.setattr(engine, "next_size", lambda previous, records: timedelta(seconds=1))
    world = fleet_world
    # The redo waits for the first send to land (the sandbox ingests within a poll of 0.2 s).
    healer, worker = _setup(world, azurite, backfill_settle_seconds=2)
    seen: list[str] = []

    def crash(name: str) -> None:
        seen.append(name)
        if name == point and seen.count(name) == 2:  # die at the second chunk, after the first landed
            raise Crash(point)

    healer.services.checkpoint = crash
    _outage(world, worker)
    worker.run_until(lambda: any(o.status == "backfilled" for o in worker.outcomes), 90)
    gap = healer.services.store.load(KEY).gap
    assert worker.crashes == 1, gap
    assert gap["status"] == "done" and gap["rows_ingested"] == gap["rows_missing"] > 0, gap  # counted once
    assert seen.count("effect:backfill-ingest") >= 2, "the gap was not spread over several chunks"
    result = _settled(world, _gap_end(healer))
    assert result["rows_missing"] == 0 and result["rows_duplicated"] == 0, result
    # The chunk sent before the crash was read back, not sent again; every chunk carried the run's
    # one tag (not one per chunk).
    assert world.ingestion is not None and world.ingestion.skipped_blobs == 0
    assert world.ingestion.ingested_blobs == seen.count("effect:backfill-ingest")
    tags = {t for t in world.cluster.table("devicedata", TABLE).ingest_by_tags if "iotc-adx-healer" in t}
    assert tags == {f"ingest-by:{tag_for(healer.services.store.load(KEY).gap['run_id'])}"}, tags


def test_a_chunk_sent_twice_with_its_tag_is_ingested_once(fleet_world: World, credential: Any) -> None:
    """ingestIfNotExists through the real azure-kusto-ingest client, Azurite and the worker."""
    from shared.adapters.kusto_ingest import Ingestor

    world = fleet_world
    rows = [{"DeviceId": "probe", "Timestamp": "2026-01-01T00:00:00.000Z", "Values": {"a": 1}}]
    ingestor = Ingestor(world.cluster.url, credential)
    assert ingestor.ingest("devicedata", TABLE, rows, "chunk-1", streaming=False, if_not_exists=True) == "queued"
    assert ingestor.ingest("devicedata", TABLE, rows, "chunk-1", streaming=False, if_not_exists=True) == "queued"
    assert world.ingestion is not None
    wait_until(lambda: world.ingestion.ingested_blobs + world.ingestion.skipped_blobs == 2, 10, "both blobs handled")
    probes = [r for r in world.cluster.table("devicedata", TABLE).rows if r["DeviceId"] == "probe"]
    assert len(probes) == 1 and world.ingestion.skipped_blobs == 1
    assert "ingest-by:chunk-1" in world.cluster.table("devicedata", TABLE).ingest_by_tags


BY_NAME = {
    "Name": "by-name",
    "Kind": "Json",
    "Mapping": [{"column": c, "Properties": {"Path": f"$.{c}"}} for c, _ in backfill_fleet.COLUMNS],
    "LastUpdatedOn": "2026-11-01T00:00:00Z",
}


def test_streaming_needs_the_effective_policy_and_a_json_mapping(fleet_world: World, credential: Any) -> None:
    """The table's own streaming-ingestion policy, or its database's when the table has none; JSON
    streams only through a pre-created mapping. Refused outright, a chunk goes queued instead."""
    from shared.adapters.kusto_ingest import Ingestor

    world = fleet_world
    database, table = world.cluster.database("devicedata"), world.cluster.table("devicedata", TABLE)
    table.mappings.append(BY_NAME)
    database.streaming_ingestion = table.streaming_ingestion = False
    ingestor = Ingestor(world.cluster.url, credential)
    row = [{"DeviceId": "refused", "Timestamp": "2026-01-01T00:00:00Z"}]
    assert ingestor.ingest("devicedata", TABLE, row, "s-0", streaming=True, mapping="by-name") == "queued"
    for tag, on in (("s-1", table), ("s-2", database)):
        database.streaming_ingestion = table.streaming_ingestion = False
        on.streaming_ingestion = True
        rows = [{"DeviceId": f"streamed-{tag}", "Timestamp": "2026-01-01T00:00:00.000Z"}]
        assert ingestor.ingest("devicedata", TABLE, rows, tag, streaming=True, mapping="by-name") == "streamed"
    streamed = sorted(r["DeviceId"] for r in table.rows if str(r["DeviceId"]).startswith("streamed"))
    assert streamed == ["streamed-s-1", "streamed-s-2"]
    # No mapping named: refused by the service (JSON needs one), sent queued.
    rows = [{"DeviceId": "no-mapping", "Timestamp": "2026-01-01T00:00:00.000Z"}]
    assert ingestor.ingest("devicedata", TABLE, rows, "s-3", streaming=True, mapping="nope") == "queued"
    assert world.ingestion is not None
    wait_until(lambda: world.ingestion.ingested_blobs >= 2, 10, "the queued chunks")
    assert sorted(r["DeviceId"] for r in table.rows if r["DeviceId"] in ("refused", "no-mapping")) == [
        "no-mapping",
        "refused",
    ]


def test_cli_backfill_dry_run_then_for_real(
    fleet_world: World, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m shared backfill TARGET --from --to [--dry-run]` over a window people fixed by hand."""
    import json
    import uuid

    from click.testing import CliRunner

    from sandbox.healer_config import app_settings
    from shared.cli import main

    world = fleet_world
    for name, value in app_settings(
        world, azurite, HEALER_TABLE_PREFIX=f"c{uuid.uuid4().hex[:8]}", HEALER_BACKFILL="on"
    ).items():
        monkeypatch.setenv(name, value)
    wait_until(lambda: len(world.cluster.table("devicedata", TABLE).rows) > 20, 10, "rows before the outage")
    start = datetime.now(UTC) - timedelta(seconds=5)
    inject_and_wait(world, "principal-removed", "fleet")
    failures = len(world.workspace.tables["FailedIngestion"])
    wait_until(lambda: len(world.workspace.tables["FailedIngestion"]) >= failures + 5, 10, "an outage")
    world.clear("principal-removed", "fleet")  # people fixed it; the rows are still missing
    wait_until(lambda: world.iotc.apps["fleet"].exports["export-1"].get("status") == "healthy", 10, "healed")
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    args = ["--json", "backfill", KEY, "--from", start.isoformat(), "--to", end.isoformat()]

    planned = CliRunner().invoke(main, [*args, "--dry-run"], standalone_mode=False)
    assert planned.exit_code in (None, 0) or isinstance(planned.exception, SystemExit)
    report = json.loads(planned.output)
    assert report["outcome"] == "backfill-planned" and report["gap"]["rows_missing"] > 0
    assert report["gap"]["rows_ingested"] == 0
    assert planned.exception is not None and planned.exception.args[0] == 3  # a problem found: rows missing

    # On a terminal (TTY_COMPATIBLE=1 tells rich so) a dry run shows its windows going by.
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    shown = CliRunner().invoke(main, [*args[1:], "--dry-run"], standalone_mode=False)
    assert "rows/s" in shown.output and "windows" in shown.output and "backfill-planned" in shown.output
    monkeypatch.delenv("TTY_COMPATIBLE")

    done = CliRunner().invoke(main, args, standalone_mode=False)
    report = json.loads(done.output)
    assert report["outcome"] == "backfilled" and report["gap"]["rows_ingested"] == report["gap"]["rows_missing"] > 0
    result = _settled(world, end)
    assert result["rows_missing"] == 0 and result["rows_duplicated"] == 0, result


def test_an_invocation_is_bounded_and_the_rest_continues_on_the_queue(fleet_world: World, azurite: Azurite) -> None:
    from shared.runs.backfill import Backfill, backfill_message
    from shared.runs.fencing import Run
    from shared.runs.remedy import Step

    world = fleet_world
    healer, worker = _setup(world, azurite)
    wait_until(lambda: len(world.cluster.table("devicedata", TABLE).rows) > 20, 10, "some telemetry")
    end = datetime.now(UTC)
    msg = backfill_message(KEY, end - timedelta(seconds=30), end, "plan", "cli", "test")
    step = Step(healer, Run(healer.services, KEY, msg.run_id), healer.target(KEY), msg)
    outcome = Backfill().begin(step, healer.services.store.load(KEY), budget_s=0)
    assert outcome.status == "waiting"  # no time at all: nothing done, the rest handed on
    assert healer.services.store.load(KEY).phase == "backfilling" and healer.services.store.load(KEY).leased(
        datetime.now(UTC)
    )
    worker.run_until(lambda: any(o.status == "backfill-planned" for o in worker.outcomes), 30)
    state = healer.services.store.load(KEY)
    assert state.gap and state.gap["status"] == "done" and state.gap["rows_missing"] == 0  # nothing was lost
    assert state.phase == "done" and not state.leased(datetime.now(UTC))


def test_what_cannot_be_recovered_is_said_and_an_unknown_filter_is_refused(
    fleet_world: World, azurite: Azurite
) -> None:
    world = fleet_world
    healer, _ = _setup(world, azurite)
    now = datetime.now(UTC)
    old = new_run(KEY, "cli").next(  # the first hour of it is older than the 7 days IoT Central keeps
        "backfill",
        window_start=now - timedelta(days=7, hours=1),
        window_end=now - timedelta(days=6, hours=23),
        backfill_mode="plan",
    )
    outcome = healer.handle(old)
    assert outcome.status == "backfill-planned", outcome
    assert "unrecoverable" in outcome.detail  # never "nothing missing"
    gap = healer.services.store.load(KEY).gap
    notes = gap["unrecoverable"]
    assert any("older than IoT Central's retention of 7 days" in n for n in notes), notes
    assert 3598 <= gap["unrecoverable_s"] <= 3601, gap
    assert any("messageProperties" in n for n in notes)

    world.iotc.apps["fleet"].exports["export-1"]["filter"] = 'SELECT * FROM devices WHERE $id = "a" OR $id = "b"'
    refused = healer.handle(new_run(KEY, "cli").next("backfill", window_start=now, window_end=now, backfill_mode="on"))
    assert refused.status == "backfill-refused" and "OR" in refused.detail
    assert healer.services.store.load(KEY).gap["status"] == "refused"


def test_observe_mode_only_plans(fleet_world: World, azurite: Azurite) -> None:
    from shared.runs.backfill import backfill_mode

    world = fleet_world
    healer, _ = _setup(world, azurite, mode="observe")
    assert backfill_mode(healer.services.settings, "on") == "plan"
    before = len(world.cluster.table("devicedata", TABLE).rows)
    now = datetime.now(UTC)
    outcome = healer.handle(
        new_run(KEY, "cli").next(
            "backfill", window_start=now - timedelta(minutes=1), window_end=now, backfill_mode="on"
        )
    )
    assert outcome.status == "backfill-planned"
    assert world.ingestion is not None and world.ingestion.ingested_blobs == 0
    assert len(world.cluster.table("devicedata", TABLE).rows) >= before


def test_a_table_with_streaming_ingestion_and_a_json_mapping_is_backfilled_by_streaming(
    fleet_world: World, azurite: Azurite
) -> None:
    world = fleet_world
    healer, _ = _setup(world, azurite)
    world.cluster.table("devicedata", TABLE).streaming_ingestion = True
    world.cluster.table("devicedata", TABLE).mappings.append(BY_NAME)  # streaming JSON needs one
    wait_until(lambda: len(world.cluster.table("devicedata", TABLE).rows) > 20, 10, "rows before the outage")
    start = datetime.now(UTC) - timedelta(seconds=3)
    inject_and_wait(world, "principal-removed", "fleet")
    failures = len(world.workspace.tables["FailedIngestion"])
    wait_until(lambda: len(world.workspace.tables["FailedIngestion"]) >= failures + 5, 10, "an outage")
    world.clear("principal-removed", "fleet")
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    assert world.ingestion is not None
    queued_before = world.ingestion.ingested_blobs
    msg = new_run(KEY, "cli").next("backfill", window_start=start, window_end=end, backfill_mode="on")
    outcome = healer.handle(msg)
    assert outcome.status == "backfilled", outcome
    progress = healer.services.store.load(KEY).gap
    assert progress["rows_ingested"] > 0 and progress["ingestion"] == "streamed"
    # Streamed: in the table when the call returned, nothing went through the queue.
    assert world.ingestion.ingested_blobs == queued_before
    result = backfill_fleet.compare(world, "fleet", TABLE, end)
    assert result["rows_missing"] == 0 and result["rows_duplicated"] == 0, result


def _hand_outage(world: World) -> tuple[datetime, datetime]:
    """An outage people fixed by hand: (a time before it, a time after it), rows still missing."""
    wait_until(lambda: len(world.cluster.table("devicedata", TABLE).rows) > 20, 10, "rows before the outage")
    start = datetime.now(UTC) - timedelta(seconds=2)
    inject_and_wait(world, "principal-removed", "fleet")
    failures = len(world.workspace.tables["FailedIngestion"])
    wait_until(lambda: len(world.workspace.tables["FailedIngestion"]) >= failures + 5, 10, "an outage")
    world.clear("principal-removed", "fleet")
    wait_until(lambda: world.iotc.apps["fleet"].exports["export-1"].get("status") == "healthy", 10, "healed")
    return start, datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)


def test_twin_deliveries_of_a_backfill_message_ingest_once_and_count_once(fleet_world: World, azurite: Azurite) -> None:
    """At-least-once delivery: the same backfill message runs twice at the same time under the
    run's one lease. The twin that claimed the run last is the only one that ingests; the other
    stands back before its next act, and the gap's counts are the true ones."""
    world = fleet_world
    # The twin redoes the journaled chunk at once (a redo's wait for an earlier send to settle is
    # the crash test's): here the first delivery had not sent it yet.
    healer, _ = _setup(world, azurite, backfill_settle_seconds=0)
    start, end = _hand_outage(world)
    msg = new_run(KEY, "cli").next("backfill", window_start=start, window_end=end, backfill_mode="on")
    outcomes: list[Any] = []
    sends: list[str] = []  # who sent each chunk
    turn = ["first"]
    real_ingestor = healer.services.ingestor

    class Counting:
        def __init__(self, url: str) -> None:
            self.inner = real_ingestor(url)

        def ingest(self, *args: Any, **kwargs: Any) -> str:
            sends.append(turn[0])
            return str(self.inner.ingest(*args, **kwargs))

    healer.services.ingestor = Counting

    def twin_arrives(name: str) -> None:
        if name == "backfill:intent" and turn == ["first"]:  # the first is about to send its chunk
            turn[0] = "twin"
            outcomes.append(healer.handle(msg))  # the twin delivery runs meanwhile, to the end
            turn[0] = "first-again"

    healer.services.checkpoint = twin_arrives
    outcomes.insert(0, healer.handle(msg))
    assert turn == ["first-again"], "the first delivery never reached an ingestion"
    assert outcomes[1].status == "backfilled", outcomes
    assert outcomes[0].status == "skipped", outcomes  # it stood back: the twin had claimed the run
    assert "first-again" not in sends and "twin" in sends, sends
    gap = healer.services.store.load(KEY).gap
    assert gap["status"] == "done" and gap["rows_ingested"] == gap["rows_missing"] > 0, gap
    result = _settled(world, end)
    assert result["rows_missing"] == 0 and result["rows_duplicated"] == 0, result


def test_a_template_leaving_the_filter_between_invocations_does_not_shift_the_others(
    fleet_world: World, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress is kept per template id: after the first template is done and the second begun,
    the first leaves the export's filter; the second still resumes at its own cursor."""
    from shared.backfill import engine

    monkeypatch.setattr(engine, "FIRST_WINDOW", timedelta(seconds=1))
    monkeypatch.setattr(engine, "next_size", lambda previous, records: timedelta(seconds=1))
    world = fleet_world
    healer, _ = _setup(world, azurite)
    start, end = _hand_outage(world)
    seconds = int((end - start.replace(microsecond=0)).total_seconds())  # one window per second
    done: list[str] = []

    def crash(name: str) -> None:
        if name == "backfill:window-done":
            done.append(name)
            if len(done) == seconds + 2:  # the pump's windows, then two of the thermostat's
                raise Crash(name)

    healer.services.checkpoint = crash
    msg = new_run(KEY, "cli").next("backfill", window_start=start, window_end=end, backfill_mode="on")
    with pytest.raises(Crash):
        healer.handle(msg)
    progress = healer.services.store.read_journal(KEY, msg.run_id)
    saved = next(r["Data"] for r in progress if r["Step"] == "backfill" and r["Status"] == "progress")
    assert saved["templates"] == [backfill_fleet.PUMP, backfill_fleet.THERMOSTAT], saved  # the pump's are done
    # The pump leaves the export's filter before the message is delivered again.
    world.iotc.apps["fleet"].exports["export-1"]["filter"] = f"SELECT * FROM {backfill_fleet.THERMOSTAT}"
    healer.services.checkpoint = lambda name: None
    outcome = healer.handle(msg)
    assert outcome.status == "backfilled", outcome
    _settled_thermostats(world, start, end)


def _settled_thermostats(world: World, start: datetime, end: datetime) -> None:
    from collections import Counter

    def rows() -> tuple[Counter[Any], Counter[Any]]:
        expected = Counter(
            backfill_fleet.row_key(r)
            for r in world.delivery.expected_rows("fleet", start, end)
            if r["Template"] == backfill_fleet.THERMOSTAT
        )
        with world.cluster.lock:
            actual = Counter(
                backfill_fleet.row_key(r)
                for r in world.cluster.table("devicedata", TABLE).rows
                if r["Template"] == backfill_fleet.THERMOSTAT and start <= r["Timestamp"] <= end
            )
        return expected, actual

    wait_for(lambda: rows()[0] == rows()[1], 15)
    expected, actual = rows()
    assert sum(expected.values()) > 0
    assert (sum((expected - actual).values()), sum((actual - expected).values())) == (0, 0)


def test_a_streamed_chunk_whose_answer_is_lost_fails_the_window_and_is_never_sent_twice(
    fleet_world: World, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk lands, the answer is a 503: whether it landed is unknown to the sender. The window
    fails visibly (no blind second send, no fallback that would send it again queued); the
    redelivered message reads the table back and finds the rows there."""
    from sandbox.adx import server as adx_server
    from shared.adapters.kusto_ingest import IngestUncertain

    world = fleet_world
    healer, _ = _setup(world, azurite)
    world.cluster.table("devicedata", TABLE).streaming_ingestion = True
    world.cluster.table("devicedata", TABLE).mappings.append(BY_NAME)
    start, end = _hand_outage(world)
    stream = adx_server.KustoService._stream
    answers: list[int] = []

    def lost_answer(self: Any, request: Any, request_id: str) -> Any:
        response = stream(self, request, request_id)  # ingested
        answers.append(response.status_code)
        return adx_server.transport_error(503, 0) if len(answers) == 1 else response

    monkeypatch.setattr(adx_server.KustoService, "_stream", lost_answer)
    assert world.ingestion is not None
    queued_before = world.ingestion.ingested_blobs
    msg = new_run(KEY, "cli").next("backfill", window_start=start, window_end=end, backfill_mode="on")
    with pytest.raises(IngestUncertain):
        healer.handle(msg)
    outcome = healer.handle(msg)  # delivered again
    assert outcome.status == "backfilled", outcome
    assert answers[0] == 200 and world.ingestion.ingested_blobs == queued_before  # nothing went queued
    gap = healer.services.store.load(KEY).gap
    assert gap["rows_ingested"] == gap["rows_missing"] > 0, gap
    result = backfill_fleet.compare(world, "fleet", TABLE, end)
    assert result["rows_missing"] == 0 and result["rows_duplicated"] == 0, result
