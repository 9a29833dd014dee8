"""ADX adapter (azure-kusto-data): principals, roles, metadata and the verification query.

Transient failures (throttling, 5xx, network) are retried with tenacity: exponential backoff
with jitter, Retry-After honoured, bounded by a time budget. Permanent ones (400, 403) are not.
Role changes read first and act only on a difference; after a transient failure they read again
before acting, because ADX does not document what re-adding a present principal does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_before_delay, wait_exponential_jitter

from shared.adapters.kusto_errors import AdxError
from shared.adapters.kusto_results import parse_cslschema, policy_on
from shared.domain import kusto_commands as cmd
from shared.domain.principals import Assignment, PrincipalRef, own_role, parse_listing

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.kusto.data import ClientRequestProperties, KustoClient

log = logging.getLogger(__name__)
SENT_KEPT = 1000
T = TypeVar("T")
MAX_RETRY_AFTER_S = 30.0


def _error_body(response: Any) -> tuple[str, str]:
    """(code, text) of a OneApi error body the SDK did not parse (it keeps the response of a 404
    but says only "endpoint does not exist"); ("", "") when the body is not one."""
    try:
        body = json.loads(getattr(response, "text", "") or "")
        error = body.get("error") if isinstance(body, dict) else None
    except (TypeError, ValueError):
        return "", ""
    if not isinstance(error, dict):
        return "", ""
    text = " ".join(str(error.get(k, "")) for k in ("@type", "@message") if error.get(k)) or str(
        error.get("message", "")
    )
    return str(error.get("code", "")), text[:300]


def translate(exc: Exception) -> AdxError:
    """SDK exceptions → AdxError. Note: KustoThrottlingError is not a KustoServiceError."""
    from azure.kusto.data.exceptions import (
        KustoApiError,
        KustoNetworkError,
        KustoServiceError,
        KustoThrottlingError,
    )

    if isinstance(exc, KustoThrottlingError):
        response = exc.args[1] if len(exc.args) > 1 else None
        retry_after = _retry_after(getattr(response, "headers", {}) or {})
        return AdxError(
            "Throttled",
            "the cluster throttled the request",
            transient=True,
            status=429,
            retry_after_s=retry_after,
        )
    if isinstance(exc, KustoNetworkError):
        return AdxError("NetworkError", "the cluster could not be reached", transient=True)
    if isinstance(exc, KustoApiError):
        error = exc.get_api_error()
        status = exc.http_response.status_code if exc.http_response is not None else None
        transient = (status is not None and status >= 500) or (error.permanent is False and status != 400)
        return AdxError(str(error.code), str(error.description or error.message), transient=transient, status=status)
    if isinstance(exc, KustoServiceError):
        response = exc.http_response
        status = getattr(response, "status_code", None)
        if status == 404:  # a missing database: the SDK drops the body, which names the entity
            code, text = _error_body(response)
            return AdxError(code or "NotFound", text or "the database was not found", transient=False, status=404)
        transient = status is None or status >= 500
        return AdxError(
            "ServiceError",
            str(exc.args[0])[:300] if exc.args else "service error",
            transient=transient,
            status=status,
        )
    raise exc


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After")
        return min(float(value), MAX_RETRY_AFTER_S) if value is not None else None
    except (TypeError, ValueError):
        return None


class KustoAdapter:
    """One cluster, one credential. `sent` records every command and query text, in order."""

    def __init__(
        self,
        cluster_url: str,
        credential: TokenCredential,
        retry_budget_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        server_timeout_s: float = 60.0,
    ) -> None:
        self.cluster_url = cluster_url
        self._credential = credential
        self._budget = retry_budget_s
        self._server_timeout = timedelta(seconds=server_timeout_s)
        self._sleep = sleep
        self._client: KustoClient | None = None
        self._lock = threading.Lock()
        # The latest commands and queries, in order (bounded: a long-lived worker must not grow).
        self.sent: deque[str] = deque(maxlen=SENT_KEPT)

    # ---------------------------------------------------------------- plumbing

    def _kusto(self) -> KustoClient:
        with self._lock:
            if self._client is None:
                from azure.kusto.data import KustoClient, KustoConnectionStringBuilder

                kcsb = KustoConnectionStringBuilder.with_azure_token_credential(self.cluster_url, self._credential)
                self._client = KustoClient(kcsb)  # no HTTP-level retries: the one budget is ours
            return self._client

    def _properties(self) -> ClientRequestProperties:
        """The server gives up after the server timeout; the SDK's client after that plus its margin."""
        from azure.kusto.data import ClientRequestProperties

        properties = ClientRequestProperties()  # type: ignore[no-untyped-call]
        properties.set_option(ClientRequestProperties.request_timeout_option_name, self._server_timeout)
        return properties

    def _retrying(self) -> Retrying:
        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, AdxError) and error.retry_after_s is not None:
                return error.retry_after_s
            return float(wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.5)(state))

        return Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, AdxError) and e.transient),
            wait=wait,
            # Never sleep past the budget: give up when the next wait would end after it.
            stop=stop_before_delay(self._budget),
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda s: log.warning(
                "ADX call failed (%s), retrying", s.outcome.exception() if s.outcome else "?"
            ),
        )

    def _send(self, kind: str, database: str, text: str) -> list[dict[str, Any]]:
        self.sent.append(text)
        client = self._kusto()
        try:
            execute = client.execute_mgmt if kind == "mgmt" else client.execute_query
            response = execute(database, text, self._properties())
        except Exception as exc:
            raise translate(exc) from exc
        table = response.primary_results[0]
        names = [c.column_name for c in table.columns]
        return [{n: row[n] for n in names} for row in table]

    def _read(self, kind: str, database: str, text: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._retrying()(self._send, kind, database, text)
        return result

    # ---------------------------------------------------------------- reads

    def database_listing(self, database: str) -> tuple[list[Assignment], list[str]]:
        """`.show database D principals`: assignments, and notes on rows skipped (unknown roles)."""
        return self._listing(database, cmd.show_database_principals(database))

    def table_listing(self, database: str, table: str) -> tuple[list[Assignment], list[str]]:
        """`.show table T principals`: the table's rows and inherited ones (filter by scope)."""
        return self._listing(database, cmd.show_table_principals(table))

    def _listing(self, database: str, text: str) -> tuple[list[Assignment], list[str]]:
        assignments, skipped = parse_listing(self._read("mgmt", database, text))
        for note in skipped:
            log.info("%s: %s", text, note)
        return assignments, skipped

    def database_principals(self, database: str) -> list[Assignment]:
        return self.database_listing(database)[0]

    def table_principals(self, database: str, table: str) -> list[Assignment]:
        return self.table_listing(database, table)[0]

    def own_roles(self, database: str) -> set[str]:
        """The healer's own roles on the database, as keywords (admins, viewers, …) or cluster roles.

        The text of `Role` here is undocumented: parsed tolerantly, and the raw text is logged."""
        rows = self._read("mgmt", database, cmd.show_own_roles(database))
        roles = set()
        for row in rows:
            raw = str(row.get("Role", ""))
            role = own_role(raw)
            log.info("own role on %s: %r read as %s", database, raw, role or "unknown (ignored)")
            if role:
                roles.add(role)
        return roles

    def tables(self, database: str) -> list[str]:
        return [str(r["TableName"]) for r in self._read("mgmt", database, cmd.show_tables())]

    def ingestion_mappings(self, database: str, table: str) -> list[dict[str, Any]]:
        return self._read("mgmt", database, cmd.show_ingestion_mappings(table))

    def policy_enabled(self, database: str, table: str, policy: str) -> bool:
        rows = self._read("mgmt", database, cmd.show_policy(table, policy))
        return policy_on(rows[0].get("Policy") if rows else None)

    def streaming_ingestion(self, database: str, table: str) -> bool:
        """The effective policy (the table's, or its database's when it has none), from
        `.show table T details`; a missing table raises not-found like any table command."""
        rows = self._read("mgmt", database, cmd.show_table_details(table))
        return policy_on(rows[0].get("StreamingIngestionPolicy") if rows else None)

    def rows_since(self, database: str, table: str, since: datetime) -> int:
        rows = self._read("query", database, cmd.rows_since(table, since))
        return int(rows[0]["Count"]) if rows else 0

    def table_schema(self, database: str, table: str) -> list[tuple[str, str]]:
        """(column, type) in order, from `.show table T cslschema` (`Schema`: `a:string, b:datetime`)."""
        rows = self._read("mgmt", database, cmd.show_cslschema(table))
        return parse_cslschema(str(rows[0].get("Schema", "")) if rows else "")

    def last_ingestion_before(self, database: str, table: str, before: datetime) -> datetime | None:
        rows = self._read("query", database, cmd.last_ingestion_before(table, before))
        value = rows[0].get("Last") if rows else None
        return value if isinstance(value, datetime) else None

    def first_ingestion_since(self, database: str, table: str, since: datetime) -> datetime | None:
        rows = self._read("query", database, cmd.first_ingestion_since(table, since))
        value = rows[0].get("First") if rows else None
        return value if isinstance(value, datetime) else None

    def rows_between(
        self, database: str, table: str, column: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        return self._read("query", database, cmd.rows_between(table, column, start, end))

    # ---------------------------------------------------------------- changes

    def set_role(
        self,
        database: str,
        role: str,
        fqn: str,
        *,
        present: bool,
        notes: str | None = None,
        table: str | None = None,
        current: list[Assignment] | None = None,
    ) -> list[Assignment]:
        """Make `fqn` hold (or not hold) `role`; returns the listing ADX answers after the change.

        `current` is a listing read just before (saves one read). The command is sent only when
        the listing differs from what is wanted.
        """
        scope = "table" if table else "database"
        text = cmd.change_role("add" if present else "drop", database, role, fqn, notes if present else None, table)
        wanted = PrincipalRef.from_fqn(fqn)  # listed under either id (or PrincipalObjectId)
        state: dict[str, list[Assignment] | None] = {"current": current}

        def attempt() -> list[Assignment]:
            listing = state["current"]
            if listing is None:  # read inside this call's one budget: no retries nested in retries
                show = cmd.show_table_principals(table) if table else cmd.show_database_principals(database)
                listing = parse_listing(self._send("mgmt", database, show))[0]
            holds = any(a.scope == scope and a.role == role and wanted.matches(a) for a in listing)
            if holds == present:
                return listing
            state["current"] = None  # after a failure, read again before acting again
            rows = self._send("mgmt", database, text)
            return parse_listing(rows)[0]

        result: list[Assignment] = self._retrying()(attempt)
        return result
