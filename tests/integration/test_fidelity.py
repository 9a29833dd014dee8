"""The sandbox behaves like ADX and IoT Central where they are documented, both ways where they
are not (sandbox/fidelity.py), and the healer copes with each: principal ids, role texts, the role
IoT Central needs, its error words, re-created and service-principal destinations, unknown
identities, and verification when rows cannot be counted."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import sdk
from sandbox.entra import TENANT_DOMAIN, new_identity
from sandbox.iotc.delivery import IOTC_ERROR_STYLES
from sandbox.world import World
from shared.adapters.iotcentral import IoTCentralAdapter
from shared.adapters.iotcentral_model import IotcError
from shared.adapters.kusto import KustoAdapter
from shared.adapters.kusto_errors import AdxError
from shared.domain.destination_copy import NotRecreatable, new_destination_id
from shared.domain.diagnosis import Kind
from shared.domain.principals import PrincipalRef
from shared.runs.remedies import recreate_calls as rd
from tests.support.healer_env import Worker, changing_commands, healer_for, inject_and_wait, make_settings, queue_client
from tests.support.helpers import wait_until

pytestmark = pytest.mark.integration
CONTOSO = "contoso:export-1:adx-1"


def rows(result: Any) -> list[dict[str, Any]]:
    table = result.primary_results[0]
    return [{c.column_name: row[c.column_name] for c in table.columns} for row in table]


def adapter(world: World) -> KustoAdapter:
    return KustoAdapter(world.cluster.url, sdk.credential(), retry_budget_s=5)


def iotc(world: World) -> IoTCentralAdapter:
    endpoints = world.endpoints()
    return IoTCentralAdapter(endpoints["iotcentral_base_url"], sdk.credential(), endpoints["arm_url"])


def heal(worker: Worker, world: World, fault: str, app: str = "contoso") -> list[str]:
    inject_and_wait(world, fault, app)
    worker.enqueue_start(f"{app}:export-1:adx-1")
    worker.run_until(lambda: any(o.status in ("healed", "escalated", "not-healed") for o in worker.outcomes), 40)
    return [o.status for o in worker.outcomes]


# ---------------------------------------------------------------------- principal ids


@pytest.mark.parametrize("normalised", [True, False])
def test_listing_is_normalised_or_echoed(world: World, kusto: Any, normalised: bool) -> None:
    world.cluster.list_normalised = normalised
    newcomer = world.directory.add(new_identity("newcomer"))
    typed = f"aadapp={newcomer.object_id.upper()};{TENANT_DOMAIN}"
    kusto.execute_mgmt("devicedata", f".add database devicedata viewers ('{typed}') 'by object id'")
    listed = [r for r in rows(kusto.execute_mgmt("devicedata", ".show database devicedata principals"))]
    row = next(r for r in listed if r["Notes"] == "by object id")
    assert row["PrincipalObjectId"] == newcomer.object_id  # always filled
    assert len(row["RoleAssignmentIdentifier"]) == 36
    if normalised:  # the application id and the tenant GUID, whatever was typed
        assert row["PrincipalFQN"] == f"aadapp={newcomer.client_id};{newcomer.tenant_id}"
    else:
        assert row["PrincipalFQN"] == f"aadapp={newcomer.object_id};{TENANT_DOMAIN}"
    # A drop by the other id removes the same assignment.
    kusto.execute_mgmt(
        "devicedata", f".drop database devicedata viewers ('aadapp={newcomer.client_id};{newcomer.tenant_id}')"
    )
    assert not any(
        r["Notes"] == "by object id"
        for r in rows(kusto.execute_mgmt("devicedata", ".show database devicedata principals"))
    )


@pytest.mark.parametrize("normalised", [True, False])
def test_principal_matched_by_either_id_in_both_listing_styles(world: World, normalised: bool) -> None:
    world.cluster.list_normalised = normalised
    identity = world.iotc.identity_of("contoso")  # granted by object id
    listing = adapter(world).database_principals("devicedata")
    by_object = PrincipalRef(identity.tenant_id.upper(), object_id=identity.object_id.upper())
    assert any(by_object.matches(a) for a in listing)  # FQN (echo) or PrincipalObjectId (normalised)
    if normalised:
        by_client = PrincipalRef(identity.tenant_id, client_id=identity.client_id)
        assert any(by_client.matches(a) for a in listing)
    stranger = PrincipalRef(identity.tenant_id, object_id=new_identity("x").object_id)
    assert not any(stranger.matches(a) for a in listing)


def test_table_listing_includes_inherited_rows_and_the_healer_filters_by_scope(world: World) -> None:
    assignments, skipped = adapter(world).table_listing("devicedata", "DeviceTelemetry")
    assert {a.scope for a in assignments} == {"database"} and skipped == []  # no table row; inherited ones


@pytest.mark.parametrize("style", ["role-name", "cluster-prefix"])
def test_unknown_role_rows_are_skipped_with_a_note(world: World, style: str) -> None:
    world.cluster.cluster_row_text = style
    world.cluster.set_cluster_role("AllDatabasesAdmin", new_identity("platform").fqn)
    assignments, skipped = adapter(world).database_listing("devicedata")
    assert any(a.scope == "database" for a in assignments)  # never a failed read
    if style == "role-name":
        assert [a.role for a in assignments if a.scope == "cluster"] == ["AllDatabasesAdmin"] and not skipped
    else:
        assert len(skipped) == 1 and "Cluster Admin" in skipped[0]


@pytest.mark.parametrize("style", ["singular", "plural", "scoped"])
def test_own_role_text_is_parsed_in_every_style(world: World, style: str, caplog: pytest.LogCaptureFixture) -> None:
    world.cluster.own_role_text = style
    caplog.set_level("INFO", logger="shared.adapters.kusto")
    assert adapter(world).own_roles("devicedata") == {"admins"}
    assert "read as admins" in caplog.text  # the raw text is logged


def test_unknown_identity_is_refused_on_add(world: World, kusto: Any) -> None:
    from azure.kusto.data.exceptions import KustoApiError

    ghost = new_identity("not-replicated-yet")  # never added to the directory
    with pytest.raises(KustoApiError):
        kusto.execute_mgmt(
            "devicedata", f".add database devicedata admins ('aadapp={ghost.object_id};{ghost.tenant_id}')"
        )
    with pytest.raises(AdxError) as info:
        adapter(world).set_role("devicedata", "admins", f"aadapp={ghost.object_id};{ghost.tenant_id}", present=True)
    assert info.value.unknown_principal and not info.value.not_found and not info.value.transient


def test_a_missing_database_answers_404_and_the_adapter_reads_it_as_missing(world: World, kusto: Any) -> None:
    from azure.kusto.data.exceptions import KustoServiceError

    with pytest.raises(KustoServiceError) as raw:  # the SDK keeps the response, not the body's code
        kusto.execute_mgmt("nowhere", ".show database nowhere principals")
    assert raw.value.http_response is not None and raw.value.http_response.status_code == 404
    assert "EntityNameDoesNotExistException" in raw.value.http_response.text
    for read in (
        lambda: adapter(world).database_listing("nowhere"),
        lambda: adapter(world).rows_since("nowhere", "T", world_now()),
    ):
        with pytest.raises(AdxError) as info:
            read()
        assert info.value.not_found and info.value.missing == "database" and not info.value.transient
    with pytest.raises(AdxError) as table:
        adapter(world).table_schema("devicedata", "NoSuchTable")
    assert table.value.not_found and table.value.missing == "table"


def world_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# ---------------------------------------------------------------------- the role IoT Central needs


def test_ingestor_only_is_insufficient_when_admin_is_required(healer_setup: Any) -> None:
    world, _, healer, worker = healer_setup
    reading_before = healer.read(healer.target(CONTOSO))
    assert reading_before.diagnosis.kind == Kind.HEALTHY
    statuses = heal(worker, world, "ingestor-only")
    plan_rows = [r for r in healer.services.store.read_history(CONTOSO) if r.get("Diagnosis")]
    assert plan_rows[-1]["Diagnosis"] == "insufficient-role" and statuses[-1] == "healed"
    assert [c.split()[3] for c in changing_commands(world)] == ["admins"]


def test_ingestor_suffices_when_the_exporter_allows_it(healer_setup: Any) -> None:
    world, _, healer, _ = healer_setup
    world.delivery.exporter_role = "ingestors"
    world.inject("ingestor-only", "contoso")
    world.export_once()
    assert world.iotc.apps["contoso"].exports["export-1"]["status"] == "healthy"
    assert healer.read(healer.target(CONTOSO)).diagnosis.kind == Kind.HEALTHY  # nothing to repair


# ---------------------------------------------------------------------- IoT Central's error words


@pytest.mark.parametrize("style", IOTC_ERROR_STYLES)
def test_permission_classified_in_every_iotc_error_style(healer_setup: Any, style: str) -> None:
    world, _, healer, _ = healer_setup
    world.delivery.iotc_error_style = style
    inject_and_wait(world, "stale-permission")
    error = world.iotc.apps["contoso"].destinations["adx-1"]["errors"][0]
    if style != "kusto":
        assert "is not authorized" not in error["message"]  # never a copy of Kusto's text
    reading = healer.read(healer.target(CONTOSO))
    assert reading.diagnosis.kind == Kind.PRINCIPAL_STALE, reading.diagnosis.summary


def test_table_access_denied_code_alone_is_a_permission_failure(healer_setup: Any) -> None:
    world, _, healer, _ = healer_setup
    inject_and_wait(world, "access-denied-code")
    error = world.iotc.apps["contoso"].destinations["adx-1"]["errors"][0]
    assert error == {"code": "BadRequest_TableAccessDenied", "message": "Unable to ingest data to Azure Data Explorer."}
    assert healer.read(healer.target(CONTOSO)).diagnosis.kind == Kind.PRINCIPAL_STALE


# ---------------------------------------------------------------------- re-creating a destination


def test_destination_in_use_cannot_be_deleted(world: World) -> None:
    client = iotc(world)
    with pytest.raises(IotcError) as info:
        client.delete_destination("contoso", "adx-1")
    assert info.value.status == 409
    assert client.delete_destination("contoso", "no-such-destination") is False
    world.iotc.refuse_delete_in_use = False  # the other way: IoT Central may allow it
    assert client.delete_destination("fabrikam", "adx-1") is True


@pytest.mark.parametrize("refuse", [True, False])
def test_recreate_destination_steps_make_before_break(world: World, refuse: bool) -> None:
    world.iotc.refuse_delete_in_use = refuse
    client = iotc(world)
    world.iotc.apps["contoso"].exports["export-1"]["destinations"] = [{"id": "adx-1", "transform": "{ x: .y }"}]
    copy = rd.prepare(client, "contoso", "export-1", "adx-1", "0123456789abcdef0123456789abcdef")
    assert copy.new_id == "adx-1-r01234567" and copy.reference["transform"] == "{ x: .y }"
    assert new_destination_id(copy.new_id, "fedcba98" * 4) == "adx-1-rfedcba98"  # ids do not grow
    assert rd.create(client, copy)["status"] == "waiting"
    assert rd.create(client, copy)["id"] == copy.new_id  # PUT again: still one copy
    assert rd.point(client, copy) is True and rd.point(client, copy) is False
    assert world.iotc.apps["contoso"].exports["export-1"]["destinations"] == [
        {"id": copy.new_id, "transform": "{ x: .y }"}
    ]
    assert rd.delete_old(client, copy) is True and rd.delete_old(client, copy) is False
    assert list(world.iotc.apps["contoso"].destinations) == [copy.new_id]
    world.export_once()
    assert world.iotc.apps["contoso"].destinations[copy.new_id]["status"] == "healthy"


def test_a_concurrent_export_edit_is_never_overwritten(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports have no ETag: the re-point reads the export again right before its write and
    refuses when a person changed it since; read-only fields are never sent."""
    import json as _json

    client = iotc(world)
    export = world.iotc.apps["contoso"].exports["export-1"]
    export["destinations"] = [{"id": "adx-1", "transform": "{ x: .y }"}]
    copy = rd.prepare(client, "contoso", "export-1", "adx-1", "0123456789abcdef0123456789abcdef")
    rd.create(client, copy)
    export["destinations"] = [{"id": "adx-1", "transform": "{ x: .z }"}]  # a person edits the transform
    with pytest.raises(NotRecreatable, match="changed since"):
        rd.point(client, copy)
    assert export["destinations"] == [{"id": "adx-1", "transform": "{ x: .z }"}]
    with pytest.raises(IotcError) as edited:  # read, then someone writes, then our write
        client.set_destinations("contoso", "export-1", [{"id": copy.new_id}], based_on=[{"id": "adx-1"}])
    assert edited.value.code == "ConcurrentEdit" and export["destinations"][0]["id"] == "adx-1"
    bodies: list[dict[str, Any]] = []
    patch = world.iotc._patch_export

    def seen(request: Any, found: dict[str, Any], app: Any) -> Any:
        bodies.append(_json.loads(request.get_data(as_text=True)))
        return patch(request, found, app)

    monkeypatch.setattr(world.iotc, "_patch_export", seen)
    client._patch_export("contoso", "export-1", {"enabled": True, "lastExportTime": "2026-01-01T00:00:00Z"})
    assert bodies == [{"enabled": True}]


