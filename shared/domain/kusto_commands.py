"""The exact Kusto text the healer sends: built only from validated, quoted parts."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain import kusto_names as names


def show_database_principals(database: str) -> str:
    return f".show database {names.quote_entity('database', database)} principals"


def show_own_roles(database: str) -> str:
    return f".show database {names.quote_entity('database', database)} principal roles"


def show_table_principals(table: str) -> str:
    return f".show table {names.quote_entity('table', table)} principals"


def show_tables() -> str:
    return ".show tables"


def show_ingestion_mappings(table: str) -> str:
    return f".show table {names.quote_entity('table', table)} ingestion mappings"


POLICIES = ("row_level_security", "restricted_view_access", "ingestiontime", "streamingingestion")


def show_policy(table: str, policy: str) -> str:
    if policy not in POLICIES:
        raise names.UnsafeKustoValue("policy", policy, f"must be one of {', '.join(POLICIES)}")
    return f".show table {names.quote_entity('table', table)} policy {policy}"


def show_table_details(table: str) -> str:
    """One row of the table's properties, among them its *effective* streaming-ingestion policy
    (the table's own, else its database's): one read where the two policy commands took two."""
    return f".show table {names.quote_entity('table', table)} details"


def change_role(verb: str, database: str, role: str, fqn: str, notes: str | None, table: str | None = None) -> str:
    """`.add|.drop database D role ('fqn') 'notes'` or the table-level form (database from the request)."""
    if verb not in ("add", "drop"):
        raise names.UnsafeKustoValue("verb", verb, "must be add or drop")
    principal = names.quote_string(names.principal_fqn("principal", fqn))
    if table is None:
        entity = f"database {names.quote_entity('database', database)} {names.db_role('role', role)}"
    else:
        names.entity_name("database", database)
        entity = f"table {names.quote_entity('table', table)} {names.table_role('role', role)}"
    text = f".{verb} {entity} ({principal})"
    if notes:
        text += " " + names.quote_string(names.notes("notes", notes))
    return text


def rows_since(table: str, since: datetime) -> str:
    """The verification query: rows ingested after a point in time."""
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{names.quote_entity('table', table)} | where ingestion_time() > datetime({stamp}) | count"


def _stamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def show_cslschema(table: str) -> str:
    return f".show table {names.quote_entity('table', table)} cslschema"


def last_ingestion_before(table: str, before: datetime) -> str:
    """The last row ingested before a repair: where the export stopped delivering."""
    quoted = names.quote_entity("table", table)
    return f"{quoted} | where ingestion_time() < datetime({_stamp(before)}) | summarize Last=max(ingestion_time())"


def first_ingestion_since(table: str, since: datetime) -> str:
    """The first row ingested after a repair (where the gap ends)."""
    quoted = names.quote_entity("table", table)
    return f"{quoted} | where ingestion_time() > datetime({_stamp(since)}) | summarize First=min(ingestion_time())"


def rows_between(table: str, column: str, start: datetime, end: datetime) -> str:
    """Every row whose `column` lies in [start, end): what a backfill window must not add again."""
    col = names.quote_entity("column", column)
    return (
        f"{names.quote_entity('table', table)} | where {col} >= datetime({_stamp(start)})"
        f" and {col} < datetime({_stamp(end)})"
    )
