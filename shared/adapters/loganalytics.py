"""Log Analytics adapter (azure-monitor-query): `FailedIngestion` and `ADXJournal` rows of the ADX
diagnostic logs."""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.loganalytics_errors import LogAnalyticsError
from shared.domain import kusto_names

log = logging.getLogger(__name__)
AUDIENCE = "https://api.loganalytics.io"


def failed_ingestion_query(lookback_minutes: int) -> str:
    """One query per workspace per cycle: failures grouped by cluster, database, table and error code
    (two clusters may well have databases and tables of the same names)."""
    if not 1 <= lookback_minutes <= 10080:
        raise ValueError(f"lookback_minutes={lookback_minutes!r} must be between 1 and 10080")
    return (
        f"FailedIngestion | where TimeGenerated > ago({lookback_minutes}m) "
        "| summarize Failures=count(), FirstSeen=min(TimeGenerated), LastSeen=max(TimeGenerated), "
        "Details=take_any(Details) by Database, Table, ErrorCode, _ResourceId"
    )


@dataclass(frozen=True)
class FailureGroup:
    database: str
    table: str
    error_code: str
    failures: int
    first_seen: datetime | None
    last_seen: datetime | None
    message: str
    resource_id: str


def _message(details: Any) -> str:
    """The human sentence inside `Details` (OneApi error JSON), or the raw text."""
    try:
        body = json.loads(details) if isinstance(details, str) else details
        error = body.get("error", body)
        return str(error.get("@message") or error.get("message") or details)
    except (ValueError, AttributeError, TypeError):
        return str(details or "")


class LogAnalyticsAdapter:
    def __init__(self, endpoint: str, credential: Any, timeout_s: float = 30.0, retry_budget_s: float = 60.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._credential = credential
        self._client: Any = None
        self._timeout = timeout_s
        self._budget = retry_budget_s
        self.queries: deque[str] = deque(maxlen=100)  # the latest queries (bounded)
        self.partial_errors = 0

    def _logs(self) -> Any:
        if self._client is None:
            from azure.monitor.query import LogsQueryClient

            from shared.config.timeouts import bounded_retry_policy

            self._client = LogsQueryClient(
                self._credential,
                endpoint=self.endpoint,
                audience=AUDIENCE,
                retry_policy=bounded_retry_policy(self._budget),
                connection_timeout=self._timeout,
                read_timeout=self._timeout,
            )
        return self._client

    def _query(self, workspace_id: str, query: str, minutes: int) -> list[Any]:
        """Rows of the first table; a partial result counts and uses what came back."""
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.monitor.query import LogsQueryPartialResult

        self.queries.append(query)
        loopback = self.endpoint.startswith(("http://127.0.0.1", "http://localhost"))
        try:
            result = self._logs().query_workspace(
                workspace_id,
                query,
                timespan=timedelta(minutes=minutes),
                server_timeout=max(1, int(self._timeout)),
                enforce_https=not loopback,
            )
        except HttpResponseError as exc:
            raise LogAnalyticsError(f"Log Analytics query failed: {exc.message}", exc.status_code) from exc
        except AzureError as exc:  # unreachable, timed out: logs are extra evidence, never required
            raise LogAnalyticsError(f"Log Analytics unreachable: {type(exc).__name__}") from exc
        if isinstance(result, LogsQueryPartialResult):
            # Use what came back; the rest is likely to show up in the next cycle.
            self.partial_errors += 1
            log.warning("Log Analytics returned a partial result: %s", result.partial_error)
            tables = result.partial_data
        else:
            tables = result.tables
        return list(tables[0].rows) if tables else []

    def query(self, workspace_id: str, query: str, minutes: int) -> list[Any]:
        """Rows of any read-only query (the doctor's row counts)."""
        return self._query(workspace_id, query, minutes)

    def failed_ingestion(self, workspace_id: str, lookback_minutes: int) -> list[FailureGroup]:
        query = failed_ingestion_query(lookback_minutes)
        groups = []
        for row in self._query(workspace_id, query, lookback_minutes):
            groups.append(
                FailureGroup(
                    database=str(row["Database"]),
                    table=str(row["Table"]),
                    error_code=str(row["ErrorCode"]),
                    failures=int(row["Failures"]),
                    first_seen=row["FirstSeen"],
                    last_seen=row["LastSeen"],
                    message=_message(row["Details"]),
                    resource_id=str(row["_ResourceId"] or ""),
                )
            )
        return groups

    def journal(self, workspace_id: str, database: str, lookback_minutes: int) -> list[dict[str, Any]]:
        """`ADXJournal` principal changes of `database` (read by shared/reporting/root_cause.py), newest first."""
        query = journal_query(database, lookback_minutes)
        columns = (
            "TimeGenerated",
            "OperationTimestamp",
            "DatabaseName",
            "EntityName",
            "Event",
            "ChangeCommand",
            "Principal",
            "User",
            "CorrelationId",
        )
        return [{c: row[c] for c in columns} for row in self._query(workspace_id, query, lookback_minutes)]


_JOURNAL_LIMIT = 50


def journal_query(database: str, lookback_minutes: int) -> str:
    """Principal changes of one database, newest first. The database is validated and quoted. The
    database column is `DatabaseName` (not `Database` as in `.show journal`); what `Event` holds
    for a principal change is undocumented, so the command text is matched instead."""
    if not 1 <= lookback_minutes <= 10080:
        raise ValueError(f"lookback_minutes={lookback_minutes!r} must be between 1 and 10080")
    name = kusto_names.entity_name("database", database)
    return (
        f"ADXJournal | where TimeGenerated > ago({lookback_minutes}m) "
        f"| where DatabaseName =~ {kusto_names.quote_string(name)} "
        "| where ChangeCommand startswith '.add' or ChangeCommand startswith '.drop' "
        "or ChangeCommand startswith '.set' "
        "| project TimeGenerated, OperationTimestamp, DatabaseName, EntityName, Event, ChangeCommand, "
        "Principal, User, CorrelationId "
        f"| order by TimeGenerated desc | take {_JOURNAL_LIMIT}"
    )
