"""Pure logic behind the fidelity fixes: principal matching, role texts, error classification,
the checklist, remedy order, destination status and re-creation ids."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.iotcentral_model import ExportStatus, service_principal_of
from shared.config.settings import Settings
from shared.domain import checklist
from shared.domain.destination_copy import new_destination_id, recreatable
from shared.domain.diagnosis import Evidence, is_permission_failure
from shared.domain.principals import Assignment, PrincipalRef, own_role, parse_listing
from shared.domain.targets import ConfigError

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "11111111-1111-4111-8111-111111111111"
CID = "22222222-2222-4222-8222-222222222222"


def listed(fqn: str, object_id: str = "") -> Assignment:
    return Assignment("database", "admins", fqn, object_id, "app", "")


@pytest.mark.parametrize(
    ("row", "configured", "match"),
    [
        (listed(f"aadapp={CID};{TENANT}", OID), PrincipalRef(TENANT, object_id=OID), True),  # via PrincipalObjectId
        (listed(f"aadapp={CID.upper()};{TENANT.upper()}", OID), PrincipalRef(TENANT, client_id=CID), True),
        (listed(f"aadapp={OID};{TENANT}", OID), PrincipalRef(TENANT, object_id=OID.upper()), True),
        (listed(f"aadapp={CID};{OID}", ""), PrincipalRef(TENANT, client_id=CID), False),  # another tenant
        (listed(f"aadapp={CID};{TENANT}", CID), PrincipalRef(TENANT, object_id=OID), False),
    ],
)
def test_principals_match_by_either_id_case_insensitively(
    row: Assignment, configured: PrincipalRef, match: bool
) -> None:
    assert configured.matches(row) is match


def test_listing_rows_with_unknown_roles_are_skipped_with_a_note() -> None:
    rows = [
        {"Role": "Database db Ingestor", "PrincipalFQN": f"aadapp={CID};{TENANT}", "PrincipalObjectId": OID},
        {"Role": "Cluster Admin", "PrincipalFQN": f"aadapp={CID};{TENANT}"},
        {"Role": "AllDatabasesMonitor", "PrincipalFQN": f"aadapp={CID};{TENANT}"},
        {"Role": "database db ADMINS", "PrincipalFQN": f"aadapp={CID};{TENANT}"},
        {"Role": "Function f Admin", "PrincipalFQN": f"aadapp={CID};{TENANT}"},
    ]
    assignments, skipped = parse_listing(rows)
    assert [(a.scope, a.role) for a in assignments] == [
        ("database", "ingestors"),
        ("cluster", "AllDatabasesMonitor"),
        ("database", "admins"),
    ]
    assert len(skipped) == 2 and "Cluster Admin" in skipped[0]


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("Admin", "admins"),
        ("Admins", "admins"),
        ("Database db Admin", "admins"),
        ("viewer", "viewers"),
        ("AllDatabasesAdmin", "AllDatabasesAdmin"),
        ("unrestrictedviewers", "unrestrictedviewers"),
        ("Owner", None),
    ],
)
def test_own_role_text_is_read_tolerantly(text: str, role: str | None) -> None:
    assert own_role(text) == role


@pytest.mark.parametrize(
    ("code", "message", "permission"),
    [
        ("Forbidden", "", True),
        ("BadRequest_DatabaseAccessDenied", "", True),
        ("BadRequest_TableAccessDenied", "", True),
        ("BadRequest_InvalidKustoIdentityToken", "", True),
        ("x", "Access to table is denied.", True),
        ("x", "Principal 'aadapp=a;b' is not authorized to perform operation 'Ingest'", True),
        ("x", "Caller is not authorized to perform this action", True),
        ("InsufficientPermissions", "Unable to ingest data to Azure Data Explorer.", True),
        ("ExportFailed", "Principal lacks required permissions", True),
        ("IngestionFailed", "Unable to ingest data to Azure Data Explorer: the table was not found.", False),
        ("InvalidResponse", "The webhook returned a 4xx status code.", False),
        ("BadRequest_EntityNotFound", "Entity ID 'T' of kind 'Table' was not found.", False),
    ],
)
def test_permission_failures_by_codes_and_keywords(code: str, message: str, permission: bool) -> None:
    assert is_permission_failure(code, message) is permission
    assert Evidence("iotcentral", code, message).permission is permission


def test_a_target_is_judged_by_its_destination_case_insensitively() -> None:
    status = ExportStatus("e", True, "error", (("x", "other destination down"),), "d", "Healthy", ())
    assert status.healthy  # another destination's failure does not make this target unhealthy
    assert not ExportStatus("e", False, "healthy", (), "d", "healthy", ()).healthy  # disabled export


def test_service_principal_destination_names_the_principal_adx_must_know() -> None:
    dest = {
        "authorization": {
            "type": "servicePrincipal",
            "clientId": CID.upper(),
            "tenantId": TENANT,
            "clientSecret": "*****",
        }
    }
    assert service_principal_of(dest) == PrincipalRef(TENANT, client_id=CID)
    assert service_principal_of({"authorization": {"type": "systemAssignedManagedIdentity"}}) is None
    assert (
        service_principal_of({"authorization": {"type": "servicePrincipal", "clientId": "x", "tenantId": "y"}}) is None
    )
    assert "masked" in recreatable({"type": "dataexplorer@v1", **dest})
    assert recreatable({"type": "dataexplorer@v1", "authorization": {"type": "systemAssignedManagedIdentity"}}) == ""


def test_new_destination_ids_are_stable_per_run_and_bounded() -> None:
    run = "abcdef0123456789" * 2
    assert new_destination_id("adx-1", run) == "adx-1-rabcdef01"
    assert new_destination_id("adx-1-r12345678", run) == "adx-1-rabcdef01"
    assert len(new_destination_id("x" * 128, run)) == 128


def settings(**values: Any) -> Settings:
    return Settings(**values)


def test_remedy_order_setting() -> None:
    assert settings().remedies == ("recreate-destination", "refresh")
    assert settings(remedy_order=" refresh ").remedies == ("refresh",)
    for bad in ("", "refresh,refresh", "drop"):
        with pytest.raises(ValueError, match="remedies"):
            settings(remedy_order=bad)


def test_remedy_order_error_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config.settings import load_settings

    monkeypatch.setenv("HEALER_REMEDY_ORDER", "drop-wait-readd")
    with pytest.raises(ConfigError, match="HEALER_REMEDY_ORDER"):
        load_settings()


def facts(**changes: object) -> checklist.ChecklistInput:
    base: dict[str, object] = {
        "cluster_url": "https://iottelemetry.westus2.kusto.windows.net",
        "database": "devicedata",
        "table": "DeviceTelemetry",
        "destination": {
            "clusterUrl": "https://iottelemetry.westus2.kusto.windows.net",
            "authorization": {"type": "systemAssignedManagedIdentity"},
        },
        "export_enabled": True,
        "database_exists": True,
        "table_exists": True,
        "table_near_miss": None,
        "streaming_ingestion": True,
        "row_level_security": False,
        "identity_on": True,
    }
    base.update(changes)
    return checklist.ChecklistInput(**base)  # type: ignore[arg-type]


def by_name(data: checklist.ChecklistInput) -> dict[str, checklist.CheckItem]:
    return {item.name: item for item in checklist.run(data)}


def test_the_forums_checklist_passes_a_good_configuration() -> None:
    items = by_name(facts())
    assert {n for n, i in items.items() if i.status == "pass"} == {
        "cluster-uri",
        "database",
        "table",
        "streaming-ingestion",
        "destination-auth",
        "export-enabled",
        "managed-identity",
    }
    assert {n for n, i in items.items() if i.status == "not-applicable"} == {
        "ingestion-mapping-name",
        "row-level-security",
        "cluster-role",
    }
    assert "no mapping-name field" in items["ingestion-mapping-name"].evidence
    assert "governs queries, not ingestion" in items["row-level-security"].evidence


@pytest.mark.parametrize(
    ("changes", "item", "status", "evidence"),
    [
        ({"destination": {"clusterUrl": "https://iottelemetry.kusto.windows.net"}}, "cluster-uri", "fail", "full URI"),
        ({"destination": {"clusterUrl": "iottelemetry.westus2.kusto.windows.net"}}, "cluster-uri", "fail", "full URI"),
        ({"table_exists": False, "table_near_miss": "devicetelemetry"}, "table", "fail", "case-sensitive"),
        ({"database_exists": False}, "database", "fail", "case-sensitive"),
        ({"streaming_ingestion": False}, "streaming-ingestion", "fail", "streaming-ingestion policy"),
        ({"export_enabled": False}, "export-enabled", "fail", "disabled"),
        ({"identity_on": False}, "managed-identity", "fail", "no system-assigned identity"),
        ({"identity_on": None}, "managed-identity", "not-applicable", "iotc_resource_id"),
        (
            {"destination": {"authorization": {"type": "servicePrincipal", "clientId": CID, "tenantId": TENANT}}},
            "managed-identity",
            "not-applicable",
            "service principal",
        ),
        ({"destination": {"clusterUrl": "http://127.0.0.1:8080"}}, "cluster-uri", "not-applicable", "local stand-in"),
    ],
)
def test_each_checklist_item_fails_with_evidence(
    changes: dict[str, object], item: str, status: str, evidence: str
) -> None:
    found = by_name(facts(**changes))[item]
    assert found.status == status and evidence in found.evidence, found


def test_discovery_takes_a_service_principal_destination_as_its_own_principal() -> None:
    from shared.detection.detector import _discover
    from shared.domain.targets import AppConfig, PrincipalConfig

    mine = PrincipalConfig(tenant_id=TENANT, object_id=OID)
    app = AppConfig(app="contoso", principal=mine, clusters=("https://c.westus2.kusto.windows.net",))
    base = {"type": "dataexplorer@v1", "clusterUrl": "https://c.westus2.kusto.windows.net", "database": "db"}
    dests = {
        "mi": {"id": "mi", **base, "table": "A", "authorization": {"type": "systemAssignedManagedIdentity"}},
        "sp": {
            "id": "sp",
            **base,
            "table": "B",
            "authorization": {"type": "servicePrincipal", "clientId": CID, "tenantId": TENANT, "clientSecret": "*****"},
        },
    }
    exports = [{"id": "e", "destinations": [{"id": "mi"}, {"id": "sp"}]}]
    refused: dict[str, str] = {}
    found = {t.destination_id: t.principal for t in _discover(app, exports, dests, mine, refused)}
    assert refused == {}
    assert found["mi"] == mine
    assert found["sp"] == PrincipalConfig(tenant_id=TENANT, client_id=CID)


def test_plan_remedies_in_order_with_reasons_and_what_a_toggle_pauses() -> None:
    from shared.domain.diagnosis import AdxState, diagnose
    from shared.domain.plan import make_plan
    from shared.domain.targets import Target

    target = Target.model_validate(
        {
            "app": "contoso",
            "export_id": "e",
            "destination_id": "d",
            "cluster_url": "https://c.westus2.kusto.windows.net",
            "database": "db",
            "table": "T",
            "principal": {"tenant_id": TENANT, "object_id": OID},
        }
    )
    me = PrincipalRef(TENANT, object_id=OID)
    held = Assignment("database", "admins", f"aadapp={CID};{TENANT}", OID, "app", "n")
    denied = [Evidence("iotcentral", "InsufficientPermissions", "Principal lacks required permissions")]
    stale = diagnose(me, None, AdxState(True, True, [held], [], {"admins"}), denied, "db", "T")
    managed = {"type": "dataexplorer@v1", "authorization": {"type": "systemAssignedManagedIdentity"}}
    sp = {"type": "dataexplorer@v1", "authorization": {"type": "servicePrincipal"}}

    plan = make_plan(
        target, stale, toggle_export=True, correlation_id="c", destination=managed, other_destinations=("x",)
    )
    assert [a.kind for a in plan.actions] == ["recreate-destination", "refresh", "toggle-export", "verify"]
    assert "Microsoft's troubleshooting page" in plan.actions[0].reason and "next remedy" in plan.actions[0].reason
    assert "also sends to x" in plan.actions[2].reason
    reordered = make_plan(
        target,
        stale,
        toggle_export=False,
        correlation_id="c",
        remedies=("refresh", "recreate-destination"),
        destination=managed,
    )
    assert [a.kind for a in reordered.actions] == ["refresh", "recreate-destination", "verify"]
    # A service principal's destination cannot be re-created: the next remedy, or escalate.
    assert [
        a.kind for a in make_plan(target, stale, toggle_export=False, correlation_id="c", destination=sp).actions
    ] == ["refresh", "verify"]
    only = make_plan(
        target, stale, toggle_export=False, correlation_id="c", remedies=("recreate-destination",), destination=sp
    )
    assert [a.kind for a in only.actions] == ["escalate"] and "masked" in only.actions[0].reason


def test_detection_judges_a_target_by_its_destination() -> None:
    from shared.detection.detector import evidence_from_status

    export = {
        "id": "e",
        "status": "error",
        "errors": [{"code": "Forbidden", "message": "not authorized"}],
        "destinations": [{"id": "mine"}, {"id": "other"}],
    }
    assert evidence_from_status(export, {"id": "mine", "status": "Healthy"}) == []  # another destination's failure
    alone = {**export, "destinations": [{"id": "mine"}]}
    assert [e.code for e in evidence_from_status(alone, {"id": "mine", "status": "HEALTHY"})] == ["Forbidden"]
    status = ExportStatus("e", True, "error", (("Forbidden", "x"),), "mine", "healthy", (), export=export)
    assert status.all_errors() == [] and status.other_destinations == ["other"]
