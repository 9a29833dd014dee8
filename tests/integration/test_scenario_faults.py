"""Every sandbox fault shows its symptoms in ADX, IoT Central and Log Analytics, and clears as described."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.kusto.data.exceptions import KustoApiError, KustoThrottlingError

from sandbox import sdk
from sandbox.symptoms import Observer
from sandbox.world import World

pytestmark = pytest.mark.integration


def app_fqn(world: World, subdomain: str) -> str:
    """How ADX lists the app's identity: its application id and the tenant GUID."""
    identity = world.iotc.identity_of(subdomain)
    return f"aadapp={identity.client_id};{identity.tenant_id}"


def repair_stale(world: World, kusto: Any) -> None:
    fqn = app_fqn(world, "contoso")
    kusto.execute_mgmt("devicedata", f".drop database devicedata admins ('{fqn}')")
    kusto.execute_mgmt("devicedata", f".add database devicedata admins ('{fqn}') 'IoT Central contoso data export'")


def repair_add(world: World, kusto: Any) -> None:
    kusto.execute_mgmt("devicedata", f".add database devicedata admins ('{app_fqn(world, 'contoso')}')")


def repair_table(world: World, kusto: Any) -> None:
    kusto.execute_mgmt(
        "devicedata",
        ".create table DeviceTelemetry (applicationId:string, deviceId:string, enqueuedTime:datetime, "
        "schema:string, telemetry:dynamic)",
    )
    repair_add(world, kusto)  # a recreated table has no table-level roles; the database role still holds


def repair_by_people(world: World, kusto: Any) -> None:
    with pytest.raises(KustoApiError) as info:
        repair_add(world, kusto)
    assert info.value.get_api_error().code == "Forbidden"
    world.clear("healer-not-admin", "contoso")


# fault → (IoT Central's error code, current principal listed at database level, how it is repaired);
# IoT Central words errors[] its own way (sandbox/fidelity.py), not as a copy of Kusto's.
DENIED = "InsufficientPermissions"
CASES: dict[str, tuple[str, bool, Callable[[World, Any], None]]] = {
    "stale-permission": (DENIED, True, repair_stale),
    "principal-removed": (DENIED, False, repair_add),
    "identity-rotated": (DENIED, False, repair_add),
    "table-level-only": (DENIED, False, repair_add),
    "healer-not-admin": (DENIED, False, repair_by_people),
    "table-missing": ("IngestionFailed", True, repair_table),
}


@pytest.mark.parametrize("fault", list(CASES))
def test_fault_symptoms_in_all_three_services_and_repair(world: World, kusto: Any, fault: str) -> None:
    code, listed, repair = CASES[fault]
    observer = Observer(world)
    target = world.target("contoso")
    world.export_once()
    healthy = observer.read(target)
    assert not healthy.broken and healthy.failed_ingestion_rows == 0 and healthy.principal_listed

    world.inject(fault, "contoso")
    world.export_once()
    broken = observer.read(target)
    assert (broken.export_status, broken.destination_status) == ("error", "error")
    assert broken.error_code == code
    assert broken.principal_listed is listed
    assert broken.failed_ingestion_rows == 1
    world.export_once()
    assert observer.failed_ingestion(target) == 2
    assert not observer.read(world.target("fabrikam")).broken  # the other app is untouched

    repair(world, kusto)
    world.export_once()
    repaired = observer.read(target)
    assert not repaired.broken and repaired.principal_listed
    assert observer.failed_ingestion(target) == 2  # no new failures


def test_stale_permission_survives_a_re_add_without_drop(world: World, kusto: Any) -> None:
    world.inject("stale-permission", "contoso")
    repair_add(world, kusto)  # adding what is already there changes nothing
    world.export_once()
    assert Observer(world).read(world.target("contoso")).broken


def test_identity_rotation_leaves_the_old_principal_in_adx(world: World, kusto: Any) -> None:
    old = app_fqn(world, "contoso")
    fault = world.inject("identity-rotated", "contoso")
    listed = [
        r["PrincipalFQN"]
        for r in kusto.execute_mgmt("devicedata", ".show database devicedata principals").primary_results[0]
    ]
    assert old.lower() in listed
    assert fault.detail["old_object_id"] != fault.detail["new_object_id"]


def test_table_level_only_keeps_a_table_role(world: World, kusto: Any) -> None:
    world.inject("table-level-only", "contoso")
    table_roles = kusto.execute_mgmt("devicedata", ".show table DeviceTelemetry principals").primary_results[0]
    assert [r["Role"] for r in table_roles if r["Role"].startswith("Table ")] == ["Table DeviceTelemetry Ingestor"]


def test_healer_not_admin_shows_in_its_own_roles(world: World, kusto: Any) -> None:
    world.inject("healer-not-admin", "contoso")
    own = kusto.execute_mgmt("devicedata", ".show database devicedata principal roles").primary_results[0]
    assert [r["Role"] for r in own] == ["Viewer"]


