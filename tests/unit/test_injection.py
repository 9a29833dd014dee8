"""Hostile values in database, table, principal and notes are refused before any request exists.

Part of `pytest -k "crash or chaos or inject or concurren"`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.adapters.kusto import KustoAdapter
from shared.domain import kusto_commands as cmd
from shared.domain.kusto_names import UnsafeKustoValue
from shared.domain.targets import ConfigError, parse_targets

GUID = "0b4f8e1a-0000-4000-8000-000000000001"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
FQN = f"aadapp={GUID};{TENANT}"

HOSTILE_NAMES = [
    "devicedata'",
    "dev]data",
    "['x']",
    "x; .drop database y",
    "x | take 1",
    "x\n.drop table y",
    ".drop",
    "x\x00",
    "x\x1b[31m",
    "a" * 300,
    "d\u0435vicedata",
    "devicedata\u200b",
    "",
    " ",
    "x ",
    "-x",
    'x"',
    "x\\",
    "x`",
    "x$",
    "x(1)",
    "x,y",
    "x*",
    "x/y",
    "x#",
    "\uff44evicedata",
    "\u202edata",
    "x\r",
    "x\t",
    "x'])|take 1//",
    "devicedata]",
    "[devicedata",
    "x\u2028y",
]
HOSTILE_PRINCIPALS = [
    "aadapp=x;y",
    f"aadapp={GUID};{TENANT}') ; .drop database d admins ('x",
    "aaduser=a@b.com",
    f"aadapp={GUID}",
    f"{GUID};{TENANT}",
    f"aadapp={GUID};{TENANT}\n",
    f"aadapp={GUID};{TENANT}'",
    f"aadgroup={GUID};{TENANT}",
    "aadapp=" + GUID.replace("0", "\u043e") + f";{TENANT}",  # Cyrillic o
    f" aadapp={GUID};{TENANT}",
    f"aadapp={GUID};{TENANT};extra",
    f"aadapp={GUID};ten'ant.com",
]
HOSTILE_NOTES = ["a\nb", "x\x00", "a" * 600, "line\u2028separator", "bell\x07", "tab\tnot allowed", "\r"]


@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_hostile_database_and_table_names_are_refused(value: str) -> None:
    with pytest.raises(UnsafeKustoValue, match=r"^database="):
        cmd.show_database_principals(value)
    with pytest.raises(UnsafeKustoValue, match=r"^table="):
        cmd.show_table_principals(value)
    with pytest.raises(UnsafeKustoValue, match=r"^table="):
        cmd.rows_since(value, datetime.now(UTC))
    with pytest.raises(UnsafeKustoValue, match=r"^database="):
        cmd.change_role("add", value, "ingestors", FQN, "n")


@pytest.mark.parametrize("value", HOSTILE_PRINCIPALS)
def test_hostile_principals_are_refused(value: str) -> None:
    with pytest.raises(UnsafeKustoValue, match=r"^principal="):
        cmd.change_role("add", "devicedata", "ingestors", value, None)


@pytest.mark.parametrize("value", HOSTILE_NOTES)
def test_hostile_notes_are_refused(value: str) -> None:
    with pytest.raises(UnsafeKustoValue, match=r"^notes="):
        cmd.change_role("add", "devicedata", "ingestors", FQN, value)


@pytest.mark.parametrize("role", ["admins; .drop", "owners", "AllDatabasesAdmin", "none", ""])
def test_unknown_roles_are_refused(role: str) -> None:
    with pytest.raises(UnsafeKustoValue, match=r"^role="):
        cmd.change_role("add", "devicedata", role, FQN, None)


def test_quotes_in_notes_are_escaped_not_refused() -> None:
    text = cmd.change_role("add", "devicedata", "ingestors", FQN, 'it\'s \\ "quoted"')
    assert text.endswith("'it\\'s \\\\ \"quoted\"'")


def test_adapter_sends_nothing_for_a_hostile_value() -> None:
    adapter = KustoAdapter("https://unused.kusto.windows.net", credential=None)  # type: ignore[arg-type]
    for call in (
        lambda: adapter.database_principals("x'; .drop"),
        lambda: adapter.table_principals("devicedata", "T | take 1"),
        lambda: adapter.set_role("devicedata", "ingestors", FQN, present=True, notes="a\nb", current=[]),
        lambda: adapter.set_role("devicedata", "ingestors", "aadapp=x;y", present=False, current=[]),
        lambda: adapter.rows_since("devicedata", "x\n", datetime.now(UTC)),
    ):
        with pytest.raises(UnsafeKustoValue):
            call()
    assert list(adapter.sent) == [] and adapter._client is None


@pytest.mark.parametrize("field", ["database", "table"])
def test_hostile_names_in_configuration_name_the_field(field: str) -> None:
    target = {
        "app": "contoso",
        "export_id": "e",
        "destination_id": "d",
        "cluster_url": "https://c.kusto.windows.net",
        "database": "db",
        "table": "T",
        "principal": {"object_id": GUID, "tenant_id": TENANT},
    }
    target[field] = "x'; .drop database db"
    import json

    with pytest.raises(ConfigError) as info:
        parse_targets(json.dumps([target]))
    assert f"[0].{field}" in str(info.value) and ".drop database db" in str(info.value)