def test_service_principal_destinations_are_not_recreated(world: World) -> None:
    world.add_app("spapp", table="SpTelemetry", auth="servicePrincipal")
    client = iotc(world)
    dest = client.destination("spapp", "adx-1")
    assert dest["authorization"]["clientSecret"] == "*****"
    with pytest.raises(NotRecreatable, match="masked"):
        rd.prepare(client, "spapp", "export-1", "adx-1", "0" * 32)


def test_destination_stale_is_healed_by_re_creating_it(healer_setup: Any) -> None:
    world, _, healer, worker = healer_setup
    statuses = heal(worker, world, "destination-stale")
    assert statuses[-1] == "healed" and changing_commands(world) == []  # ADX untouched
    refs = world.iotc.apps["contoso"].exports["export-1"]["destinations"]
    assert len(refs) == 1 and refs[0]["id"].startswith("adx-1-r")
    assert healer.services.store.load(CONTOSO).destination_id == refs[0]["id"]
    assert healer.target(CONTOSO).destination_id == refs[0]["id"] and healer.target(CONTOSO).key == CONTOSO
    # What a resumed re-creation and a copy's settlement ask first (IoT Central answers 404 for the old one).
    iotc = healer.services.iotc
    assert iotc.has_destination("contoso", refs[0]["id"]) and not iotc.has_destination("contoso", "adx-1")


