"""LogsQueryClient (azure-monitor-query 2.x) against the Log Analytics stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryPartialResult, LogsQueryStatus

from sandbox import sdk
from sandbox.entra import new_identity
from sandbox.world import World

pytestmark = pytest.mark.integration


@pytest.fixture
def logs(world: World, credential: Any) -> Any:
    return sdk.logs_client(world.endpoints()["loganalytics_endpoint"], credential)


def query(world: World, logs: Any, kql: str, timespan: Any = timedelta(hours=1)) -> Any:
    return logs.query_workspace(world.workspace.workspace_id, kql, timespan=timespan, enforce_https=False)


def test_failed_ingestion_rows_from_a_broken_export(world: World, logs: Any) -> None:
    world.inject("principal-removed", "contoso")
    world.export_once()
    world.export_once()
    result = query(
        world,
        logs,
        "FailedIngestion | where TimeGenerated > ago(1h) and ErrorCode == 'Forbidden' "
        "| summarize Failures=count(), FirstSeen=min(TimeGenerated), LastSeen=max(TimeGenerated), "
        "Details=take_any(Details) by Database, Table, ErrorCode",
    )
    assert result.status == LogsQueryStatus.SUCCESS
    table = result.tables[0]
    assert table.columns == ["Database", "Table", "ErrorCode", "Failures", "FirstSeen", "LastSeen", "Details"]
    row = table.rows[0]
    assert (row["Database"], row["Table"], row["ErrorCode"], row["Failures"]) == (
        "devicedata",
        "DeviceTelemetry",
        "Forbidden",
        2,
    )
    assert isinstance(row["LastSeen"], datetime) and row["LastSeen"].tzinfo is not None
    details = json.loads(row["Details"])
    assert details["error"]["code"] == "Forbidden" and details["error"]["@permanent"] is True
    assert "not authorized to perform operation 'Ingest'" in details["error"]["@message"]


def test_timespan_filters_rows(world: World, logs: Any) -> None:
    world.inject("table-missing", "fabrikam")
    world.export_once()
    assert query(world, logs, "FailedIngestion | count").tables[0].rows[0][0] == 1
    future = (datetime.now(UTC) + timedelta(hours=1), datetime.now(UTC) + timedelta(hours=2))
    assert query(world, logs, "FailedIngestion | count", timespan=future).tables[0].rows[0][0] == 0


def test_adx_journal_records_principal_changes(world: World, logs: Any, kusto: Any) -> None:
    fqn = world.healer.fqn
    kusto.execute_mgmt("devicedata", f".add database devicedata viewers ('{fqn}') 'journal test'")
    result = query(world, logs, "ADXJournal | where ChangeCommand has 'viewers' | project ChangeCommand, Principal")
    rows = result.tables[0].rows
    assert len(rows) == 1 and rows[0]["Principal"] == f"Microsoft Entra app id={world.healer.client_id}"
    assert rows[0]["ChangeCommand"].startswith(".add database devicedata viewers")


def test_partial_result(world: World, logs: Any) -> None:
    world.inject("principal-removed", "contoso")
    for _ in range(4):
        world.export_once()
    world.workspace.partial_error = True
    result = query(world, logs, "FailedIngestion | project OperationId")
    assert isinstance(result, LogsQueryPartialResult)
    assert result.status == LogsQueryStatus.PARTIAL
    assert len(result.partial_data[0].rows) == 2
    assert result.partial_error is not None and result.partial_error.code == "PartialError"


def test_bad_queries_and_access_are_refused_clearly(world: World, logs: Any) -> None:
    with pytest.raises(HttpResponseError) as info:
        query(world, logs, "FailedIngestions | count")
    assert info.value.status_code == 400 and "FailedIngestions" in str(info.value)
    with pytest.raises(HttpResponseError) as info:
        query(world, logs, "FailedIngestion | mv-expand Details")
    assert info.value.status_code == 400
    stranger = world.directory.add(new_identity("stranger"))
    other = sdk.logs_client(world.endpoints()["loganalytics_endpoint"], sdk.credential(stranger.client_id))
    with pytest.raises(HttpResponseError) as info:
        query(world, other, "FailedIngestion | count")
    assert info.value.status_code == 403
    world.set_transport("loganalytics", error_rate=1.0, error_status=502)
    with pytest.raises(HttpResponseError) as info:
        query(world, logs, "FailedIngestion | count")
    assert info.value.status_code == 502
