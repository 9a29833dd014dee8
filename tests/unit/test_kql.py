"""The sandbox's KQL subset: what it runs and what it refuses (pure logic, no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.adx import kql

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ROWS = [
    {"deviceId": "a", "value": 1, "$IngestionTime": NOW - timedelta(minutes=50)},
    {"deviceId": "b", "value": 5, "$IngestionTime": NOW - timedelta(minutes=20)},
    {"deviceId": "b", "value": 7, "$IngestionTime": NOW - timedelta(minutes=5)},
]


def run(text: str) -> kql.Result:
    def tables(name: str) -> tuple[list[str], list[dict[str, Any]]]:
        if name != "T":
            raise kql.UnknownTableError(name)
        return ["deviceId", "value"], ROWS

    return kql.run_query(text, tables, now=NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("T | count", [{"Count": 3}]),
        ("T | where ingestion_time() > ago(30m) | count", [{"Count": 2}]),
        ("T | where ingestion_time() > datetime(2026-11-27T11:50:00Z) | count", [{"Count": 1}]),
        ("T | where ingestion_time() > datetime(2026-11-27 11:30) | count", [{"Count": 2}]),
        ("T | where deviceId == 'b' and value >= 6 | count", [{"Count": 1}]),
        ("T | where deviceId in ('a', 'c') or value > 6 | count", [{"Count": 2}]),
        ("T | where deviceId !in ('a') | count", [{"Count": 2}]),
        ("T | where deviceId =~ 'B' | count", [{"Count": 2}]),
        (
            "T | summarize count() by deviceId",
            [{"deviceId": "a", "count_": 1}, {"deviceId": "b", "count_": 2}],
        ),
        (
            "T | summarize N=count(), Top=max(value) by deviceId | where N > 1",
            [{"deviceId": "b", "N": 2, "Top": 7}],
        ),
        ("T | summarize max(ingestion_time())", [{"max_ingestion_time": NOW - timedelta(minutes=5)}]),
        (
            "T | summarize dcount(deviceId), take_any(deviceId)",
            [{"dcount_deviceId": 2, "take_any_deviceId": "a"}],
        ),
        ("T | where value > 100 | summarize count()", [{"count_": 0}]),
        ("T | project deviceId | take 1", [{"deviceId": "a"}]),
        ("T | extend Twice = value + value | top 1 by Twice desc | project Twice", [{"Twice": 14}]),
        ("T | order by value asc | take 1 | project value", [{"value": 1}]),
        ("T | where isnotempty(deviceId) and not(deviceId == 'a') | count", [{"Count": 2}]),
        ("T // a comment\n| count", [{"Count": 3}]),
    ],
)
def test_supported_queries(text: str, expected: list[dict[str, Any]]) -> None:
    assert run(text).rows == expected


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("", kql.KqlSyntaxError, "empty"),
        ("T | where", kql.KqlSyntaxError, "expected an expression"),
        ("T | join (T) on deviceId", kql.KqlSyntaxError, "'join' is not supported"),
        ("Missing | count", kql.UnknownTableError, "Missing"),
        ("T | where nope == 1", kql.UnknownColumnError, "nope"),
        ("T | summarize median(value)", kql.KqlSemanticError, "median"),
        ("T | where frob(value) | count", kql.KqlSemanticError, "frob"),
        ("T | count extra", kql.KqlSyntaxError, "unexpected"),
        ("T | where deviceId == 'unterminated", kql.KqlSyntaxError, "unexpected character"),
        ("T | where ingestion_time() > datetime(2026-13-45) | count", kql.KqlSyntaxError, "month must be"),
        ("T | where ingestion_time() > 5 | count", kql.KqlSemanticError, "cannot compare"),
    ],
)
def test_refused_queries(text: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        run(text)
    assert fragment in str(info.value)


def test_datetime_literal_forms() -> None:
    assert kql.parse_datetime("2026-11-27") == datetime(2026, 11, 27, tzinfo=UTC)
    assert kql.parse_datetime("2026-11-27T10:00:00.1234567Z").microsecond == 123457
    assert kql.parse_datetime("'2026-11-27T10:00:00+02:00'") == datetime(2026, 11, 27, 8, tzinfo=UTC)
