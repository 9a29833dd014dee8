"""The published Azure samples parse with the code paths the product uses (the real SDKs), and
the sandbox answers in the same shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.kusto.data.exceptions import KustoMultiApiError, OneApiError
from azure.kusto.data.response import KustoResponseDataSetV1, KustoResponseDataSetV2

from sandbox.adx import server as adx_server
from sandbox.adx.executor import execute
from sandbox.adx.model import Cluster
from sandbox.entra import Directory, new_identity
from sandbox.iotc.delivery import TELEMETRY_COLUMNS
from sandbox.iotc.server import IoTCentral
from tests.support.helpers import fixture


def frame_keys(frames: list[dict[str, Any]]) -> list[tuple[str, frozenset[str]]]:
    return [(f["FrameType"] + ":" + f.get("TableKind", ""), frozenset(f)) for f in frames]


def sandbox_cluster() -> tuple[Cluster, Any]:
    directory = Directory()
    healer = directory.add(new_identity("healer"))
    cluster = Cluster("http://127.0.0.1:1", directory)
    cluster.create_database("devicedata")
    cluster.create_table("devicedata", "DeviceTelemetry", list(TELEMETRY_COLUMNS))
    cluster.grant("devicedata", "admins", healer.fqn, "healer")
    return cluster, healer


@pytest.mark.parametrize("name", ["zero_results.json", "deft.json", "alternative_order.json"])
def test_v2_samples_parse_with_the_sdk(name: str) -> None:
    frames = fixture(f"kusto/{name}")
    dataset = KustoResponseDataSetV2(frames)
    assert dataset.primary_results


def test_partial_results_surface_as_errors_in_the_sdk() -> None:
    with pytest.raises(KustoMultiApiError) as info:
        KustoResponseDataSetV2(fixture("kusto/query_partial_results_defer_is_false.json"))
    assert info.value.get_api_errors()[0].permanent is False


def test_v1_sample_parses_with_the_sdk() -> None:
    dataset = KustoResponseDataSetV1(fixture("kusto/adminthenquery.json"))
    assert [row["TableName"] for row in dataset.primary_results[0]] == ["KustoLogs", "LiorTmp"]


def test_sandbox_v2_frames_match_the_published_shape() -> None:
    cluster, healer = sandbox_cluster()
    service = adx_server.KustoService(cluster, cluster.directory)
    ours = service._query(healer, "devicedata", "DeviceTelemetry | count")
    assert frame_keys(ours) == frame_keys(fixture("kusto/zero_results.json"))
    assert KustoResponseDataSetV2(ours).primary_results[0][0]["Count"] == 0


def test_sandbox_v1_tables_match_the_published_shape() -> None:
    cluster, healer = sandbox_cluster()
    ours = adx_server.KustoService._v1(execute(cluster, healer, "devicedata", ".show database devicedata principals"))
    published = fixture("kusto/adminthenquery.json")["Tables"][0]
    assert set(published) == set(ours["Tables"][0])
    assert {"ColumnName", "DataType"} <= set(ours["Tables"][0]["Columns"][0])
    assert KustoResponseDataSetV1(ours).primary_results[0][0]["Role"] == "Database devicedata Admin"


def test_error_bodies_match_the_published_one_api_error() -> None:
    published = fixture("kusto/errors/query-v2-http-error-sem0100.json")["error"]
    ours = adx_server.error_body(403, "Forbidden", "T", "m", True, "req")["error"]
    required = {"code", "message", "@type", "@message", "@context", "@permanent"}
    assert required <= set(published) and required <= set(ours)
    for body in (published, ours):
        parsed = OneApiError.from_dict(body)
        assert parsed.code != "FailedToParse" and parsed.permanent is True


def test_failed_ingestion_rows_carry_the_published_diagnostic_fields() -> None:
    from sandbox.monitor import SCHEMAS

    record = fixture("loganalytics/failed-ingestion-diagnostic-log.json")
    published = set(record["properties"])
    ours = {name for name, _ in SCHEMAS["FailedIngestion"]}
    assert published <= ours
    details = record["properties"]["Details"]
    assert OneApiError.from_dict(details["error"]).code == record["properties"]["ErrorCode"]


def test_failed_ingestion_details_written_by_the_exporter_parse_like_the_published_ones() -> None:
    from sandbox.world import World

    world = World()
    world.add_app("contoso")
    world.inject("principal-removed", "contoso")
    world.export_once()
    row = world.workspace.tables["FailedIngestion"][0]
    ours = json.loads(row["Details"])["error"]
    published = fixture("loganalytics/failed-ingestion-diagnostic-log.json")["properties"]["Details"]["error"]
    assert set(published) <= set(ours) | {"@context"}
    assert OneApiError.from_dict(ours).code == row["ErrorCode"] == "Forbidden"
    assert row["FailureStatus"] == "Permanent" and row["ShouldRetry"] is False


def test_sandbox_iot_central_objects_have_the_published_fields() -> None:
    central = IoTCentral(Directory())
    central.add_app("appsubdomain", "x")
    adx = fixture("iotcentral/2022-10-31-preview/dataexports_destinations_create_adx.json")
    dest = central.put_destination("appsubdomain", "destination1", adx["parameters"]["body"])
    assert set(dest) == set(adx["responses"]["200"]["body"])
    assert central._public(dest)["authorization"]["clientSecret"] == "*****"
    export_sample = fixture("iotcentral/2022-10-31-preview/dataexports_exports_create.json")
    export = central.put_export("appsubdomain", "export1", export_sample["parameters"]["body"])
    assert export == export_sample["responses"]["200"]["body"]


def test_published_export_list_statuses_are_free_strings() -> None:
    sample = fixture("iotcentral/2022-06-30-preview/dataexports_exports_list.json")
    statuses = [e["status"] for e in sample["responses"]["200"]["body"]["value"]]
    assert statuses == ["notStarted", "starting", "healthy"]
    error_sample = fixture("iotcentral/2022-10-31-preview/dataexports_destinations_get.json")["responses"]["200"][
        "body"
    ]
    assert error_sample["status"] == "error" and set(error_sample["errors"][0]) == {"code", "message"}
