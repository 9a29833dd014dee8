"""The exact Kusto text the healer sends: built only from validated, quoted parts."""

from __future__ import annotations

from datetime import UTC, datetime

from shared import kusto_names as names


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


def show_policy(table: str, policy: str) -> str:
    if policy not in ("row_level_security", "restricted_view_access"):
        raise names.UnsafeKustoValue("policy", policy, "must be row_level_security or restricted_view_access")
    return f".show table {names.quote_entity('table', table)} policy {policy}"


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
