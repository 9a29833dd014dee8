"""An azure-core PipelineClient against the IoT Central stand-in: paging, merge-patch, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from sandbox import sdk
from sandbox.entra import new_identity
from sandbox.iotc.server import ROLE_OPERATOR
from sandbox.world import World

pytestmark = pytest.mark.integration


@pytest.fixture
def contoso(world: World, credential: Any) -> Any:
    return sdk.iotc_client(world.endpoints()["iotcentral_base_url"].format(subdomain="contoso"), credential)


def test_list_exports_follows_next_link(world: World, credential: Any) -> None:
    world.add_app("northwind", exports=7)
    client = sdk.iotc_client(world.endpoints()["iotcentral_base_url"].format(subdomain="northwind"), credential)
    first = sdk.iotc_get(client, "/api/dataExport/exports")
    assert len(first["value"]) == 4 and first["nextLink"].startswith(world.iotc.base_url + "/northwind/api/")
    exports = list(sdk.iotc_pages(client, "/api/dataExport/exports"))
    assert [e["id"] for e in exports] == [f"export-{n}" for n in range(1, 8)]
    destinations = list(sdk.iotc_pages(client, "/api/dataExport/destinations"))
    assert {d["type"] for d in destinations} == {"dataexplorer@v1"}
    assert all(d["authorization"] == {"type": "systemAssignedManagedIdentity"} for d in destinations)


def test_export_and_destination_report_status_and_errors(world: World, contoso: Any) -> None:
    export = sdk.iotc_get(contoso, "/api/dataExport/exports/export-1")
    assert export["status"] == "starting" and export["destinations"] == [{"id": "adx-1"}]
    world.export_once()
    assert sdk.iotc_get(contoso, "/api/dataExport/exports/export-1")["status"] == "healthy"
    world.inject("principal-removed", "contoso")
    world.export_once()
    export = sdk.iotc_get(contoso, "/api/dataExport/exports/export-1")
    dest = sdk.iotc_get(contoso, "/api/dataExport/exports/export-1/destinations")["value"][0]
    assert export["status"] == "error" and dest["status"] == "error"
    # IoT Central's own words, not Kusto's (sandbox/fidelity.py: iotc_error_style)
    assert dest["errors"][0]["code"] == "InsufficientPermissions"
    assert "lacks required permissions" in dest["errors"][0]["message"]
    assert "lastExportTime" in export  # kept from the last good batch


def test_patch_enabled_is_merge_patch(world: World, contoso: Any) -> None:
    def patch(body: dict[str, Any], content_type: str = "application/merge-patch+json") -> Any:
        request = HttpRequest(
            "PATCH",
            contoso.format_url("/api/dataExport/exports/export-1"),
            params={"api-version": sdk.IOTC_API_VERSION},
            json=body,
            headers={"Content-Type": content_type},
        )
        return contoso.send_request(request, enforce_https=False)

    response = patch({"enabled": False})
    assert response.status_code == 200
    assert response.json()["enabled"] is False and response.json()["status"] == "notStarted"
    assert response.json()["displayName"] == "Telemetry to ADX 1"  # untouched fields stay
    assert world.export_once() == {"fabrikam/export-1": "healthy"}
    assert patch({"enabled": True}).json()["status"] == "starting"
    assert patch({"enabled": "yes"}).status_code == 400
    assert patch({"bogus": 1}).json()["error"]["code"] == "InvalidRequestBody"
    assert patch({"enabled": True}, "text/plain").status_code == 415


def test_error_body_and_auth_rules(world: World, contoso: Any, credential: Any) -> None:
    with pytest.raises(HttpResponseError) as info:
        sdk.iotc_get(contoso, "/api/dataExport/exports/nope")
    assert info.value.status_code == 404
    assert info.value.response is not None
    body = json.loads(info.value.response.text())["error"]
    assert set(body) == {"code", "message", "requestId", "time"}
    base = world.endpoints()["iotcentral_base_url"].format(subdomain="contoso")
    anonymous = requests.get(f"{base}/api/dataExport/exports", params={"api-version": sdk.IOTC_API_VERSION}, timeout=10)
    assert anonymous.status_code == 401
    wrong_version = sdk.iotc_client(base, credential)
    response = wrong_version.send_request(
        HttpRequest("GET", f"{base}/api/dataExport/exports", params={"api-version": "2021-04-30"}),
        enforce_https=False,
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "InvalidApiVersionParameter"


def test_caller_must_be_an_app_user_with_data_export_rights(world: World) -> None:
    operator = world.directory.add(new_identity("operator"))
    outsider = world.directory.add(new_identity("outsider"))
    world.iotc.add_user("contoso", operator, ROLE_OPERATOR)
    base = world.endpoints()["iotcentral_base_url"].format(subdomain="contoso")
    for identity, code in ((outsider, 403), (operator, 403)):
        client = sdk.iotc_client(base, sdk.credential(identity.client_id))
        with pytest.raises(HttpResponseError) as info:
            sdk.iotc_get(client, "/api/dataExport/exports")
        assert info.value.status_code == code


def test_put_user_adds_a_service_principal(world: World, contoso: Any) -> None:
    newcomer = world.directory.add(new_identity("newcomer"))
    body = {
        "type": "servicePrincipal",
        "tenantId": newcomer.tenant_id,
        "objectId": newcomer.object_id,
        "roles": [{"role": "344138e9-8de4-4497-8c54-5237e96d6aaf"}],
    }
    request = HttpRequest(
        "PUT",
        contoso.format_url("/api/users/newcomer"),
        params={"api-version": sdk.IOTC_API_VERSION},
        json=body,
    )
    response = contoso.send_request(request, enforce_https=False)
    assert response.status_code == 200 and response.json()["id"] == "newcomer"
    client = sdk.iotc_client(
        world.endpoints()["iotcentral_base_url"].format(subdomain="contoso"),
        sdk.credential(newcomer.client_id),
    )
    assert sdk.iotc_get(client, "/api/dataExport/exports")["value"]


def test_arm_shows_the_app_identity_now(world: World, credential: Any) -> None:
    app = world.iotc.apps["contoso"]
    client = sdk.arm_client(world.endpoints()["arm_url"], credential)
    before = sdk.arm_get(client, app.arm_id)
    assert before["identity"]["principalId"] == world.iotc.identity_of("contoso").object_id
    world.inject("identity-rotated", "contoso")
    after = sdk.arm_get(client, app.arm_id)
    assert after["identity"]["principalId"] != before["identity"]["principalId"]
    assert after["identity"]["type"] == "SystemAssigned"