def test_a_fresh_destination_is_not_bound_to_old_grants(world: World) -> None:
    world.export_once()
    world.inject("destination-stale", "contoso")
    world.export_once()
    assert world.iotc.apps["contoso"].destinations["adx-1"]["status"] == "error"
    assert world.iotc.apps["contoso"].exports["export-1"]["status"] == "error"
    world.clear("destination-stale", "contoso")  # the other way: a destination not bound to its creation
    world.export_once()
    assert world.iotc.apps["contoso"].destinations["adx-1"]["status"] == "healthy"


def test_service_principal_destination_is_repaired_for_that_app(world: World, azurite: Any) -> None:
    world.add_app("spapp", table="SpTelemetry", auth="servicePrincipal")
    settings = make_settings(world, azurite)
    worker = Worker(healer_for(settings), queue_client(settings))
    world.start_exporter(interval_s=0.2)
    try:
        statuses = heal(worker, world, "principal-removed", "spapp")
    finally:
        world.stop_exporter()
    client_id = world.iotc.apps["spapp"].destinations["adx-1"]["authorization"]["clientId"]
    changes = changing_commands(world)
    assert statuses[-1] == "healed" and len(changes) == 1
    assert f"aadapp={client_id};" in changes[0]  # that app, not IoT Central's managed identity
    assert world.iotc.identity_of("spapp").object_id not in changes[0]


