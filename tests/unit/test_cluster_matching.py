"""An alert or a FailedIngestion row is matched to the targets on the cluster it names, and only
those: alerts from the target's cluster, from another cluster, and from a workspace two clusters
share (told apart by the `_ResourceId` dimension). No URL is exempt: a loopback cluster URL names
no cluster, so such a target matches only through its `cluster_resource_id`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.adapters.loganalytics import FailureGroup
from shared.detection.detector import _same_table
from shared.domain.alerts import match_targets, parse_alert
from shared.domain.targets import AppConfig, ConfigError, PrincipalConfig, Target, parse_apps, parse_targets

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "11111111-1111-4111-8111-111111111111"
SUB = "22222222-2222-4222-8222-222222222222"
PROD = f"/subscriptions/{SUB}/resourceGroups/rg-adx/providers/Microsoft.Kusto/clusters/adxprod"
TEST = f"/subscriptions/{SUB}/resourceGroups/rg-adx/providers/Microsoft.Kusto/clusters/adxtest"
LOCAL = f"/subscriptions/{SUB}/resourceGroups/rg-adx/providers/Microsoft.Kusto/clusters/adxlocal"
OTHER = f"/subscriptions/{SUB}/resourceGroups/rg-other/providers/Microsoft.Kusto/clusters/adxother"
PROD_URL = "https://adxprod.westeurope.kusto.windows.net"
WORKSPACE = f"/subscriptions/{SUB}/resourcegroups/rg-adx/providers/microsoft.operationalinsights/workspaces/adx-logs"


def target(app: str, cluster_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "app": app,
        "export_id": "export-1",
        "destination_id": "adx-1",
        "cluster_url": cluster_url,
        # the same database and table on every cluster: only the cluster tells them apart
        "database": "devicedata",
        "table": "DeviceTelemetry",
        "principal": {"object_id": OID, "tenant_id": TENANT},
        **extra,
    }


TARGETS = parse_targets(
    json.dumps(
        [
            target("prod", "https://adxprod.westeurope.kusto.windows.net"),
            target("test", "https://adxtest.westeurope.kusto.windows.net", cluster_resource_id=TEST),
            # a loopback URL (a local stand-in) names nothing: the resource id does
            target("local", "http://127.0.0.1:8080", cluster_resource_id=LOCAL),
            # ... and without one it is on no named cluster at all
            target("nameless", "http://127.0.0.1:8081"),
        ]
    )
)


def log_alert(*, targets: list[str], resource_dimension: str | None) -> bytes:
    dimensions = [{"name": "Database", "value": "devicedata"}, {"name": "Table", "value": "DeviceTelemetry"}]
    if resource_dimension is not None:
        # Log Analytics writes _ResourceId in lower case
        dimensions.append({"name": "_ResourceId", "value": resource_dimension.lower()})
    payload = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": "/subscriptions/x/providers/Microsoft.AlertsManagement/alerts/1",
                "monitorCondition": "Fired",
                "monitoringService": "Log Alerts V2",
                "alertRule": "iotc-adx-healer-failed-ingestion",
                "alertTargetIDs": targets,
            },
            "alertContext": {"conditionType": "LogQueryCriteria", "condition": {"allOf": [{"dimensions": dimensions}]}},
        },
    }
    return json.dumps(payload).encode()


def matched(body: bytes) -> list[str]:
    return [t.app for t in match_targets(parse_alert(body, "application/json"), TARGETS)]


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [(PROD, ["prod"]), (TEST, ["test"]), (LOCAL, ["local"]), (OTHER, [])],
    ids=["by-url-name", "by-resource-id", "loopback-by-resource-id", "another-cluster"],
)
def test_an_alert_fired_on_a_cluster_matches_that_clusters_targets_only(cluster: str, expected: list[str]) -> None:
    assert matched(log_alert(targets=[cluster.lower()], resource_dimension=None)) == expected


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [(PROD, ["prod"]), (TEST, ["test"]), (LOCAL, ["local"]), (OTHER, [])],
    ids=["prod", "test", "local", "another-cluster"],
)
def test_a_workspace_shared_by_clusters_is_told_apart_by_resource_id(cluster: str, expected: list[str]) -> None:
    assert matched(log_alert(targets=[WORKSPACE], resource_dimension=cluster)) == expected


def test_a_workspace_alert_naming_no_cluster_matches_by_database_and_table() -> None:
    # An older rule without the _ResourceId dimension: every target with that table is a candidate.
    assert matched(log_alert(targets=[WORKSPACE], resource_dimension=None)) == ["prod", "test", "local", "nameless"]


def test_a_loopback_target_without_a_resource_id_matches_no_named_cluster() -> None:
    nameless = next(t for t in TARGETS if t.app == "nameless")
    assert nameless.cluster_name is None
    for cluster in (PROD, TEST, LOCAL, OTHER):
        assert not nameless.on_cluster(cluster)
        assert "nameless" not in matched(log_alert(targets=[WORKSPACE], resource_dimension=cluster))


def group(resource_id: str) -> FailureGroup:
    return FailureGroup("devicedata", "DeviceTelemetry", "Forbidden", 3, None, None, "denied", resource_id.lower())


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [(PROD, ["prod"]), (TEST, ["test"]), (LOCAL, ["local"]), (OTHER, []), ("", [])],
    ids=["prod", "test", "local", "another-cluster", "no-resource-id"],
)
def test_failed_ingestion_rows_of_a_shared_workspace_match_their_clusters_targets(
    cluster: str, expected: list[str]
) -> None:
    assert [t.app for t in TARGETS if _same_table(t, group(cluster))] == expected


def test_a_resource_id_that_contradicts_the_url_is_refused_naming_both() -> None:
    with pytest.raises(ConfigError, match="cluster_resource_id") as caught:
        parse_targets(json.dumps([target("x", PROD_URL, cluster_resource_id=TEST)]))
    assert "adxtest" in str(caught.value) and "adxprod" in str(caught.value)


@pytest.mark.parametrize(
    "bad",
    [
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.IoTCentral/iotApps/contoso",
        "adxprod",
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Kusto/clusters/adx prod",
    ],
)
def test_a_cluster_resource_id_must_be_one(bad: str) -> None:
    with pytest.raises(ConfigError, match="cluster_resource_id"):
        parse_targets(json.dumps([target("x", PROD_URL, cluster_resource_id=bad)]))


def test_the_sandboxs_targets_carry_its_clusters_resource_id() -> None:
    from sandbox.arm_ids import ADX_RESOURCE_ID
    from sandbox.healer_config import targets_for
    from sandbox.world import World

    world = World()
    world.add_app("contoso")
    configured = [Target.model_validate(t) for t in targets_for(world)]
    assert configured and all(t.cluster_resource_id == ADX_RESOURCE_ID for t in configured)
    assert all(t.on_cluster(ADX_RESOURCE_ID) and not t.on_cluster(OTHER) for t in configured)


def test_discovered_targets_carry_the_resource_id_configured_for_their_cluster() -> None:
    from shared.detection.detector import _discover

    app = AppConfig(
        app="contoso",
        principal=PrincipalConfig(tenant_id=TENANT, object_id=OID),
        clusters=("http://127.0.0.1:8080", PROD_URL),
        cluster_resource_ids={"http://127.0.0.1:8080/": LOCAL},
    )
    exports = [{"id": "export-1", "destinations": [{"id": "adx-1"}, {"id": "adx-2"}]}]
    dests = {
        "adx-1": {"id": "adx-1", "type": "dataexplorer@v1", "clusterUrl": "http://127.0.0.1:8080",
                  "database": "devicedata", "table": "DeviceTelemetry"},
        "adx-2": {"id": "adx-2", "type": "dataexplorer@v1", "clusterUrl": PROD_URL,
                  "database": "devicedata", "table": "DeviceTelemetry"},
    }  # fmt: skip
    found = {t.destination_id: t for t in _discover(app, exports, dests, app.principal, {})}
    assert found["adx-1"].cluster_resource_id == LOCAL and found["adx-1"].on_cluster(LOCAL.lower())
    assert found["adx-2"].cluster_resource_id is None and found["adx-2"].on_cluster(PROD)
    assert not found["adx-1"].on_cluster(PROD) and not found["adx-2"].on_cluster(LOCAL)


@pytest.mark.parametrize(
    ("ids", "why"),
    [
        ({"http://127.0.0.1:9999": LOCAL}, "not in clusters"),
        ({"http://127.0.0.1:8080": "adxlocal"}, "not an ADX cluster resource id"),
    ],
)
def test_resource_ids_of_apps_are_checked(ids: dict[str, str], why: str) -> None:
    app = {
        "app": "contoso",
        "iotc_resource_id": None,
        "clusters": ["http://127.0.0.1:8080"],
        "cluster_resource_ids": ids,
    }
    app["principal"] = {"tenant_id": TENANT, "object_id": OID}
    with pytest.raises(ConfigError, match=why):
        parse_apps(json.dumps([app]))
