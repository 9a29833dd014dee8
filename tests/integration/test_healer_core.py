"""The healer core against the sandbox and Azurite: each diagnosis class from its fault, and the
repairs (through the queue step machine) that heal or escalate."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.world import World
from shared.domain.diagnosis import Kind
from shared.runs import Healer
from tests.support.healer_env import Worker, changing_commands, outcome_of
from tests.support.helpers import wait_until

pytestmark = pytest.mark.integration
CONTOSO = "contoso:export-1:adx-1"

EXPECTED = {
    None: Kind.HEALTHY,
    "stale-permission": Kind.PRINCIPAL_STALE,
    "principal-removed": Kind.PRINCIPAL_MISSING,
    "identity-rotated": Kind.IDENTITY_CHANGED,
    "table-level-only": Kind.INSUFFICIENT_ROLE,
    "healer-not-admin": Kind.HEALER_NOT_ADMIN,
    "table-missing": Kind.NON_PERMISSION,
    "database-missing": Kind.NON_PERMISSION,
}


def broken(world: World, app: str = "contoso") -> bool:
    return world.iotc.apps[app].exports["export-1"].get("status") == "error"


@pytest.mark.parametrize("fault", list(EXPECTED))
def test_each_diagnosis_class_from_its_fault(healer_setup: Any, fault: str | None) -> None:
    world, _, healer, _ = healer_setup
    wait_until(lambda: world.iotc.apps["contoso"].exports["export-1"].get("status") == "healthy", 10, "healthy export")
    if fault:
        world.inject(fault, "contoso")
        wait_until(lambda: broken(world), 10, "the export to break")
    reading = healer.read(healer.target(CONTOSO))
    assert reading.diagnosis.kind == EXPECTED[fault], reading.diagnosis.summary
    if fault == "database-missing":  # the cluster's 404 is read as a diagnosis, not raised
        assert "database devicedata does not exist" in reading.diagnosis.summary
    if fault:
        assert reading.diagnosis.evidence, "the diagnosis shows its evidence"


def heal(worker: Worker, world: World, fault: str) -> tuple[list[str], list[str]]:
    world.inject(fault, "contoso")
    wait_until(lambda: broken(world), 10, "the export to break")
    before = len(world.cluster.command_log)
    worker.enqueue_start(CONTOSO)
    worker.run_until(lambda: any(o.status in ("healed", "escalated", "not-healed") for o in worker.outcomes), 40)
    return [o.status for o in worker.outcomes], changing_commands(world, before)


def test_refresh_heals_stale_permission(healer_setup: Any) -> None:
    """Default remedy order: the destination is re-created first; ADX still denies the stale
    principal, so the same run goes on with the refresh, which heals."""
    world, _, healer, worker = healer_setup
    statuses, changes = heal(worker, world, "stale-permission")
    assert statuses[-1] == "healed"
    assert [c.split()[0] for c in changes] == [".drop", ".add"]
    note = "IoT Central contoso data export"
    assert changes[1].endswith(f"'{note}'")  # re-added with the snapshot's exact notes
    rows = [a for a in world.cluster.database("devicedata").principals if a.notes == note]
    assert len(rows) == 1 and rows[0].role == "admins" and not rows[0].stale
    state = healer.services.store.load(CONTOSO)
    assert state.pending_readd is None and state.last_outcome == "healed" and state.lease_owner == ""
    steps = [r["Step"] for r in healer.services.store.read_journal(CONTOSO) if r["Status"] == "done"]
    assert steps.index("repoint-export") < steps.index("next-remedy") < steps.index("drop-admins")


def test_refresh_only_when_configured_first(healer_setup: Any, azurite: Any) -> None:
    from tests.support.healer_env import healer_for, make_settings, queue_client

    world, _, _, _ = healer_setup
    healer = healer_for(make_settings(world, azurite, remedy_order="refresh"))
    worker = Worker(healer, queue_client(healer.services.settings))
    statuses, changes = heal(worker, world, "stale-permission")
    assert statuses[-1] == "healed" and [c.split()[0] for c in changes] == [".drop", ".add"]
    assert "repoint-export" not in [r["Step"] for r in healer.services.store.read_journal(CONTOSO)]
    assert world.iotc.apps["contoso"].exports["export-1"]["destinations"] == [{"id": "adx-1"}]


@pytest.mark.parametrize("fault", ["principal-removed", "identity-rotated", "table-level-only"])
def test_add_heals(healer_setup: Any, fault: str) -> None:
    world, _, _, worker = healer_setup
    statuses, changes = heal(worker, world, fault)
    assert statuses[-1] == "healed"
    assert len(changes) == 1 and changes[0].startswith(".add database ['devicedata'] admins")
    current = world.iotc.identity_of("contoso")
    assert current.object_id.lower() in changes[0] or current.client_id.lower() in changes[0]


@pytest.mark.parametrize("fault", ["healer-not-admin", "table-missing", "database-missing"])
def test_escalates_without_changing_anything(healer_setup: Any, fault: str) -> None:
    world, _, healer, worker = healer_setup
    statuses, changes = heal(worker, world, fault)
    assert statuses == ["escalated"]
    assert changes == []
    state = healer.services.store.load(CONTOSO)
    assert state.escalated and state.escalation_reason
    worker.enqueue_start(CONTOSO)
    worker.run_until(lambda: len(worker.outcomes) == 2, 10)
    assert worker.outcomes[-1].status == "skipped" and "escalated" in worker.outcomes[-1].detail


def test_observe_mode_plans_and_changes_nothing(healer_setup: Any, azurite: Any) -> None:
    from tests.support.healer_env import healer_for, make_settings, queue_client

    world, _, _, _ = healer_setup
    settings = make_settings(world, azurite, mode="observe")
    observer: Healer = healer_for(settings)
    worker = Worker(observer, queue_client(settings))
    for fault, app in (("stale-permission", "contoso"), ("principal-removed", "fabrikam")):
        world.inject(fault, app)
    wait_until(lambda: broken(world) and broken(world, "fabrikam"), 10, "both exports to break")
    before = len(world.cluster.command_log)
    worker.enqueue_start(CONTOSO)
    worker.enqueue_start("fabrikam:export-1:adx-1")
    worker.run_until(lambda: len(worker.outcomes) == 2, 20)
    assert {o.status for o in worker.outcomes} == {"planned"}
    assert changing_commands(world, before) == []
    history = observer.services.store.read_history(CONTOSO)
    assert history[0]["Outcome"] == "planned" and history[0]["Diagnosis"] == "principal-stale"
    assert '"recreate-destination"' in history[0]["Actions"] and '"refresh"' in history[0]["Actions"]


def test_history_records_every_run(healer_setup: Any) -> None:
    world, _, healer, worker = healer_setup
    heal(worker, world, "principal-removed")
    rows = healer.services.store.read_history(CONTOSO)
    outcomes = [r["Outcome"] for r in rows]
    assert outcomes[0] == "healed" and "waiting" in outcomes
    first = rows[-1]
    assert first["Trigger"] == "timer" and first["Diagnosis"] == "principal-missing" and first["CorrelationId"]
    assert outcome_of(worker, "healed")()


def test_cooldown_after_healing_and_escalation_after_failed_attempts(healer_setup: Any, azurite: Any) -> None:
    from tests.support.healer_env import healer_for, inject_and_wait, make_settings, queue_client

    world, _, _, _ = healer_setup
    settings = make_settings(world, azurite, cooldown_seconds=600, max_attempts=2, verify_deadline_seconds=0)
    healer = healer_for(settings)
    worker = Worker(healer, queue_client(settings))
    inject_and_wait(world, "principal-removed")
    worker.enqueue_start(CONTOSO)
    worker.run_until(outcome_of(worker, "healed"), 30)
    worker.enqueue_start(CONTOSO)
    worker.run_until(lambda: worker.outcomes[-1].status == "skipped", 10)
    assert "cooling down" in worker.outcomes[-1].detail

    # Fabrikam cannot heal: no batch arrives while the exporter is stopped, so verification fails.
    inject_and_wait(world, "principal-removed", "fabrikam")
    world.stop_exporter()
    worker.enqueue_start("fabrikam:export-1:adx-1")
    worker.run_until(outcome_of(worker, "escalated"), 40)
    statuses = [str(o.status) for o in worker.outcomes[2:]]
    assert statuses.count("not-healed") == 1 and statuses[-1] == "escalated"
    state = healer.services.store.load("fabrikam:export-1:adx-1")
    assert state.escalated and "2 attempts" in state.escalation_reason and state.lease_owner == ""


def test_permanent_adx_errors_are_not_retried(healer_setup: Any) -> None:
    from sandbox import sdk
    from sandbox.entra import new_identity
    from shared.adapters.kusto import KustoAdapter
    from shared.adapters.kusto_errors import AdxError

    world, _, _, _ = healer_setup
    viewer = world.directory.add(new_identity("viewer"))
    world.cluster.grant("devicedata", "viewers", viewer.fqn)
    adapter = KustoAdapter(world.cluster.url, sdk.credential(viewer.client_id), retry_budget_s=30)
    before = len(world.cluster.command_log)
    with pytest.raises(AdxError) as info:
        adapter.set_role("devicedata", "admins", viewer.fqn, present=True)
    assert info.value.forbidden and not info.value.transient
    assert len(world.cluster.command_log) - before == 2  # one read, one refused .add, no retry