# ---------------------------------------------------------------------- unknown identities


def test_unknown_identity_is_retried_a_bounded_time_then_escalated(healer_setup: Any, azurite: Any) -> None:
    world = healer_setup[0]
    settings = make_settings(world, azurite, unknown_identity_retry_seconds=2)
    healer = healer_for(settings)
    worker = Worker(healer, queue_client(settings))
    statuses = heal(worker, world, "unknown-identity")
    assert statuses[-1] == "escalated" and statuses.count("waiting") >= 2
    state = healer.services.store.load(CONTOSO)
    assert state.escalated and "unknown to Entra" in state.escalation_reason and state.lease_owner == ""
    ghost = world.iotc.apps["contoso"].arm_principal_override
    assert all(ghost in c for c in changing_commands(world))  # only the refused adds of the new identity


def test_a_re_add_whose_identity_vanished_is_abandoned_not_retried_forever(healer_setup: Any, azurite: Any) -> None:
    world = healer_setup[0]
    settings = make_settings(world, azurite, remedy_order="refresh", unknown_identity_retry_seconds=0)
    healer = healer_for(settings)
    worker = Worker(healer, queue_client(settings))
    inject_and_wait(world, "stale-permission")
    worker.enqueue_start(CONTOSO)
    worker.run_until(lambda: healer.services.store.load(CONTOSO).phase == "dropped", 20)
    world.directory.add(world.iotc.identity_of("contoso").rotated())  # Entra no longer knows the dropped one
    worker.run_until(lambda: healer.services.store.load(CONTOSO).escalated, 20)
    state = healer.services.store.load(CONTOSO)
    assert state.pending_readd is not None and state.pending_readd.abandoned
    assert "unknown to Entra" in state.escalation_reason
    before = len(world.cluster.command_log)
    healer.sweep()
    assert len(world.cluster.command_log) == before  # the sweep does not retry it forever


