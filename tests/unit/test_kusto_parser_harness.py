"""The harness around Microsoft's Kusto parser: it accepts real Kusto and rejects broken text.

It also keeps the sandbox honest: every command form and query the stand-in accepts must be
real Kusto, so neither the sandbox nor the healer can drift into a private dialect.
"""

from __future__ import annotations

import pytest

from tests.support.kusto_parser import parse_all

FQN = "aadapp=0b4f8e1a-0000-4000-8000-000000000001;72f988bf-86f1-41af-91ab-2d7cd011db47"
VALID = [
    ".show database devicedata principals",
    ".show database ['dev-data'] principals",
    ".show database devicedata principal roles",
    ".show table DeviceTelemetry principals",
    ".show tables",
    ".show table DeviceTelemetry ingestion mappings",
    ".show table DeviceTelemetry ingestion json mappings",
    ".show table DeviceTelemetry policy row_level_security",
    ".show table DeviceTelemetry policy restricted_view_access",
    ".show ingestion failures",
    f".add database devicedata ingestors ('{FQN}') 'IoT Central export'",
    f".add database devicedata admins ('{FQN}') skip-results 'notes with \\'quotes\\''",
    f".drop database devicedata ingestors ('{FQN}')",
    f".add table DeviceTelemetry ingestors ('{FQN}') 'table level'",
    f".drop table ['Device Telemetry'] admins ('{FQN}', '{FQN}')",
    ".create table T (applicationId:string, enqueuedTime:datetime, telemetry:dynamic)",
    ".ingest inline into table T <| a,b,c",
    "DeviceTelemetry | where ingestion_time() > datetime(2026-11-27T10:00:00Z) | count",
    "DeviceTelemetry | where ingestion_time() > ago(30m) | summarize Rows=count(), Last=max(ingestion_time())",
    "FailedIngestion | where ErrorCode in ('Forbidden') | summarize count() by Database, Table",
    "T | where a =~ 'x' and b !in ('y') | project a | take 5",
]
BROKEN = [
    ".ad database devicedata admins ('x')",  # misspelt command
    ".add databse devicedata admins ('x')",  # misspelt keyword
    ".add database devicedata admins 'x')",  # missing (
    ".show frobnicate",  # unknown show target
    "T | where",  # missing expression
    "T | where a == 'unterminated",
    "T | summarize count( by a",
]


def test_valid_text_parses_clean() -> None:
    failures = [r for r in parse_all(VALID) if not r.ok]
    assert failures == []


@pytest.mark.parametrize("index", range(len(BROKEN)))
def test_broken_text_is_rejected(index: int) -> None:
    # One node run for all, cached across the parametrized cases.
    results = _broken_results()
    assert not results[index].ok, BROKEN[index]


_cache: list[object] = []


def _broken_results() -> list:  # type: ignore[type-arg]
    if not _cache:
        _cache.extend(parse_all(BROKEN))
    return _cache


def test_kinds_are_reported() -> None:
    command, query = parse_all([".show tables", "T | count"])
    assert (command.kind, query.kind) == ("Command", "Query")
