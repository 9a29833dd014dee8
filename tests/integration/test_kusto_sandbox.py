"""azure-kusto-data 6.x against the ADX stand-in: wire formats and the real permission rules."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from azure.kusto.data.exceptions import (
    KustoApiError,
    KustoNetworkError,
    KustoServiceError,
    KustoThrottlingError,
)

from sandbox import sdk
from sandbox.entra import new_identity
from sandbox.world import World

pytestmark = pytest.mark.integration


def rows(result: Any) -> list[dict[str, Any]]:
    table = result.primary_results[0]
    return [{c.column_name: row[c.column_name] for c in table.columns} for row in table]


def described(exc: KustoApiError) -> str:
    """The service's own explanation (`@message`) of an error."""
    return exc.get_api_error().description or ""


def app_fqn(world: World, subdomain: str) -> str:
    """How ADX lists the app's identity: its application id and the tenant GUID."""
    identity = world.iotc.identity_of(subdomain)
    return f"aadapp={identity.client_id};{identity.tenant_id}"


def test_show_database_principals_has_the_documented_columns(world: World, kusto: Any) -> None:
    result = kusto.execute_mgmt("devicedata", ".show database devicedata principals")
    table = result.primary_results[0]
    assert [c.column_name for c in table.columns] == [
        "Role",
        "PrincipalType",
        "PrincipalDisplayName",
        "PrincipalObjectId",
        "PrincipalFQN",
        "Notes",
        "RoleAssignmentIdentifier",
    ]
    listed = {(r["Role"], r["PrincipalFQN"]) for r in rows(result)}
    assert ("Database devicedata Admin", world.healer.fqn.lower()) in {(a, b.lower()) for a, b in listed}
    assert ("Database devicedata Admin", app_fqn(world, "contoso").lower()) in {(a, b.lower()) for a, b in listed}
    types = {r["PrincipalType"] for r in rows(result)}
    assert types == {"AAD Application"}


def test_cluster_admins_are_listed_but_cannot_be_changed_by_command(world: World, kusto: Any) -> None:
    outsider = new_identity("platform-team")
    world.cluster.set_cluster_role("AllDatabasesAdmin", outsider.fqn)
    listed = rows(kusto.execute_mgmt("devicedata", ".show database devicedata principals"))
    assert any(r["Role"] == "AllDatabasesAdmin" and r["PrincipalFQN"] == outsider.fqn.lower() for r in listed)
    with pytest.raises(KustoApiError) as info:
        kusto.execute_mgmt("devicedata", f".drop cluster AllDatabasesAdmin ('{outsider.fqn}')")
    assert info.value.get_api_error().code == "Forbidden"
    assert "ARM" in described(info.value)
    assert outsider.fqn.lower() in [str(f) for f in world.cluster.cluster_roles["AllDatabasesAdmin"]]


def test_add_and_drop_with_notes_round_trip(world: World, kusto: Any) -> None:
    newcomer = world.directory.add(new_identity("newcomer"))
    fqn = f"aadapp={newcomer.client_id};{newcomer.tenant_id}"
    added = rows(kusto.execute_mgmt("devicedata", f".add database devicedata viewers ('{fqn}') 'added by test'"))
    assert {
        "Role": "Database devicedata Viewer",
        "PrincipalFQN": fqn.lower(),
        "Notes": "added by test",
    }.items() <= next(r for r in added if r["PrincipalFQN"] == fqn.lower()).items()
    skipped = kusto.execute_mgmt("devicedata", f".drop database devicedata viewers ('{fqn}') skip-results")
    assert rows(skipped) == []
    assert all(
        r["PrincipalFQN"] != fqn.lower()
        for r in rows(kusto.execute_mgmt("devicedata", ".show database devicedata principals"))
    )