# ---------------------------------------------------------------------- verification without a count


def test_simulated_devices_send_nothing_with_a_managed_identity(world: World) -> None:
    world.export_once()
    before = len(world.cluster.table("devicedata", "DeviceTelemetry").rows)
    stamp = world.iotc.apps["contoso"].exports["export-1"]["lastExportTime"]
    for device in world.iotc.apps["contoso"].devices.values():
        device["simulated"] = True
    export = world.iotc.apps["contoso"].exports["export-1"]

    def exported_again() -> bool:
        world.export_once()
        return bool(export["lastExportTime"] != stamp)

    wait_until(exported_again, 5, "a new export time")
    assert len(world.cluster.table("devicedata", "DeviceTelemetry").rows) == before
    assert world.iotc.apps["contoso"].exports["export-1"]["status"] == "healthy"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("restricted-view", "restricted view access"),
        ("row-level-security", "row-level security"),
        ("ingestion-time-disabled", "IngestionTime policy is disabled"),
        ("simulated-devices", "only simulated devices"),
    ],
)
def test_verified_by_status_when_rows_cannot_be_counted(healer_setup: Any, fault: str, reason: str) -> None:
    world, _, _, worker = healer_setup
    statuses = heal(worker, world, fault)
    healed = [o for o in worker.outcomes if o.status == "healed"]
    assert statuses[-1] == "healed" and healed, [(o.status, o.detail) for o in worker.outcomes]
    assert "rows cannot be counted" in healed[0].detail and reason in healed[0].detail


def test_denials_carry_a_mix_of_documented_codes(world: World) -> None:
    world.delivery.iotc_error_style = "kusto"
    identity = world.iotc.identity_of("contoso")
    db = world.cluster.database("devicedata")
    db.principals[:] = [a for a in db.principals if not a.held_by(identity)]
    world.cluster.grant("devicedata", "viewers", f"aadapp={identity.object_id};{identity.tenant_id}")
    world.export_once()
    assert world.iotc.apps["contoso"].destinations["adx-1"]["errors"][0]["code"] == "BadRequest_DatabaseAccessDenied"
    world.inject("unknown-identity", "contoso")
    world.export_once()
    assert (
        world.iotc.apps["contoso"].destinations["adx-1"]["errors"][0]["code"] == "BadRequest_InvalidKustoIdentityToken"
    )


def test_checklist_in_a_diagnosis_reports_a_table_name_that_differs_only_in_case(healer_setup: Any) -> None:
    world, _, healer, _ = healer_setup
    items = {c.name: c for c in healer.read(healer.target(CONTOSO)).diagnosis.checklist}
    assert items["table"].status == "pass" and items["streaming-ingestion"].status == "pass"
    assert items["managed-identity"].status == "pass" and items["cluster-uri"].status == "not-applicable"
    db = world.cluster.database("devicedata")
    table = db.tables.pop("DeviceTelemetry")
    table.name = "devicetelemetry"  # someone re-created it with another case
    db.tables[table.name] = table
    reading = healer.read(healer.target(CONTOSO))
    items = {c.name: c for c in reading.diagnosis.checklist}
    assert reading.diagnosis.kind == Kind.NON_PERMISSION
    assert items["table"].status == "fail" and "'devicetelemetry' exists" in items["table"].evidence


def test_recreate_refused_by_the_destination_limit_escalates(healer_setup: Any) -> None:
    world, _, healer, worker = healer_setup
    for n in range(len(world.iotc.apps["contoso"].destinations), 10):
        world.iotc.put_destination("contoso", f"spare-{n}", {"type": "webhook@v1", "displayName": "spare"})
    statuses = heal(worker, world, "destination-stale")
    assert statuses[-1] == "escalated"
    state = healer.services.store.load(CONTOSO)
    assert "refused the copy" in state.escalation_reason and state.lease_owner == "" and not state.destination_id
    assert world.iotc.apps["contoso"].exports["export-1"]["destinations"] == [{"id": "adx-1"}]  # untouched
