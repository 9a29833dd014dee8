"""Alert payloads (published samples and crafted ones) and detection's classification, as pure logic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.loganalytics import _message, failed_ingestion_query
from shared.detection.detector import evidence_from_status
from shared.domain.alerts import AlertError, match_targets, parse_alert
from shared.domain.targets import parse_targets
from tests.support.helpers import FIXTURES, fixture

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "11111111-1111-4111-8111-111111111111"
ARM_PREFIX = f"/subscriptions/{OID}/resourceGroups/rg/providers/Microsoft.IoTCentral/iotApps"
TARGETS = parse_targets(
    json.dumps(
        [
            {
                "app": app,
                "export_id": export,
                "destination_id": dest,
                "cluster_url": "https://adxprod.westeurope.kusto.windows.net",
                "database": db,
                "table": table,
                "principal": {"object_id": OID, "tenant_id": TENANT},
                "iotc_resource_id": f"{ARM_PREFIX}/{app}",
            }
            for app, export, dest, db, table in [
                ("contoso", "export-1", "adx-1", "devicedata", "DeviceTelemetry"),
                ("contoso", "export-2", "adx-2", "devicedata", "Alarms"),
                ("fabrikam", "export-1", "adx-1", "plantdata", "DeviceTelemetry"),
            ]
        ]
    )
)


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def full_alerts() -> list[Path]:
    if not FIXTURES.is_dir():
        pytest.skip("published samples not found")
    return sorted(
        p for p in (FIXTURES / "alerts").glob("*.json") if not p.name.startswith(("alertcontext-", "legacy-"))
    )


def test_every_published_full_payload_parses() -> None:
    for path in full_alerts():
        alert = parse_alert(path.read_bytes(), "application/json")
        assert alert.alert_id and alert.condition in ("Fired", "Resolved"), path.name


def test_log_alert_v2_dimensions_name_targets() -> None:
    sample = fixture("alerts/log-alert-v2.json")
    sample["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"] = [
        {"name": "Database", "value": "devicedata"},
        {"name": "Table", "value": "DeviceTelemetry"},
    ]
    alert = parse_alert(body(sample), "application/json; charset=utf-8")
    assert alert.monitoring_service == "Log Alerts V2" and alert.dimensions["table"] == "DeviceTelemetry"
    assert [t.key for t in match_targets(alert, TARGETS)] == ["contoso:export-1:adx-1"]


def test_metric_alert_on_an_iot_central_app_with_export_dimensions() -> None:
    sample = fixture("alerts/metric-alert-static.json")
    sample["data"]["essentials"]["alertTargetIDs"] = [TARGETS[1].iotc_resource_id]
    sample["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"] = [
        {"name": "exportId", "value": "export-2"},
        {"name": "destinationId", "value": "adx-2"},
    ]
    alert = parse_alert(body(sample), "application/json")
    assert [t.key for t in match_targets(alert, TARGETS)] == ["contoso:export-2:adx-2"]
    sample["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"] = []
    alert = parse_alert(body(sample), "application/json")
    assert [t.key for t in match_targets(alert, TARGETS)] == ["contoso:export-1:adx-1", "contoso:export-2:adx-2"]


def test_resolved_and_unrelated_alerts() -> None:
    resolved = parse_alert(fixture_bytes("alerts/resolved-metric-alert.json"), "application/json")
    assert resolved.condition == "Resolved"
    budget = parse_alert(fixture_bytes("alerts/budget-alert.json"), "application/json")
    assert match_targets(budget, TARGETS) == []
    assert resolved.key != parse_alert(fixture_bytes("alerts/metric-alert-static.json"), "application/json").key


def fixture_bytes(relative: str) -> bytes:
    return body(fixture(relative))


@pytest.mark.parametrize(
    ("payload", "content_type", "status", "field"),
    [
        (b"{}", "text/plain", 415, "Content-Type"),
        (b"{}", None, 415, "Content-Type"),
        (b"x" * (300 * 1024), "application/json", 413, "body"),
        (b"not json", "application/json", 400, "body"),
        (b"[]", "application/json", 400, "body"),
        (body({"schemaId": "Microsoft.Insights/activityLogs", "data": {}}), "application/json", 400, "schemaId"),
        (body({"schemaId": "azureMonitorCommonAlertSchema"}), "application/json", 400, "data.essentials"),
        (
            body({"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": {"monitorCondition": "Fired"}}}),
            "application/json",
            400,
            "data.essentials.alertId",
        ),
        (
            body(
                {
                    "schemaId": "azureMonitorCommonAlertSchema",
                    "data": {"essentials": {"alertId": "a", "monitorCondition": "Exploded"}},
                }
            ),
            "application/json",
            400,
            "data.essentials.monitorCondition",
        ),
        (
            body(
                {
                    "schemaId": "azureMonitorCommonAlertSchema",
                    "data": {"essentials": {"alertId": "a", "monitorCondition": "Fired", "alertTargetIDs": "x"}},
                }
            ),
            "application/json",
            400,
            "data.essentials.alertTargetIDs",
        ),
    ],
)
def test_bad_alerts_say_what_is_wrong(payload: bytes, content_type: str | None, status: int, field: str) -> None:
    with pytest.raises(AlertError) as info:
        parse_alert(payload, content_type)
    assert (info.value.status, info.value.field) == (status, field)
    assert field.rsplit(".", maxsplit=1)[-1] in str(info.value)


def test_missing_dimensions_match_nothing_without_a_resource() -> None:
    alert = parse_alert(
        body(
            {
                "schemaId": "azureMonitorCommonAlertSchema",
                "data": {"essentials": {"alertId": "a", "monitorCondition": "Fired"}},
            }
        ),
        "application/json",
    )
    assert match_targets(alert, TARGETS) == []


def test_detection_evidence_from_published_statuses() -> None:
    listed = fixture("iotcentral/2022-06-30-preview/dataexports_exports_list.json")["responses"]["200"]["body"]["value"]
    assert all(evidence_from_status(export, None) == [] for export in listed)  # notStarted/starting/healthy
    webhook = fixture("iotcentral/2022-10-31-preview/dataexports_destinations_get.json")["responses"]["200"]["body"]
    (found,) = evidence_from_status(None, webhook)
    assert (found.code, found.permission) == ("InvalidResponse", False)


def test_detection_classifies_permission_failures() -> None:
    dest = {
        "id": "adx-1",
        "status": "error",
        "errors": [
            {"code": "Forbidden", "message": "Principal 'aadapp=x;y' is not authorized to perform operation 'Ingest'"}
        ],
    }
    export = {"id": "export-1", "status": "error", "errors": dest["errors"]}
    found = evidence_from_status(export, dest)
    assert len(found) == 1 and found[0].permission
    odd = evidence_from_status({"id": "e", "status": "partiallyHealthy"}, None)
    assert odd[0].code == "status" and not odd[0].permission


def test_failed_ingestion_details_message_and_query() -> None:
    record = fixture("loganalytics/failed-ingestion-diagnostic-log.json")
    assert _message(json.dumps(record["properties"]["Details"])) == "Database 'Kusto' was not found."
    assert _message("plain text") == "plain text"
    assert "FailedIngestion | where TimeGenerated > ago(30m)" in failed_ingestion_query(30)
    with pytest.raises(ValueError, match="lookback_minutes=0"):
        failed_ingestion_query(0)
