"""Which journal entry explains a diagnosis: pure logic over ADXJournal rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.principals import PrincipalRef
from shared.reporting.root_cause import JournalEntry, entries_from_rows, from_journal, pick

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
APP = PrincipalRef(tenant_id=TENANT, object_id="0b4f8e1a-0000-4000-8000-000000000001")
OTHER = "aadapp=0b4f8e1a-0000-4000-8000-000000000999;" + TENANT
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def entry(minutes: int | None, command: str, user: str = "ops@contoso.com") -> JournalEntry:
    time = T0 + timedelta(minutes=minutes) if minutes is not None else None
    return JournalEntry(time, "devicedata", "devicedata", command, "", user)


def test_the_newest_drop_naming_the_principal_wins_over_a_newer_add() -> None:
    fqn = f"aadapp={APP.object_id};{TENANT}"
    entries = [
        entry(1, f".drop database ['devicedata'] ingestors ('{fqn}')", "first"),
        entry(2, f".drop database devicedata ingestors ('{fqn}') 'again'", "second"),
        entry(3, f".add table ['T'] ingestors ('{fqn}')", "third"),
        entry(4, f".drop database devicedata admins ('{OTHER}')", "other principal"),
        entry(None, f".drop database devicedata viewers ('{fqn}')", "no time"),
    ]
    chosen = pick(entries, [APP])
    assert chosen is not None and chosen.user == "second"


def test_without_a_drop_the_newest_change_naming_it_then_a_set_none() -> None:
    fqn = f"aadapp={str(APP.object_id).upper()};{TENANT}"
    assert pick([entry(1, f".add database devicedata viewers ('{fqn}')", "add")], [APP]).user == "add"  # type: ignore[union-attr]
    cleared = [entry(1, ".set database devicedata ingestors none", "cleared"), entry(2, ".create table X (a:int)")]
    assert pick(cleared, [APP]).user == "cleared"  # type: ignore[union-attr]
    assert pick([entry(1, ".create table X (a:int)"), entry(2, f".add database d users ('{OTHER}')")], [APP]) is None


def test_summaries_and_rows() -> None:
    rows = [{"TimeGenerated": T0, "OperationTimestamp": None, "DatabaseName": "devicedata", "EntityName": "devicedata",
             "ChangeCommand": ".drop database devicedata ingestors ('x')", "Principal": "Microsoft Entra app id=1",
             "User": ""}]  # fmt: skip
    [only] = entries_from_rows(rows)
    assert only.time == T0 and only.actor == "Microsoft Entra app id=1"
    cause = from_journal(only, "devicedata", 30)
    assert cause.found and cause.summary.startswith("Microsoft Entra app id=1 ran .drop database devicedata")
    assert not from_journal(None, "devicedata", 30).found
