"""State and rules of the Azure Data Explorer stand-in: databases, tables, principals, ingestion.

The permission rules are the real ones (see AZURE_FACTS.md):
- database role commands need Database Admin; table role commands need Table Admin (a Database
  Admin is also Table Admin on its tables);
- a table role can only be given to a principal that already holds a database role;
- cluster roles (AllDatabasesAdmin/Viewer/Monitor) are set through ARM only, never by command;
- ingestion needs Admin or Ingestor on the database, or Admin or Ingestor on the table together
  with a database role (Table Ingestor depends on Database User or Ingestor).
A "stale" assignment is listed but does not authorize ingestion until it is dropped and re-added:
the symptom operators report after cluster updates.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.identity import Directory, Identity

DB_ROLES = {
    "admins": "Admin",
    "users": "User",
    "viewers": "Viewer",
    "unrestrictedviewers": "UnrestrictedViewer",
    "ingestors": "Ingestor",
    "monitors": "Monitor",
}
TABLE_ROLES = {"admins": "Admin", "ingestors": "Ingestor"}
CLUSTER_ROLES = {
    "AllDatabasesAdmin": "admins",
    "AllDatabasesViewer": "viewers",
    "AllDatabasesMonitor": "monitors",
}
_READERS = {"admins", "users", "viewers", "unrestrictedviewers"}
_METADATA_READERS = _READERS | {"monitors"}
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_TENANT = rf"(?:{_GUID}|[A-Za-z0-9](?:[A-Za-z0-9-]{{0,62}}\.)+[A-Za-z]{{2,}})"
_FQN_RE = re.compile(
    rf"^(?P<kind>aadapp|aaduser|aadgroup)=(?P<id>{_GUID}|[^;=\s'\"]{{1,256}})(?:;(?P<tenant>{_TENANT}))?$",
    re.IGNORECASE,
)
PRINCIPAL_TYPES = {"aadapp": "AAD Application", "aaduser": "AAD User", "aadgroup": "AAD Group"}


class KustoFault(Exception):
    """An error the service answers with: HTTP status + OneApi error."""

    def __init__(self, status: int, code: str, error_type: str, message: str, permanent: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.error_type = error_type
        self.message = message
        self.permanent = permanent


def forbidden(identity: Identity, operation: str, resource: str) -> KustoFault:
    return KustoFault(
        403,
        "Forbidden",
        "Kusto.DataNode.Exceptions.UnauthorizedDatabaseAccessException",
        f"Principal '{identity.fqn}' is not authorized to perform operation '{operation}' on '{resource}'.",
    )


def bad_request(message: str, code: str = "BadRequest_SyntaxError") -> KustoFault:
    return KustoFault(400, code, "Kusto.Data.Exceptions.SyntaxException", message)


def database_not_found(name: str) -> KustoFault:
    return KustoFault(
        400,
        "BadRequest_DatabaseNotExist",
        "Kusto.Data.Exceptions.DatabaseNotFoundException",
        f"Database '{name}' was not found.",
    )


def table_not_found(name: str) -> KustoFault:
    return KustoFault(
        400,
        "BadRequest_EntityNotFound",
        "Kusto.Data.Exceptions.EntityNotFoundException",
        f"Entity ID '{name}' of kind 'Table' was not found.",
    )


@dataclass(frozen=True)
class Fqn:
    kind: str
    id: str
    tenant: str

    @staticmethod
    def parse(text: str) -> Fqn:
        match = _FQN_RE.match(text.strip())
        if not match:
            raise bad_request(
                f"The principal '{text}' is not a valid fully qualified name "
                "(expected aadapp=<id>;<tenant>, aaduser=<id>[;<tenant>] or aadgroup=<id>[;<tenant>]).",
                "BadRequest_InvalidPrincipal",
            )
        kind = match.group("kind").lower()
        tenant = (match.group("tenant") or "").lower()
        if kind == "aadapp" and not tenant:
            raise bad_request(
                f"The application principal '{text}' must name its tenant.", "BadRequest_InvalidPrincipal"
            )
        return Fqn(kind, match.group("id").lower(), tenant)

    def __str__(self) -> str:
        return f"{self.kind}={self.id};{self.tenant}" if self.tenant else f"{self.kind}={self.id}"

    def matches(self, identity: Identity) -> bool:
        return (
            self.kind == "aadapp"
            and self.tenant == identity.tenant_id.lower()
            and self.id in (identity.client_id.lower(), identity.object_id.lower())
        )


@dataclass
class Assignment:
    role: str  # the command keyword: admins, users, ingestors, ...
    fqn: Fqn
    display_name: str
    notes: str = ""
    stale: bool = False
    added_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    principals: list[Assignment] = field(default_factory=list)
    mappings: list[dict[str, Any]] = field(default_factory=list)
    row_level_security: dict[str, Any] | None = None
    restricted_view_access: bool = False
    streaming_ingestion: bool = False  # the table's streaming ingestion policy
    ingest_by_tags: set[str] = field(default_factory=set)  # `ingest-by:` tags of the table's extents


@dataclass
class Database:
    name: str
    tables: dict[str, Table] = field(default_factory=dict)
    principals: list[Assignment] = field(default_factory=list)


@dataclass
class IngestionFailure:
    operation_id: str
    database: str
    table: str
    failed_on: datetime
    source: str
    details: str
    kind: str = "Permanent"


class Cluster:
    """One ADX cluster. All mutation happens under one lock; the HTTP layer is multi-threaded."""

    def __init__(self, url: str, directory: Directory) -> None:
        self.url = url.rstrip("/")
        self.directory = directory
        self.lock = threading.RLock()
        self.databases: dict[str, Database] = {}
        self.cluster_roles: dict[str, list[Fqn]] = {role: [] for role in CLUSTER_ROLES}
        self.ingestion_failures: list[IngestionFailure] = []
        self.command_log: list[tuple[str, str, str]] = []  # (caller fqn, endpoint, text)
        self.on_principal_change: list[Callable[[Identity | None, str, str, str], None]] = []
        self.ingestion: Any = None  # sandbox.ingestion.IngestionService once storage is attached
        self.command_text = ""  # the control command being executed (the journal records it as sent)

    # ------------------------------------------------------------------ setup (ARM's side)

    def create_database(self, name: str) -> Database:
        with self.lock:
            return self.databases.setdefault(name, Database(name))

    def create_table(self, database: str, name: str, columns: list[tuple[str, str]]) -> Table:
        with self.lock:
            db = self.database(database)
            if name in db.tables:
                return db.tables[name]
            table = Table(name, columns)
            db.tables[name] = table
            return table

    def set_cluster_role(self, role: str, fqn: str, present: bool = True) -> None:
        """ARM/portal only: cluster roles cannot be changed by Kusto commands."""
        with self.lock:
            parsed = Fqn.parse(fqn)
            members = self.cluster_roles[role]
            if present and parsed not in members:
                members.append(parsed)
            elif not present and parsed in members:
                members.remove(parsed)

    def grant(self, database: str, role: str, fqn: str, notes: str = "", table: str | None = None) -> None:
        """Set up state directly (as a portal user or an earlier admin would have)."""
        with self.lock:
            parsed = Fqn.parse(fqn)
            holder = self.table(database, table).principals if table else self.database(database).principals
            if not any(a.role == role and a.fqn == parsed for a in holder):
                holder.append(Assignment(role, parsed, self.display_name(parsed), notes))

    # ------------------------------------------------------------------ lookups

    def database(self, name: str) -> Database:
        db = self.databases.get(name)
        if db is None:
            raise database_not_found(name)
        return db

    def table(self, database: str, name: str) -> Table:
        table = self.database(database).tables.get(name)
        if table is None:
            raise table_not_found(name)
        return table

    def display_name(self, fqn: Fqn) -> str:
        if fqn.kind == "aadapp":
            for identity in self.directory.all():
                if fqn.id in (identity.client_id.lower(), identity.object_id.lower()):
                    return f"{identity.name} (app id: {identity.client_id})"
            return f"app (app id: {fqn.id})"
        return fqn.id

    def db_roles_of(self, identity: Identity, database: str, *, for_ingest: bool = False) -> set[str]:
        with self.lock:
            db = self.database(database)
            roles = {a.role for a in db.principals if a.fqn.matches(identity) and not (for_ingest and a.stale)}
            for cluster_role, role in CLUSTER_ROLES.items():
                if any(f.matches(identity) for f in self.cluster_roles[cluster_role]):
                    roles.add(role)
            return roles

    def table_roles_of(self, identity: Identity, database: str, table: str, *, for_ingest: bool = False) -> set[str]:
        with self.lock:
            t = self.table(database, table)
            return {a.role for a in t.principals if a.fqn.matches(identity) and not (for_ingest and a.stale)}

    # ------------------------------------------------------------------ rules

    def require_db(self, identity: Identity, database: str, allowed: set[str], operation: str) -> None:
        if not self.db_roles_of(identity, database) & allowed:
            raise forbidden(identity, operation, f"{self.url}/{database}")

    def require_reader(self, identity: Identity, database: str, operation: str) -> None:
        self.require_db(identity, database, _READERS, operation)

    def require_metadata_reader(self, identity: Identity, database: str, operation: str) -> None:
        self.require_db(identity, database, _METADATA_READERS, operation)

    def require_table_admin(self, identity: Identity, database: str, table: str, operation: str) -> None:
        if "admins" in self.db_roles_of(identity, database):
            return
        if "admins" not in self.table_roles_of(identity, database, table):
            raise forbidden(identity, operation, f"{self.url}/{database}/{table}")

    def can_ingest(self, identity: Identity, database: str, table: str) -> bool:
        db_roles = self.db_roles_of(identity, database, for_ingest=True)
        if db_roles & {"admins", "ingestors"}:
            return True
        table_roles = self.table_roles_of(identity, database, table, for_ingest=True)
        return bool(table_roles & {"admins", "ingestors"}) and bool(db_roles & {"users", "ingestors", "admins"})

    # ------------------------------------------------------------------ principal changes

    def change_principals(
        self,
        caller: Identity,
        verb: str,
        database: str,
        role: str,
        fqns: list[str],
        notes: str,
        table: str | None,
    ) -> list[Assignment]:
        with self.lock:
            if table is None:
                if role not in DB_ROLES:
                    raise bad_request(f"'{role}' is not a database security role.")
                self.require_db(caller, database, {"admins"}, f"{verb.capitalize()}DatabasePrincipals")
                holder = self.database(database).principals
            else:
                if role not in TABLE_ROLES:
                    raise bad_request(f"'{role}' is not a table security role (only admins and ingestors are).")
                self.require_table_admin(caller, database, table, f"{verb.capitalize()}TablePrincipals")
                holder = self.table(database, table).principals
            parsed = [Fqn.parse(f) for f in fqns]
            if not parsed:
                raise bad_request("At least one principal is required.")
            if verb == "add":
                if table is not None:
                    db_principals = self.database(database).principals
                    for fqn in parsed:
                        if not any(a.fqn == fqn for a in db_principals):
                            raise KustoFault(
                                400,
                                "BadRequest_PrincipalMissingDatabaseRole",
                                "Kusto.Data.Exceptions.KustoBadRequestException",
                                f"Principal '{fqn}' must hold a role in database '{database}' "
                                f"before it can be given a role on table '{table}'.",
                            )
                for fqn in parsed:
                    if not any(a.role == role and a.fqn == fqn for a in holder):
                        holder.append(Assignment(role, fqn, self.display_name(fqn), notes))
            else:
                holder[:] = [a for a in holder if not (a.role == role and a.fqn in parsed)]
            entity = f"{database}/{table}" if table else database
            for hook in self.on_principal_change:
                hook(caller, verb, entity, f"{role} ({', '.join(str(f) for f in parsed)})")
            return holder

    def clear_role(self, caller: Identity, database: str, role: str) -> list[Assignment]:
        with self.lock:
            if role not in DB_ROLES:
                raise bad_request(f"'{role}' is not a database security role.")
            self.require_db(caller, database, {"admins"}, "SetDatabasePrincipals")
            holder = self.database(database).principals
            holder[:] = [a for a in holder if a.role != role]
            for hook in self.on_principal_change:
                hook(caller, "set", database, f"{role} none")
            return holder

    # ------------------------------------------------------------------ ingestion

    def ingest(
        self,
        identity: Identity,
        database: str,
        table: str,
        rows: list[dict[str, Any]],
        source: str,
        *,
        by_command: bool = False,
        tags: list[str] | None = None,
        if_not_exists: list[str] | None = None,
    ) -> int:
        """Ingest as `identity`, or raise KustoFault.

        Only ingestion *commands* show up in `.show ingestion failures`; queued ingestion failures
        go to the FailedIngestion diagnostic log, which the caller (the world) writes.
        """
        with self.lock:
            try:
                t = self.table(database, table)
                if not self.can_ingest(identity, database, table):
                    raise forbidden(identity, "Ingest", f"{self.url}/{database}/{table}")
            except KustoFault as fault:
                if not by_command:
                    raise
                self.ingestion_failures.append(
                    IngestionFailure(str(uuid.uuid4()), database, table, datetime.now(UTC), source, fault.message)
                )
                raise
            # ingestIfNotExists: nothing is ingested when an extent already carries one of the tags.
            if if_not_exists and any(f"ingest-by:{tag}" in t.ingest_by_tags for tag in if_not_exists):
                return 0
            now = datetime.now(UTC)
            kinds = dict(t.columns)
            for row in rows:
                stored = {k: coerce(v, kinds[k]) for k, v in row.items() if k in kinds}
                stored["$IngestionTime"] = now
                t.rows.append(stored)
            t.ingest_by_tags.update(tag for tag in tags or [] if tag.startswith("ingest-by:"))
            return len(rows)


def coerce(value: Any, kind: str) -> Any:
    """JSON values into the column's type, as ingestion by column name does."""
    if value is None:
        return None
    try:
        if kind == "datetime" and isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        if kind in ("real", "double") and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind in ("long", "int") and isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        if kind == "string" and not isinstance(value, str):
            return json.dumps(value) if isinstance(value, dict | list) else str(value)
    except ValueError:
        return None
    return value
