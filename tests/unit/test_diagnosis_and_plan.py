"""Diagnosis and plan as pure logic: every class, its evidence, and the reasons in the plan."""

from __future__ import annotations

import json

import pytest

from shared.domain.diagnosis import AdxState, Evidence, Kind, diagnose
from shared.domain.plan import make_plan
from shared.domain.principals import Assignment, PrincipalRef
from shared.domain.targets import parse_targets

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "11111111-1111-4111-8111-111111111111"
CID = "22222222-2222-4222-8222-222222222222"
NEW = "33333333-3333-4333-8333-333333333333"
ME = PrincipalRef(TENANT, object_id=OID, client_id=CID)
DENIED = [
    Evidence(
        "iotcentral", "Forbidden", f"Principal 'aadapp={CID};{TENANT}' is not authorized to perform operation 'Ingest'"
    )
]
TARGET = parse_targets(
    json.dumps(
        [
            {
                "app": "contoso",
                "export_id": "e1",
                "destination_id": "d1",
                "cluster_url": "https://c.kusto.windows.net",
                "database": "db",
                "table": "T",
                "principal": {"object_id": OID, "client_id": CID, "tenant_id": TENANT},
            }
        ]
    )
)[0]


def row(scope: str, role: str, principal_id: str = OID, notes: str = "iotc") -> Assignment:
    return Assignment(scope, role, f"aadapp={principal_id};{TENANT}", principal_id, "app", notes)


def state(
    db: list[Assignment] | None = None,
    table: list[Assignment] | None = None,
    healer: set[str] | None = None,
    **flags: bool,
) -> AdxState:
    return AdxState(
        flags.pop("database_exists", True),
        flags.pop("table_exists", True),
        db or [],
        table or [],
        {"admins"} if healer is None else healer,
        row_level_security=flags.pop("row_level_security", False),
    )


@pytest.mark.parametrize(
    ("adx", "evidence", "current", "kind"),
    [
        (state([row("database", "ingestors")]), [], None, Kind.HEALTHY),
        # IoT Central's docs require Admin: Ingestor alone, while IoT Central is denied, is not enough.
        (state([row("database", "ingestors")]), DENIED, None, Kind.INSUFFICIENT_ROLE),
        (state([row("database", "admins")]), DENIED, None, Kind.PRINCIPAL_STALE),
        (state([]), DENIED, None, Kind.PRINCIPAL_MISSING),
        (state([row("database", "viewers")]), DENIED, None, Kind.INSUFFICIENT_ROLE),
        (state([], [row("table", "ingestors")]), DENIED, None, Kind.INSUFFICIENT_ROLE),
        (state([row("database", "users")], [row("table", "ingestors")]), [], None, Kind.HEALTHY),
        (state([row("database", "ingestors")]), DENIED, PrincipalRef(TENANT, object_id=NEW), Kind.IDENTITY_CHANGED),
        (state([]), DENIED, None, Kind.PRINCIPAL_MISSING),
        (state([], healer={"viewers"}), DENIED, None, Kind.HEALER_NOT_ADMIN),
        (state([], healer={"AllDatabasesAdmin"}), DENIED, None, Kind.PRINCIPAL_MISSING),
        (
            state(table_exists=False),
            [Evidence("iotcentral", "BadRequest_EntityNotFound", "not found")],
            None,
            Kind.NON_PERMISSION,
        ),
        (state(database_exists=False, table_exists=False), [], None, Kind.NON_PERMISSION),
        (
            state([row("database", "ingestors")]),
            [Evidence("loganalytics", "Stream_WrongNumberOfFields", "bad csv")],
            None,
            Kind.NON_PERMISSION,
        ),
    ],
)
def test_classes(adx: AdxState, evidence: list[Evidence], current: PrincipalRef | None, kind: Kind) -> None:
    result = diagnose(ME, current, adx, evidence, "db", "T")
    assert result.kind == kind, result.summary
    assert len(result.evidence) == len(evidence)


def test_identity_named_in_the_error_counts_when_both_ids_are_configured() -> None:
    other = [Evidence("iotcentral", "Forbidden", f"Principal 'aadapp={NEW};{TENANT}' is not authorized")]
    result = diagnose(ME, None, state([row("database", "ingestors")]), other, "db", "T")
    assert result.kind == Kind.IDENTITY_CHANGED and result.principal.client_id == NEW
    only_oid = PrincipalRef(TENANT, object_id=OID)
    result = diagnose(only_oid, None, state([row("database", "admins")]), other, "db", "T")
    assert result.kind == Kind.PRINCIPAL_STALE  # with one id known, a different id proves nothing


def test_row_level_security_is_a_note_only() -> None:
    result = diagnose(
        ME,
        None,
        state([row("database", "ingestors")], row_level_security=True),
        [],
        "db",
        "T",
    )
    assert result.kind == Kind.HEALTHY
    assert any("row-level security" in n for n in result.notes)


MANAGED = {"type": "dataexplorer@v1", "authorization": {"type": "systemAssignedManagedIdentity"}}


def test_plans_say_why() -> None:
    stale = diagnose(ME, None, state([row("database", "admins", notes="exact 'notes'")]), DENIED, "db", "T")
    plan = make_plan(TARGET, stale, toggle_export=True, correlation_id="c1", destination=MANAGED)
    assert [a.kind for a in plan.actions] == ["recreate-destination", "refresh", "toggle-export", "verify"]
    assert plan.actions[1].snapshot[0].notes == "exact 'notes'"
    assert all(a.reason.endswith(".") for a in plan.actions)

    missing = diagnose(ME, None, state([]), DENIED, "db", "T")
    plan = make_plan(TARGET, missing, toggle_export=False, correlation_id="c2")
    assert [(a.kind, a.role) for a in plan.actions] == [("add-role", "admins"), ("verify", "")]
    assert plan.actions[0].fqn == f"aadapp={OID};{TENANT}" and "c2" in plan.actions[0].notes

    for kind_state in (state([], healer={"viewers"}), state(table_exists=False)):
        escalation = make_plan(
            TARGET, diagnose(ME, None, kind_state, DENIED, "db", "T"), toggle_export=True, correlation_id="c3"
        )
        assert [a.kind for a in escalation.actions] == ["escalate"] and not escalation.changes

    healthy = make_plan(
        TARGET,
        diagnose(ME, None, state([row("database", "ingestors")]), [], "db", "T"),
        toggle_export=True,
        correlation_id="c4",
    )
    assert healthy.actions == []


def test_refresh_is_refused_when_the_snapshot_cannot_be_re_added_exactly() -> None:
    stale = diagnose(ME, None, state([row("database", "admins", notes="two\nlines")]), DENIED, "db", "T")
    plan = make_plan(TARGET, stale, toggle_export=False, correlation_id="c", remedies=("refresh",))
    assert [a.kind for a in plan.actions] == ["escalate"] and "nothing is dropped" in plan.actions[0].reason


def test_cluster_admins_and_other_principals_are_never_in_a_snapshot() -> None:
    others = [
        row("database", "admins", NEW),
        Assignment("cluster", "AllDatabasesAdmin", f"aadapp={NEW};{TENANT}", NEW, "ops", ""),
    ]
    stale = diagnose(ME, None, state([*others, row("database", "admins")]), DENIED, "db", "T")
    plan = make_plan(TARGET, stale, toggle_export=False, correlation_id="c", remedies=("refresh",))
    snapshot = plan.actions[0].snapshot
    assert [(a.role, a.fqn) for a in snapshot] == [("admins", f"aadapp={OID};{TENANT}")]
