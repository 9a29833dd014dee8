"""Backfill's pure logic: query planning within the documented limits, re-joining split answers,
rebuilding messages in Microsoft's documented shapes, the export filter, the jq transform with
IoT Central's `iotc` module, and dedupe against rows already in the table."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.backfill import dedupe
from shared.backfill.export_filter import ExportFilter, FilterUnsupported
from shared.backfill.planner import (
    MAX_CHARS,
    MAX_ITEMS,
    RECORD_CAP,
    TARGET_RECORDS,
    PlanError,
    Window,
    next_size,
    query_text,
    split_select,
)
from shared.backfill.records import Message, join_parts, messages_from, transform_input
from shared.backfill.templates import Capability, TemplateInfo, parse_template
from shared.backfill.transform import TransformError, compile_transform, rows_for

T0 = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def caps(*paths: str) -> list[Capability]:
    out = []
    for path in paths:
        component, _, name = path.rpartition(".")
        out.append(Capability(path, name, component or None, f"dtmi:x:{name};1"))
    return out


def test_select_lists_are_split_within_fifteen_items_and_350_characters() -> None:
    telemetry = caps(*[f"t{n}" for n in range(40)])
    groups = split_select("dtmi:contoso:pump;1", telemetry)
    assert [p for g in groups for p in g] == [c.path for c in telemetry]
    for group in groups:
        text = query_text("dtmi:contoso:pump;1", group, T0, T0 + timedelta(hours=1))
        assert len(group) + 2 <= MAX_ITEMS and len(text) <= MAX_CHARS and "*" not in text
    long_names = caps(*[f"component{n}.averyveryverylongtelemetryname{n:03d}" for n in range(12)])
    for group in split_select("dtmi:contoso:pump;1", long_names):
        assert len(query_text("dtmi:contoso:pump;1", group, T0, T0)) <= MAX_CHARS
    with pytest.raises(PlanError, match="350"):
        split_select("dtmi:" + "a" * 190 + ";1", caps("x" * 60 + "." + "y" * 60))
    for template, names in (
        ("dtmi:x;1 WHERE 1=1", ["t"]),
        ("dtmi:x;1", ["t, $id"]),
        ("dtmi:x;1", ["t') OR ('"]),
        ("'dtmi:x;1'", ["t"]),
    ):
        with pytest.raises(PlanError, match="not put into a query"):
            split_select(template, caps(*names))
    assert split_select("dtmi:modelDefinition:y5zk2yqblv:en9xfxjif", caps("RootTelemetry")) == [["RootTelemetry"]]


def test_a_query_asks_one_second_more_at_the_start_and_windows_own_their_start() -> None:
    text = query_text("dtmi:c:t;1", ["temperature"], T0, T0 + timedelta(minutes=5))
    assert text == (
        "SELECT $id, $ts, temperature FROM dtmi:c:t;1 WHERE WITHIN_WINDOW('2026-11-27T06:59:59Z/2026-11-27T07:05:00Z')"
    )
    window = Window(T0, T0 + timedelta(seconds=10))
    assert window.owns(T0) and not window.owns(T0 + timedelta(seconds=10))
    first, second = window.halves()
    assert (first.start, first.end, second.end) == (T0, T0 + timedelta(seconds=5), window.end)
    with pytest.raises(PlanError):
        Window(T0, T0 + timedelta(seconds=1)).halves()
    # 19,000 records in a query of 100 s (99 s and the second before): 190/s, so 50 s next.
    assert next_size(timedelta(seconds=99), 19_000) == timedelta(seconds=49)
    for per_second in (1, 7, 150, 300, 999):  # steady density: the next query stays under the target
        size = next_size(timedelta(seconds=60), 61 * per_second)
        assert (size.total_seconds() + 1) * per_second <= TARGET_RECORDS < RECORD_CAP
    assert next_size(timedelta(minutes=10), 0) == timedelta(minutes=80)
    assert next_size(timedelta(days=2), 1) == timedelta(days=7)


def test_split_answers_are_rejoined_and_components_become_their_own_messages() -> None:
    info = TemplateInfo("dtmi:c:t;1", "Thermostat", caps("temperature", "humidity", "battery.level"))
    ts = "2026-11-27T07:00:00.123Z"
    parts: list[list[dict[str, Any]]] = [
        [{"$id": "d1", "$ts": ts, "temperature": 21.5}],
        [{"$id": "d1", "$ts": ts, "humidity": 40, "battery.level": 88}, {"$id": "d2", "$ts": ts, "humidity": None}],
    ]
    messages = messages_from(info, join_parts(parts))
    assert [(m.device_id, m.component, m.telemetry) for m in messages] == [
        ("d1", None, {"temperature": 21.5, "humidity": 40}),
        ("d1", "battery", {"level": 88}),
    ]
    assert messages[0].enqueued == datetime(2026, 11, 27, 7, 0, 0, 123000, tzinfo=UTC)


def test_templates_list_root_component_and_extended_telemetry_and_say_what_modules_lose() -> None:
    template = {
        "@id": "dtmi:c:t;1",
        "displayName": "T",
        "capabilityModel": {
            "contents": [
                {"@type": ["Telemetry", "Temperature"], "name": "temperature", "@id": "dtmi:c:t:temperature;1"},
                {"@type": "Property", "name": "firmware"},
                {
                    "@type": "Component",
                    "name": "battery",
                    "schema": {"contents": [{"@type": "Telemetry", "name": "level"}]},
                },
                {"@type": ["Relationship", "EdgeModule"], "name": "vision", "target": [{"contents": []}]},
            ],
            "extends": [{"contents": [{"@type": "Telemetry", "name": "uptime"}]}],
        },
    }
    info = parse_template(template)
    assert [c.path for c in info.telemetry] == ["temperature", "battery.level", "uptime"]
    assert info.telemetry[0].capability_id == "dtmi:c:t:temperature;1"
    assert len(info.unrecoverable) == 1 and "vision" in info.unrecoverable[0]


def test_the_transform_input_has_the_documented_shape_and_the_iotc_module_works() -> None:
    """howto-transform-data-internally.md, scenario 1: the documented query gives the documented row."""
    info = TemplateInfo("dtmi:modelDefinition:nhhbjotee:qytxnp8hi", "hapticsensors", caps("t1", "t2", "t3"))
    message = Message("oozrnl1zs857", info.template_id, T0, None, {"t1": 1.5, "t2": 2.5, "t3": 3.5})
    body = transform_input("c57fe8d9-d15d-4659-9814-d3cc38ca9e1b", message, info, {"displayName": "haptic alarm"})
    assert {"applicationId", "enqueuedTime", "messageSource", "telemetry", "device"} <= set(body)
    assert body["telemetry"][0] == {"id": "dtmi:x:t1;1", "name": "t1", "value": 1.5}
    assert set(body["device"]) >= {"id", "name", "templateId", "templateName", "properties", "cloudProperties"}
    program = (
        'import "iotc" as iotc;\n{\n  deviceId: .device.id,\n  Timestamp: .enqueuedTime,\n'
        '  T1: .telemetry | iotc::find(.name == "t1").value,\n  T2: .telemetry | iotc::find(.name == "t2").value,\n'
        '  T3: .telemetry | iotc::find(.name == "t3").value,\n}'
    )
    rows = rows_for(
        [message],
        application_id="app",
        info=info,
        devices={},
        export_filter=ExportFilter.parse(None),
        transform=program,
    )
    assert [r for _, r in rows] == [
        {"deviceId": "oozrnl1zs857", "Timestamp": "2026-11-27T07:00:00.000Z", "T1": 1.5, "T2": 2.5, "T3": 3.5}
    ]
    with pytest.raises(TransformError):
        compile_transform("{ broken")


def test_without_a_transform_the_row_is_the_exported_message() -> None:
    info = TemplateInfo("dtmi:c:t;1", "T", caps("battery.level"))
    message = Message("d1", "dtmi:c:t;1", T0, "battery", {"level": 3})
    [(_, row)] = rows_for(
        [message], application_id="a", info=info, devices={}, export_filter=ExportFilter.parse(""), transform=None
    )
    assert row == {
        "applicationId": "a",
        "messageSource": "telemetry",
        "deviceId": "d1",
        "schema": "default@v1",
        "templateId": "dtmi:c:t;1",
        "enqueuedTime": "2026-11-27T07:00:00.000Z",
        "telemetry": {"level": 3},
        "enrichments": {},
        "messageProperties": {},
        "component": "battery",
    }


def test_the_export_filter_of_the_published_sample_is_understood_and_anything_else_refused() -> None:
    sample = ExportFilter.parse('SELECT * FROM devices WHERE $displayName != "abc" AND $id = "a"')
    message = Message("a", "dtmi:c:t;1", T0, None, {"temperature": 30})
    assert sample.matches(message, {"displayName": "x"})
    assert not sample.matches(message, {"displayName": "abc"})
    hot = ExportFilter.parse("SELECT * FROM dtmi:c:t;1 WHERE temperature > 25")
    assert hot.matches(message, None) and not hot.covers("dtmi:c:other;1")
    assert not hot.matches(Message("a", "dtmi:c:t;1", T0, None, {"temperature": 20}), None)
    for text in ('SELECT * FROM devices WHERE $id = "a" OR $id = "b"', "SELECT temperature FROM devices"):
        with pytest.raises(FilterUnsupported):
            ExportFilter.parse(text)


def test_rows_already_in_the_table_are_skipped_as_a_multiset_in_the_tables_types() -> None:
    schema = [("DeviceId", "string"), ("Timestamp", "datetime"), ("Values", "dynamic"), ("T", "real")]
    rebuilt: list[dict[str, Any]] = [
        {"DeviceId": "d", "Timestamp": "2026-11-27T07:00:00.100Z", "Values": {"b": 1, "a": 2}, "T": 1},
        {"DeviceId": "d", "Timestamp": "2026-11-27T07:00:00.100Z", "Values": {"b": 1, "a": 2}, "T": 1},
        {"DeviceId": "d", "Timestamp": "2026-11-27T07:00:01.000Z", "Values": None, "T": None},
    ]
    present = [{"DeviceId": "d", "Timestamp": T0 + timedelta(milliseconds=100), "Values": {"a": 2.0, "b": 1}, "T": 1.0}]
    assert dedupe.missing(rebuilt, present, schema) == rebuilt[1:]
    # Rows of other devices in the same window match nothing; neither does a row that differs
    # from ours only in a string column.
    others = [{**present[0], "DeviceId": "other"}, {**present[0], "DeviceId": "D"}]
    assert dedupe.missing(rebuilt, others, schema) == rebuilt
    assert dedupe.missing(rebuilt, [*others, *present, *present], schema) == rebuilt[2:]
    assert dedupe.missing(rebuilt, [], schema) == rebuilt
    pairs = [(T0 + timedelta(milliseconds=100), rebuilt[0])]
    assert dedupe.time_column(pairs, schema) == "Timestamp"
    assert dedupe.time_column(pairs, [("DeviceId", "string")]) is None


def _dense_query(per_second: dict[str, int], asked: list[str]) -> Any:
    """A query API over devices that each send once a second at whole seconds (both ends of a
    range included, as the sandbox does), cutting answers off at the record cap."""
    import re

    def query(text: str) -> list[dict[str, Any]]:
        asked.append(text)
        template = text.split(" FROM ")[1].split(" ", maxsplit=1)[0]
        first, last = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in re.findall(r"'(.+)/(.+)'", text)[0])
        records: list[dict[str, Any]] = []
        at = first
        while at <= last and len(records) < RECORD_CAP:
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            records += [{"$id": f"d{n}", "$ts": stamp, "t": 1} for n in range(per_second[template])]
            at += timedelta(seconds=1)
        return records[:RECORD_CAP]

    return query


def test_the_reader_walks_contiguous_windows_under_the_cap_and_sizes_the_next_template_from_the_pace() -> None:
    from shared.backfill.reader import Position, Reader

    slow, dense = TemplateInfo("dtmi:c:a;1", "A", caps("t")), TemplateInfo("dtmi:c:b;1", "B", caps("t"))
    per_second = {slow.template_id: 150, dense.template_id: 400}
    asked: list[str] = []
    end = T0 + timedelta(minutes=5)
    reader = Reader(
        _dense_query(per_second, asked),
        [slow, dense],
        {slow.template_id: [["t"]], dense.template_id: [["t"]]},
        T0,
        end,
        Position(0, T0, timedelta(seconds=100), None),  # 100 s of the first: cut off, then halved
        next_size=next_size,
        first_window=lambda: timedelta(minutes=1),
        streams=lambda info: per_second[info.template_id],  # one stream per device
    ).start()
    answers = []
    while (answer := reader.next()) is not None:
        answers.append(answer)
    reader.close()
    for index in (0, 1):
        windows = [a.window for a in answers if a.template_index == index]
        assert windows[0].start == T0 and windows[-1].end == end
        assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert all(a.most < RECORD_CAP for a in answers)
    assert answers[0].queries == 2 and answers[0].window.size == timedelta(seconds=50)  # the cut-off one counted
    assert sum(a.queries for a in answers) == reader.queries == len(asked)
    # The dense template's first window comes from the pace measured on the first: not cut off.
    first_dense = next(a for a in answers if a.template_index == 1)
    assert first_dense.queries == 1 and first_dense.most > TARGET_RECORDS * 0.8
    assert len(asked) <= 22  # about 9,500 records a query: 45,000 and 120,000 records, one cut off


def test_a_closed_reader_stops_reading_ahead() -> None:
    from shared.backfill.reader import Position, Reader

    info = TemplateInfo("dtmi:c:a;1", "A", caps("t"))
    asked: list[str] = []
    reader = Reader(
        _dense_query({info.template_id: 10}, asked),
        [info],
        {info.template_id: [["t"]]},
        T0,
        T0 + timedelta(days=1),
        Position(0, T0, timedelta(seconds=1), None),
        next_size=lambda previous, records: timedelta(seconds=1),
        first_window=lambda: timedelta(seconds=1),
        ahead=2,
    ).start()
    assert reader.next() is not None
    reader.close()
    sent = len(asked)
    assert sent <= 1 + 2 + 2  # the one taken, the ones held, the one being handed over
    assert reader.queries == sent and len(asked) == sent


def test_rows_are_told_apart_by_message_identity_not_by_whole_rows() -> None:
    """A delivered row differs from the rebuilt one in what could not be rebuilt (here a message
    property): compared whole, it would look missing and be ingested again."""
    schema = [("DeviceId", "string"), ("Timestamp", "datetime"), ("Props", "dynamic"), ("Component", "string")]
    at = "2026-11-27T07:00:00.100Z"
    rebuilt: list[dict[str, Any]] = [
        {"DeviceId": "d", "Timestamp": at, "Props": {}, "Component": "root"},
        {"DeviceId": "d", "Timestamp": at, "Props": {}, "Component": "battery"},  # same device, same time
        {"DeviceId": "d", "Timestamp": "2026-11-27T07:00:01.100Z", "Props": {}, "Component": "root"},
        {"DeviceId": "e", "Timestamp": at, "Props": {}, "Component": "root"},
    ]
    delivered = {"DeviceId": "d", "Timestamp": T0 + timedelta(milliseconds=100), "Props": {"source": "x"}}
    assert dedupe.missing(rebuilt[:1], [{**delivered, "Component": "root"}], schema) == rebuilt[:1]  # the old way
    present = [{**delivered, "Component": "root"}, {**delivered, "Component": "battery"}]
    todo, matched, strangers = dedupe.missing_by_identity(rebuilt, present, ("DeviceId", "Timestamp"), schema)
    assert todo == rebuilt[2:] and matched == 1 and strangers == 0
    # Half of a key present: the whole rows of that key say which half.
    todo, _, _ = dedupe.missing_by_identity(
        rebuilt, [{**rebuilt[1], "Timestamp": T0 + timedelta(milliseconds=100)}], ("DeviceId", "Timestamp"), schema
    )
    assert todo == [rebuilt[0], *rebuilt[2:]]
    # Rows of these devices whose times the query API never answered: the times do not agree.
    shifted = [{**p, "Timestamp": T0 + timedelta(milliseconds=40)} for p in present]
    todo, matched, strangers = dedupe.missing_by_identity(rebuilt, shifted, ("DeviceId", "Timestamp"), schema)
    assert matched == 0 and strangers == 2


def test_a_device_with_only_module_rows_in_the_table_is_not_taken_for_a_ts_mismatch() -> None:
    """The window lies in the outage: the device's own telemetry is missing, and the table holds
    only its IoT Edge module's rows (which the query API does not answer). Those say nothing about
    whether `$ts` is the time the export wrote: everything is missing, nothing is refused."""
    schema = [("deviceId", "string"), ("enqueuedTime", "datetime"), ("telemetry", "dynamic"), ("module", "string")]
    rebuilt: list[dict[str, Any]] = [
        {"deviceId": "d", "enqueuedTime": "2026-11-27T07:00:00.100Z", "telemetry": {"t": 1}},
        {"deviceId": "d", "enqueuedTime": "2026-11-27T07:00:01.100Z", "telemetry": {"t": 2}},
    ]
    module_row = {
        "deviceId": "d",
        "enqueuedTime": "2026-11-27T07:00:00.400Z",
        "telemetry": {"v": 9},
        "module": "vision",
    }
    todo, matched, strangers = dedupe.missing_by_identity(rebuilt, [module_row], ("deviceId", "enqueuedTime"), schema)
    assert todo == rebuilt and matched == 0 and strangers == 0
    # A row of the device's own kind at a time the query API never answered still counts.
    own = {**rebuilt[0], "enqueuedTime": "2026-11-27T07:00:00.400Z", "module": None}
    _, _, strangers = dedupe.missing_by_identity(rebuilt, [module_row, own], ("deviceId", "enqueuedTime"), schema)
    assert strangers == 1


def test_the_identity_columns_are_found_by_running_the_transform_on_probe_messages() -> None:
    from shared.backfill.identity import find_identity, unrestorable_fields
    from shared.backfill.records import Enrichments

    info = TemplateInfo("dtmi:c:t;1", "T", caps("temperature", "battery.level"))
    schema = {"Dev": "string", "At": "datetime", "Copy": "string", "Temperature": "real", "Site": "string"}
    transform = (
        'import "iotc" as iotc; {Dev: .device.id, At: .enqueuedTime, Copy: "fixed", Site: .enrichments.site, '
        'Temperature: ([.telemetry | iotc::find(.name == "temperature") | .value] | first)}'
    )
    enrichments = Enrichments.parse({"site": {"value": "plant-1"}, "tpl": {"path": "$templateDisplayName"}})
    identity = find_identity(info, transform, enrichments, schema)
    assert identity is not None and identity.columns == ("Dev", "At")
    assert find_identity(info, '{Dev: .device.id, At: "2020-01-01T00:00:00Z"}', enrichments, schema) is None
    assert find_identity(info, "empty", enrichments, schema) is None  # no row for a message: nothing to match
    # The exported message itself, mapped by column name (no transform).
    plain = {"deviceId": "string", "enqueuedTime": "datetime", "telemetry": "dynamic", "enrichments": "dynamic"}
    assert find_identity(info, None, enrichments, plain) == type(identity)("deviceId", "enqueuedTime")
    # What cannot be rebuilt, from the program's text and the table's columns.
    assert unrestorable_fields(transform, enrichments, schema) == []
    reads = '{Dev: .device.id, C: .messageProperties["iothub-creation-time-utc"], P: .device.properties}'
    assert [f.split(" (")[0] for f in unrestorable_fields(reads, enrichments, schema)] == [
        "messageProperties",
        "device properties",
    ]
    by_device = Enrichments.parse({"floor": {"target": "dtmi:c:t;1", "path": "floor"}})
    assert by_device.device_property == ("floor",)
    assert unrestorable_fields(None, by_device, plain)[0].startswith("enrichments from device properties")
    assert unrestorable_fields(None, by_device, {**plain, "messageProperties": "dynamic"})[0].startswith(
        "messageProperties"
    )


def test_static_and_system_enrichments_are_rebuilt_and_a_property_filter_is_refused() -> None:
    from shared.backfill.records import Enrichments

    info = TemplateInfo("dtmi:c:t;1", "Thermostat", caps("temperature"))
    message = Message("a", "dtmi:c:t;1", T0, None, {"temperature": 30})
    enrichments = Enrichments.parse({"site": {"value": "plant-1"}, "kind": {"path": "$templateDisplayName"}})
    (row,) = [
        r
        for _, r in rows_for(
            [message],
            application_id="app",
            info=info,
            devices={"a": {"id": "a"}},
            export_filter=ExportFilter.parse(None),
            transform=None,
            enrichments=enrichments,
        )
    ]
    assert row["enrichments"] == {"site": "plant-1", "kind": "Thermostat"}
    simulated = rows_for(
        [message],
        application_id="app",
        info=info,
        devices={"a": {"id": "a", "simulated": True}},
        export_filter=ExportFilter.parse(None),
        transform=None,
        exclude_simulated=True,
    )
    assert simulated == []
    ExportFilter.parse('SELECT * FROM devices WHERE temperature > 3 AND $id != "x"').check_fields([info])
    for field in ("location", "$messageProperties.source"):
        with pytest.raises(FilterUnsupported, match="device or message property"):
            ExportFilter.parse(f'SELECT * FROM devices WHERE {field} = "x"').check_fields([info])


def test_a_window_is_transformed_in_one_jq_call_with_the_same_rows_as_one_call_per_message() -> None:
    from shared.backfill import transform

    info = TemplateInfo("dtmi:c:t;1", "T", caps("temperature", "battery.level"))
    messages = [
        Message(f"d{n}", "dtmi:c:t;1", T0 + timedelta(seconds=n), None if n % 2 else "battery", {"x": n})
        for n in range(6)
    ]
    program = (
        'import "iotc" as iotc; def twice(f): f, f; '
        "if .component then twice({D: .device.id, C: .component}) else {D: .device.id} end"
    )
    args: dict[str, Any] = dict(
        application_id="a", info=info, devices={}, export_filter=ExportFilter.parse(None), transform=program
    )
    batched = rows_for(messages, **args)
    assert transform.compile_batch(program) is not None
    transform.compile_batch.cache_clear()
    one_by_one = [(m, r) for m in messages for _, r in rows_for([m], **args)]  # a single message is not batched
    assert batched == one_by_one and len(batched) == 9
    with pytest.raises(TransformError, match="a message of d3"):  # a failing message is still named
        rows_for(messages, **{**args, "transform": 'if .deviceId == "d3" then error("boom") else {} end'})


def test_a_few_coincidences_do_not_pass_for_agreeing_message_times() -> None:
    from shared.backfill.dedupe import times_disagree

    assert not times_disagree(matched=500, strangers=0)
    assert not times_disagree(matched=10, strangers=4)  # rows at a short window's edges
    assert not times_disagree(matched=500, strangers=500)
    assert times_disagree(matched=500, strangers=501)
    assert times_disagree(matched=0, strangers=1)
    assert times_disagree(matched=7, strangers=170)  # $ts read as the creation time: a few match by chance
    assert not times_disagree(matched=0, strangers=0)  # nothing delivered in the window: nothing to judge