def test_non_admin_caller_gets_the_real_forbidden_body(world: World) -> None:
    viewer = world.directory.add(new_identity("viewer-app"))
    world.cluster.grant("devicedata", "viewers", viewer.fqn)
    client = sdk.kusto_client(world.cluster.url, sdk.credential(viewer.client_id))
    assert rows(client.execute_mgmt("devicedata", ".show database devicedata principals"))
    with pytest.raises(KustoApiError) as info:
        client.execute_mgmt("devicedata", f".add database devicedata admins ('{viewer.fqn}')")
    error = info.value.get_api_error()
    assert error.code == "Forbidden"
    assert error.type == "Kusto.DataNode.Exceptions.UnauthorizedDatabaseAccessException"
    assert error.permanent is True
    assert f"Principal '{viewer.fqn}' is not authorized" in (error.description or "")


def test_raw_forbidden_response_shape(world: World) -> None:
    viewer = world.directory.add(new_identity("viewer-raw"))
    token = world.directory.mint(viewer, "https://kusto.kusto.windows.net")
    response = requests.post(
        f"{world.cluster.url}/v1/rest/mgmt",
        json={"db": "devicedata", "csl": ".show database devicedata principals", "properties": {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "@type", "@message", "@context", "@permanent"}


def test_table_role_needs_a_database_role_first(world: World, kusto: Any) -> None:
    stranger = world.directory.add(new_identity("stranger"))
    with pytest.raises(KustoApiError) as info:
        kusto.execute_mgmt("devicedata", f".add table DeviceTelemetry ingestors ('{stranger.fqn}')")
    assert "must hold a role in database" in described(info.value)
    kusto.execute_mgmt("devicedata", f".add database devicedata users ('{stranger.fqn}')")
    result = rows(kusto.execute_mgmt("devicedata", f".add table DeviceTelemetry ingestors ('{stranger.fqn}') 'tbl'"))
    assert {
        "Role": "Table DeviceTelemetry Ingestor",
        "PrincipalFQN": stranger.fqn.lower(),
        "Notes": "tbl",
    }.items() <= result[0].items()
    listed = rows(kusto.execute_mgmt("devicedata", ".show table DeviceTelemetry principals"))
    assert [r["Role"] for r in listed if r["Role"].startswith("Table ")] == ["Table DeviceTelemetry Ingestor"]
    # Inherited rows follow: the database's roles (filter by scope when reading).
    assert "Database devicedata Admin" in [r["Role"] for r in listed]


def test_table_commands_need_table_admin(world: World) -> None:
    user = world.directory.add(new_identity("db-user"))
    world.cluster.grant("devicedata", "users", user.fqn)
    client = sdk.kusto_client(world.cluster.url, sdk.credential(user.client_id))
    with pytest.raises(KustoApiError) as info:
        client.execute_mgmt("devicedata", f".add table DeviceTelemetry ingestors ('{user.fqn}')")
    assert info.value.get_api_error().code == "Forbidden"
    world.cluster.grant("devicedata", "admins", user.fqn, table="DeviceTelemetry")
    client.execute_mgmt("devicedata", f".add table DeviceTelemetry ingestors ('{user.fqn}')")


def test_caller_own_roles(world: World, kusto: Any) -> None:
    own = rows(kusto.execute_mgmt("devicedata", ".show database devicedata principal roles"))
    assert [r["Role"] for r in own] == ["Admin"]
    assert own[0]["AADObjectID"] == world.healer.object_id


def test_metadata_commands(world: World, kusto: Any) -> None:
    table = world.cluster.table("devicedata", "DeviceTelemetry")
    table.mappings.append(
        {
            "Name": "iotc",
            "Kind": "Json",
            "Mapping": [{"column": "deviceId", "Properties": {"Path": "$.deviceId"}}],
            "LastUpdatedOn": "2026-11-01T00:00:00Z",
        }
    )
    table.row_level_security = {"IsEnabled": True, "Query": "DeviceTelemetry | where deviceId != ''"}
    tables = [r["TableName"] for r in rows(kusto.execute_mgmt("devicedata", ".show tables"))]
    assert tables == ["DeviceTelemetry", "FactoryTelemetry"]
    mappings = rows(kusto.execute_mgmt("devicedata", ".show table DeviceTelemetry ingestion mappings"))
    assert mappings[0]["Name"] == "iotc" and mappings[0]["Kind"] == "Json"
    assert rows(kusto.execute_mgmt("devicedata", ".show table DeviceTelemetry ingestion csv mappings")) == []
    rls = rows(kusto.execute_mgmt("devicedata", ".show table DeviceTelemetry policy row_level_security"))
    assert '"IsEnabled": true' in rls[0]["Policy"]
    rva = rows(kusto.execute_mgmt("devicedata", ".show table DeviceTelemetry policy restricted_view_access"))
    assert rva[0]["Policy"] == "null"


def test_table_details_show_the_effective_streaming_policy(world: World, kusto: Any) -> None:
    database = world.cluster.database("devicedata")
    table = world.cluster.table("devicedata", "DeviceTelemetry")
    table.streaming_ingestion = False

    def details() -> dict[str, Any]:
        found = rows(kusto.execute_mgmt("devicedata", ".show table DeviceTelemetry details"))
        assert len(found) == 1
        return found[0]

    database.streaming_ingestion = True
    row = details()
    assert row["TableName"] == "DeviceTelemetry" and row["DatabaseName"] == "devicedata"
    assert {"TotalRowCount", "AuthorizedPrincipals", "IngestionBatchingPolicy", "TableId"} <= set(row)
    assert '"IsEnabled": true' in row["StreamingIngestionPolicy"]  # inherited from the database
    database.streaming_ingestion = False
    assert details()["StreamingIngestionPolicy"] in (None, "", "null")
    table.streaming_ingestion = True
    assert '"IsEnabled": true' in details()["StreamingIngestionPolicy"]
    with pytest.raises(KustoApiError):  # names are case-sensitive: a near miss is not the table
        kusto.execute_mgmt("devicedata", ".show table devicetelemetry details")
    outsider = world.directory.add(new_identity("no-role-details"))
    client = sdk.kusto_client(world.cluster.url, sdk.credential(outsider.client_id))
    with pytest.raises(KustoApiError) as info:
        client.execute_mgmt("devicedata", ".show table DeviceTelemetry details")
    assert info.value.get_api_error().code == "Forbidden"


def test_ingestion_needs_an_ingesting_role_and_failures_are_listed(world: World, kusto: Any) -> None:
    viewer = world.directory.add(new_identity("viewer-ingest"))
    world.cluster.grant("devicedata", "viewers", viewer.fqn)
    client = sdk.kusto_client(world.cluster.url, sdk.credential(viewer.client_id))
    line = 'contoso,dev-1,2026-11-27T00:00:00Z,default@v1,"{""t"": 1}"'
    with pytest.raises(KustoApiError) as info:
        client.execute_mgmt("devicedata", f".ingest inline into table DeviceTelemetry <| {line}")
    # A principal whose database roles cannot ingest (ADX's error-codes page)
    assert info.value.get_api_error().code == "BadRequest_DatabaseAccessDenied"
    failures = rows(kusto.execute_mgmt("devicedata", ".show ingestion failures"))
    assert len(failures) == 1 and failures[0]["Table"] == "DeviceTelemetry"
    kusto.execute_mgmt("devicedata", f".add database devicedata ingestors ('{viewer.fqn}')")
    client.execute_mgmt("devicedata", f".ingest inline into table DeviceTelemetry <| {line}")
    count = rows(kusto.execute_query("devicedata", "DeviceTelemetry | where deviceId == 'dev-1' | count"))
    assert count == [{"Count": 1}]


def test_verification_query_counts_rows_after_a_point_in_time(world: World, kusto: Any) -> None:
    before = rows(kusto.execute_query("devicedata", "DeviceTelemetry | where ingestion_time() > ago(30m) | count"))
    assert before == [{"Count": 0}]
    world.export_once()
    after = rows(kusto.execute_query("devicedata", "DeviceTelemetry | where ingestion_time() > ago(30m) | count"))
    assert after == [{"Count": 3}]
    result = kusto.execute_query(
        "devicedata",
        "DeviceTelemetry | where ingestion_time() > datetime(2020-01-01) "
        "| summarize Rows=count(), Last=max(ingestion_time()) by applicationId",
    )
    world.export_once()
    summary = {r["applicationId"]: r["Rows"] for r in rows(result)}
    assert summary == {"contoso": 3}
    again = kusto.execute_query("devicedata", "DeviceTelemetry | summarize Rows=count() by applicationId, schema")
    assert [(r["applicationId"], r["schema"], r["Rows"]) for r in rows(again)] == [("contoso", "default@v1", 6)]
    kinds = {c.column_name: c.column_type for c in result.primary_results[0].columns}
    assert kinds == {"applicationId": "string", "Rows": "long", "Last": "datetime"}


def test_unsupported_or_broken_input_gets_a_400_not_a_crash(world: World, kusto: Any) -> None:
    for db, text, fragment in [
        ("devicedata", ".show database devicedata frobnicate", "expected"),
        ("devicedata", ".add database devicedata ownerz ('aadapp=x;y')", "not a database security role"),
        ("devicedata", ".add database devicedata admins 'aadapp=x;y'", "expected '('"),
        (
            "devicedata",
            ".add database devicedata admins ('not-a-principal')",
            "not a valid fully qualified name",
        ),
        ("devicedata", ".show table Nope principals", "of kind 'Table' was not found"),
    ]:
        with pytest.raises(KustoApiError) as info:
            kusto.execute_mgmt(db, text)
        assert fragment in described(info.value), text
    # A missing database answers 404 as a real cluster does; the SDK keeps only the response.
    with pytest.raises(KustoServiceError) as missing:
        kusto.execute_mgmt("nosuchdb", ".show database nosuchdb principals")
    assert missing.value.http_response is not None and missing.value.http_response.status_code == 404
    assert "Entity name 'nosuchdb' of kind 'Database' does not exist." in missing.value.http_response.text
    with pytest.raises(KustoApiError) as info:
        kusto.execute_query("devicedata", "Missing | count")
    assert "SEM0100" in described(info.value)
    with pytest.raises(KustoApiError) as info:
        kusto.execute_query("devicedata", "DeviceTelemetry | join (DeviceTelemetry) on deviceId")
    assert "not supported" in described(info.value)


def test_throttling_and_transient_errors_as_the_client_sees_them(world: World, kusto: Any) -> None:
    world.set_transport("kusto", throttle_rate=1.0, retry_after_s=7)
    with pytest.raises(KustoThrottlingError) as throttled:
        kusto.execute_mgmt("devicedata", ".show tables")
    assert not isinstance(throttled.value, KustoServiceError)
    assert throttled.value.args[1].headers["Retry-After"] == "7"  # the response rides along in args
    world.set_transport("kusto", error_rate=1.0)
    with pytest.raises(KustoApiError) as unavailable:
        kusto.execute_mgmt("devicedata", ".show tables")
    assert unavailable.value.http_response is not None
    assert unavailable.value.http_response.status_code == 503
    assert unavailable.value.get_api_error().permanent is False
    world.faults.clear_transport("kusto")
    assert rows(kusto.execute_mgmt("devicedata", ".show tables"))


def test_connection_reset(world: World, kusto: Any) -> None:
    world.set_transport("kusto", reset_rate=1.0)
    with pytest.raises(KustoNetworkError) as info:
        kusto.execute_mgmt("devicedata", ".show tables")
    assert isinstance(info.value.__cause__, requests.ConnectionError)
    assert world.faults.counters["kusto"].resets >= 1


def test_token_for_another_service_is_refused(world: World) -> None:
    token = world.directory.mint(world.healer, "https://apps.azureiotcentral.com")
    response = requests.post(
        f"{world.cluster.url}/v1/rest/mgmt",
        json={"db": "devicedata", "csl": ".show tables"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error"]["@message"] == "The access token audience is not valid for this service."
    unauthenticated = requests.post(
        f"{world.cluster.url}/v1/rest/mgmt", json={"db": "devicedata", "csl": ".show tables"}, timeout=10
    )
    assert unauthenticated.status_code == 401