def call_service(world: World, credential: Any, service: str) -> tuple[int, str | None]:
    """One call through the service's real client, without client retries: (status, Retry-After)."""
    endpoints = world.endpoints()
    try:
        if service == "kusto":
            sdk.kusto_client(endpoints["kusto_cluster_url"], credential).execute_mgmt("devicedata", ".show tables")
        elif service == "iotcentral":
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import BearerTokenCredentialPolicy

            iotc: PipelineClient[Any, Any] = PipelineClient(
                base_url=endpoints["iotcentral_base_url"].format(subdomain="contoso"),
                policies=[BearerTokenCredentialPolicy(credential, sdk.IOTC_SCOPE)],
            )
            sdk.iotc_get(iotc, "/api/dataExport/exports")
        else:
            from azure.monitor.query import LogsQueryClient

            logs = LogsQueryClient(
                credential,
                endpoint=endpoints["loganalytics_endpoint"],
                retry_total=0,
                audience="https://api.loganalytics.io",
            )
            logs.query_workspace(
                world.workspace.workspace_id, "FailedIngestion | count", timespan=None, enforce_https=False
            )
    except KustoThrottlingError as exc:
        response = exc.args[1]  # the SDK keeps the HTTP response in args
        return response.status_code, response.headers.get("Retry-After")
    except KustoApiError as exc:
        assert exc.http_response is not None
        return exc.http_response.status_code, exc.http_response.headers.get("Retry-After")
    except HttpResponseError as exc:
        assert exc.status_code is not None and exc.response is not None
        headers: Any = getattr(exc.response, "headers", {})
        return exc.status_code, headers.get("Retry-After")
    return 200, None


@pytest.mark.parametrize("service", ["kusto", "iotcentral", "loganalytics"])
def test_throttling_and_5xx_reach_every_service(world: World, credential: Any, service: str) -> None:
    world.set_transport(service, throttle_rate=1.0, retry_after_s=3)
    assert call_service(world, credential, service) == (429, "3")
    world.set_transport(service, error_rate=1.0, error_status=503)
    assert call_service(world, credential, service) == (503, None)
    world.faults.clear_transport(service)
    assert call_service(world, credential, service) == (200, None)
    counters = world.faults.counters[service]
    assert (counters.throttled, counters.errors) == (1, 1)


def test_control_endpoint_injects_and_reports(world: World) -> None:
    control = world.endpoints()["control_url"]
    assert (
        requests.post(f"{control}/faults", json={"kind": "principal-removed", "app": "contoso"}, timeout=10).status_code
        == 201
    )
    tick = requests.post(f"{control}/exporter/tick", timeout=10).json()
    assert tick == {"contoso/export-1": "error", "fabrikam/export-1": "healthy"}
    state = requests.get(f"{control}/state", timeout=10).json()
    assert state["faults"] == ["principal-removed:contoso"] and state["failed_ingestion_rows"] == 1
    bad = requests.post(f"{control}/faults", json={"kind": "meteor-strike", "app": "contoso"}, timeout=10)
    assert bad.status_code == 400 and "kind must be one of" in bad.json()["error"]
    bad_app = requests.post(f"{control}/faults", json={"kind": "table-missing", "app": "nowhere"}, timeout=10)
    assert bad_app.status_code == 400 and "app must be one of" in bad_app.json()["error"]
    bad_rate = requests.post(
        f"{control}/faults", json={"kind": "transport", "service": "kusto", "throttle_rate": 2}, timeout=10
    )
    assert bad_rate.status_code == 400 and "throttle_rate" in bad_rate.json()["error"]
    assert requests.post(f"{control}/faults/clear", json={"kind": "principal-removed", "app": "contoso"}, timeout=10).ok
    assert requests.post(f"{control}/exporter/tick", timeout=10).json()["contoso/export-1"] == "healthy"


def test_gateway_html_answers_one_apps_api_with_a_page(world: World) -> None:
    """Something in front of the app's API answers HTTP 200 with an HTML page: the adapter names
    the answer (status, content type) instead of reading it as JSON; the other app answers as ever."""
    from shared.adapters.iotcentral import IoTCentralAdapter
    from shared.adapters.iotcentral_model import IotcError

    endpoints = world.endpoints()
    iotc = IoTCentralAdapter(endpoints["iotcentral_base_url"], sdk.credential(), endpoints["arm_url"])
    world.inject("gateway-html", "contoso")
    base = endpoints["iotcentral_base_url"].format(subdomain="contoso")
    page = requests.get(f"{base}/api/dataExport/exports", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    with pytest.raises(IotcError) as info:
        iotc.exports("contoso")
    assert info.value.code == "UnexpectedBody" and "text/html" in str(info.value)
    assert [e["id"] for e in iotc.exports("fabrikam")] == ["export-1"]
    world.clear("gateway-html", "contoso")
    assert [e["id"] for e in iotc.exports("contoso")] == ["export-1"]
