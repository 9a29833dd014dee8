"""Everything the healer core sends to ADX is real Kusto (Microsoft's parser says so), and what it
quotes comes back from the service exactly as it was."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.entra import new_identity
from shared.domain import kusto_commands as cmd
from shared.domain.principals import PrincipalRef
from tests.support.healer_env import inject_and_wait
from tests.support.kusto_parser import parse_all

pytestmark = pytest.mark.integration
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
FQN = f"aadapp=0b4f8e1a-0000-4000-8000-000000000001;{TENANT}"
AWKWARD_NOTES = 'it\'s a \\ "quoted" note — ünïcode ok'


def test_every_command_the_core_emits_parses(healer_setup: Any) -> None:
    world, _, healer, worker = healer_setup
    for fault, app in (("stale-permission", "contoso"), ("principal-removed", "fabrikam")):
        inject_and_wait(world, fault, app)
        worker.enqueue_start(f"{app}:export-1:adx-1")
    worker.run_until(lambda: sum(o.status == "healed" for o in worker.outcomes) == 2, 60)
    emitted = list(dict.fromkeys(healer.services.kusto(world.cluster.url).sent))
    assert any(t.startswith(".drop") for t in emitted) and any(t.startswith(".add") for t in emitted)
    assert any("ingestion_time()" in t for t in emitted)
    grid = [
        cmd.show_database_principals("dev-data.v2"),
        cmd.show_own_roles("my data"),
        cmd.show_table_principals("Device_Telemetry-1"),
        cmd.show_tables(),
        cmd.show_ingestion_mappings("T"),
        cmd.show_policy("T", "row_level_security"),
        cmd.show_policy("T", "restricted_view_access"),
        cmd.show_policy("T", "ingestiontime"),
        cmd.show_policy("T", "streamingingestion"),
        cmd.show_table_details("My Table"),
        cmd.change_role("add", "db", "admins", FQN, AWKWARD_NOTES),
        cmd.change_role("drop", "db", "ingestors", FQN, None),
        cmd.change_role("add", "db", "ingestors", FQN, "t", table="My Table"),
        cmd.rows_since("My Table", datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)),
        cmd.show_policy("T", "streamingingestion"),
        cmd.show_cslschema("My Table"),
        cmd.last_ingestion_before("My Table", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        cmd.first_ingestion_since("My Table", datetime(2026, 11, 27, 10, 0, tzinfo=UTC)),
        cmd.rows_between(
            "My Table",
            "Time stamp",
            datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
            datetime(2026, 11, 27, 10, 5, tzinfo=UTC),
        ),
    ]
    results = parse_all(emitted + grid)
    assert [(r.text, r.errors) for r in results if not r.ok] == []


def test_awkward_notes_come_back_exactly(healer_setup: Any) -> None:
    world, _, healer, _ = healer_setup
    newcomer = world.directory.add(new_identity("newcomer"))
    fqn = f"aadapp={newcomer.object_id};{newcomer.tenant_id}"
    adapter = healer.services.kusto(world.cluster.url)
    listing = adapter.set_role("devicedata", "viewers", fqn, present=True, notes=AWKWARD_NOTES)
    who = PrincipalRef.from_fqn(fqn)  # listed under its application id, the object id in its column
    mine = [a for a in listing if who.matches(a)]
    assert [(a.role, a.notes) for a in mine] == [("viewers", AWKWARD_NOTES)]
    assert [a.notes for a in adapter.database_principals("devicedata") if who.matches(a)] == [AWKWARD_NOTES]
    sent = len(adapter.sent)
    adapter.set_role("devicedata", "viewers", fqn, present=True, notes=AWKWARD_NOTES, current=listing)
    assert len(adapter.sent) == sent  # already there: nothing is sent
