"""Root cause from ADXJournal (through LogsQueryClient against the sandbox), and ARM's view of an
identity change. The emitted journal query is real Kusto (Microsoft's parser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.scenarios import OPERATOR_UPN
from shared.adapters.loganalytics import journal_query
from tests.support.healer_env import healer_for, make_settings
from tests.support.kusto_parser import parse_all

pytestmark = pytest.mark.integration


@pytest.fixture
def healer(world: Any, azurite: Any) -> Any:
    ep = world.endpoints()
    settings = make_settings(
        world,
        azurite,
        log_analytics_endpoint=ep["loganalytics_endpoint"],
        log_analytics_workspace_id=ep["loganalytics_workspace_id"],
    )
    return healer_for(settings)


def test_principal_removed_names_the_command_and_the_person(world: Any, healer: Any) -> None:
    fault = world.inject("principal-removed", "contoso")
    cause = healer.read(healer.target("contoso:export-1:adx-1")).diagnosis.root_cause
    assert cause["found"] is True and cause["source"] == "ADXJournal"
    assert cause["command"] == fault.detail["journal"][0]["command"]
    assert cause["command"].startswith(".drop database ['devicedata'] ")
    assert cause["actor"] == OPERATOR_UPN and cause["time"]
    assert healer.services.logs.queries[-1].startswith("ADXJournal | where TimeGenerated > ago(30m)")
    results = parse_all(list(dict.fromkeys(healer.services.logs.queries)))  # what was sent is real Kusto
    assert [(r.text, r.errors) for r in results if not r.ok] == []


def test_table_level_only_blames_the_drop_not_the_table_grant(world: Any, healer: Any) -> None:
    world.inject("table-level-only", "fabrikam")
    reading = healer.read(healer.target("fabrikam:export-1:adx-1"))
    assert str(reading.diagnosis.kind) == "insufficient-role"
    cause = reading.diagnosis.root_cause
    assert cause["command"].startswith(".drop database ['devicedata'] admins (")
    assert cause["actor"] == OPERATOR_UPN


def test_the_healers_own_changes_are_journaled_as_an_app(world: Any, healer: Any, kusto: Any) -> None:
    fqn = world.healer.fqn
    kusto.execute_mgmt("devicedata", f".add database devicedata viewers ('{fqn}') 'journal test'")
    rows = healer.services.logs.journal(world.workspace.workspace_id, "devicedata", 5)
    mine = [r for r in rows if "viewers" in r["ChangeCommand"]]
    assert mine[0]["ChangeCommand"] == f".add database devicedata viewers ('{fqn}') 'journal test'"
    assert mine[0]["Principal"] == f"Microsoft Entra app id={world.healer.client_id}"
    assert mine[0]["DatabaseName"] == "devicedata"


def test_identity_rotated_reports_old_and_new_ids(world: Any, healer: Any) -> None:
    fault = world.inject("identity-rotated", "contoso")
    reading = healer.read(healer.target("contoso:export-1:adx-1"))
    assert str(reading.diagnosis.kind) == "identity-changed"
    change = reading.diagnosis.root_cause["identity_change"]
    assert fault.detail["old_object_id"] in change["old"] and fault.detail["new_object_id"] in change["new"]
    assert change["when"] == fault.detail["changed_at"] and change["by"] == OPERATOR_UPN
    cause = reading.diagnosis.root_cause
    assert cause["found"] is True and cause["source"] == "ARM" and cause["time"] == fault.detail["changed_at"]


def test_the_activity_log_answers_only_documented_filters(world: Any, healer: Any) -> None:
    from shared.adapters.iotcentral_model import IotcError

    arm_id = world.iotc.apps["contoso"].arm_id
    assert healer.services.iotc.identity_changed_at(arm_id, datetime.now(UTC)) is None
    world.inject("identity-rotated", "contoso")
    when, by = healer.services.iotc.identity_changed_at(arm_id, datetime.now(UTC))
    assert by == OPERATOR_UPN and when.endswith("Z")
    assert healer.services.iotc.identity_changed_at(arm_id, datetime.now(UTC) - timedelta(days=8)) is None
    subscription = arm_id.split("/")[2]
    with pytest.raises(IotcError) as refused:
        healer.services.iotc._call(
            world.endpoints()["arm_url"],
            "https://management.azure.com/.default",
            "GET",
            f"/subscriptions/{subscription}/providers/Microsoft.Insights/eventtypes/management/values",
            params={"api-version": "2015-04-01", "$filter": "resourceUri eq 'x'"},
        )
    assert refused.value.status == 400


def test_nothing_in_window_and_journal_not_enabled(world: Any, healer: Any) -> None:
    db = world.cluster.database("devicedata")
    identity = world.iotc.identity_of("contoso")
    db.principals[:] = [a for a in db.principals if not a.fqn.matches(identity)]  # no journal row
    target = healer.target("contoso:export-1:adx-1")
    cause = healer.read(target).diagnosis.root_cause
    assert cause["found"] is False and cause["summary"].startswith("not found: no principal change of devicedata")
    del world.workspace.tables["ADXJournal"]
    cause = healer.read(target).diagnosis.root_cause
    assert cause["found"] is False and "ADXJournal not enabled" in cause["summary"]


def test_healthy_and_stale_diagnoses_ask_nothing(world: Any, healer: Any) -> None:
    reading = healer.read(healer.target("contoso:export-1:adx-1"))
    assert str(reading.diagnosis.kind) == "healthy" and reading.diagnosis.root_cause is None
    assert list(healer.services.logs.queries) == []


def test_no_workspace_says_so(world: Any, azurite: Any) -> None:
    healer = healer_for(make_settings(world, azurite))
    world.inject("principal-removed", "contoso")
    cause = healer.read(healer.target("contoso:export-1:adx-1")).diagnosis.root_cause
    assert cause == {
        "found": False,
        "source": "",
        "summary": "not found: no Log Analytics workspace with ADXJournal is set (HEALER_LOG_ANALYTICS_WORKSPACE_ID)",
    }


def test_the_journal_query_is_real_kusto() -> None:
    results = parse_all([journal_query("devicedata", 30), journal_query("my data-v2", 10080)])
    assert [(r.text, r.errors) for r in results if not r.ok] == []


def test_log_analytics_down_never_fails_the_diagnosis(world: Any, healer: Any) -> None:
    world.inject("principal-removed", "contoso")
    world.set_transport("loganalytics", reset_rate=1.0)
    reading = healer.read(healer.target("contoso:export-1:adx-1"))
    assert str(reading.diagnosis.kind) == "principal-missing"
    cause = reading.diagnosis.root_cause
    assert cause["found"] is False and "ADXJournal could not be read" in cause["summary"]
