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

Principals are resolved against the directory when added: `.add` of an application id Entra does
not know is refused (ARM's "Entity ID … of type 'AAD Application Id' was not found"), and a
listing shows an application under its application (client) id with the tenant as a GUID and
the object id in `PrincipalObjectId`, whatever id was typed (`list_normalised`; switch it off to
echo the FQN as it was added). Both ways are tested (sandbox/fidelity.py).
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

from sandbox.entra import Directory, Identity

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


def unknown_principal(fqn: Fqn) -> KustoFault:
    """Entra does not know the application (not yet replicated, or deleted).

    The wording is ARM's for the same refusal (Azure/azure-sdk-for-net#16416); the Kusto
    command's own code and text are unverified (sandbox/fidelity.py)."""
    return KustoFault(
        400,
        "BadRequest_EntityNotFound",
        "Kusto.Data.Exceptions.EntityNotFoundException",
        f"Entity ID '{fqn.id}' of type 'AAD Application Id' was not found in AAD tenant '{fqn.tenant}'.",
    )


def denied(identity: Identity, code: str, operation: str, resource: str) -> KustoFault:
    """A denied ingestion, with one of the permission codes of ADX's error-codes page."""
    if code == "BadRequest_TableAccessDenied":
        return KustoFault(
            400, code, "Kusto.DataNode.Exceptions.TableAccessDeniedException", "Access to table is denied."
        )
    if code == "BadRequest_DatabaseAccessDenied":
        return KustoFault(
            400,
            code,
            "Kusto.DataNode.Exceptions.DatabaseAccessDeniedException",
            f"Access to database '{resource.rsplit('/', 2)[-2]}' is denied for principal '{identity.fqn}'.",
        )
    if code == "BadRequest_InvalidKustoIdentityToken":
        return KustoFault(
            400, code, "Kusto.Data.Exceptions.KustoIdentityTokenException", "Kusto identity token is invalid."
        )
    return forbidden(identity, operation, resource)


def database_not_found(name: str) -> KustoFault:
    """A command or query on a database the cluster does not have: HTTP 404 with the OneApi body
    Azure/azure-kusto-samples-dotnet#29 shows (code NotFound, EntityNameDoesNotExistException)."""
    return KustoFault(
        404,
        "NotFound",
        "Kusto.Common.Svc.Exceptions.EntityNameDoesNotExistException",
        f"Entity name '{name}' of kind 'Database' does not exist.",
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
    fqn: Fqn  # as it was typed
    display_name: str
    notes: str = ""
    stale: bool = False
    added_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    object_id: str = ""  # resolved from the directory when added
    client_id: str = ""
    tenant_id: str = ""
    assignment_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def same_principal(self, other: Fqn) -> bool:
        """`other` names this assignment's principal by any of its ids (what `.drop` matches)."""
        if other.kind != self.fqn.kind:
            return False
        ids = {i for i in (self.fqn.id, self.object_id.lower(), self.client_id.lower()) if i}
        tenants = {t for t in (self.fqn.tenant, self.tenant_id.lower()) if t}
        return other.id in ids and (not other.tenant or other.tenant in tenants)

    def held_by(self, identity: Identity) -> bool:
        if self.fqn.kind != "aadapp":
            return False
        ids = {i for i in (self.fqn.id, self.object_id.lower(), self.client_id.lower()) if i}
        tenants = {t for t in (self.fqn.tenant, self.tenant_id.lower()) if t}
        return bool(ids & {identity.client_id.lower(), identity.object_id.lower()}) and (
            identity.tenant_id.lower() in tenants
        )

    def listed_fqn(self, normalised: bool) -> str:
        if normalised and self.fqn.kind == "aadapp" and self.client_id:
            return f"aadapp={self.client_id.lower()};{(self.tenant_id or self.fqn.tenant).lower()}"
        return str(self.fqn)

    def listed_object_id(self) -> str:
        return (self.object_id or self.fqn.id).lower()


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
    extent_tags: set[str] = field(default_factory=set)  # every tag of the table's extents
    ingestion_time_policy: bool = True  # enabled by default for new tables


@dataclass
class Database:
    name: str
    tables: dict[str, Table] = field(default_factory=dict)
    principals: list[Assignment] = field(default_factory=list)
    streaming_ingestion: bool = False


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
        self.ingestion: Any = None  # sandbox.adx.ingestion.IngestionService once storage is attached
        self.command_text = ""  # the control command being executed (the journal records it as sent)
        # How listings name an application: normalised (application id, tenant GUID) or echoed.
        self.list_normalised = True
        # How cluster-level rows read in a listing: the role name, or a "Cluster …" text.
        self.cluster_row_text = "role-name"  # or "cluster-prefix"
        # The text of `Role` in `.show database D principal roles` (undocumented).
        self.own_role_text = "singular"  # "Admin"; or "plural" ("Admins"), "scoped" ("Database D Admin")
        # The error code a denied ingestion carries, per database ("" = by the situation).
        self.denial_codes: dict[str, str] = {}

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
            if not any(a.role == role and a.same_principal(parsed) for a in holder):
                holder.append(self.assignment(role, parsed, notes))

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

    def resolve(self, fqn: Fqn) -> Identity | None:
        """The directory's identity an application FQN names (by client or object id), if any."""
        if fqn.kind != "aadapp":
            return None
        tenant = self.directory.tenant_of(fqn.tenant) if fqn.tenant else None
        for identity in self.directory.all():
            if fqn.id in (identity.client_id.lower(), identity.object_id.lower()) and (
                tenant is None or tenant.lower() == identity.tenant_id.lower()
            ):
                return identity
        return None

    def assignment(self, role: str, fqn: Fqn, notes: str) -> Assignment:
        identity = self.resolve(fqn)
        if identity is None:
            tenant = self.directory.tenant_of(fqn.tenant) or fqn.tenant
            return Assignment(role, fqn, self.display_name(fqn), notes, tenant_id=tenant)
        return Assignment(
            role,
            fqn,
            self.display_name(fqn),
            notes,
            object_id=identity.object_id,
            client_id=identity.client_id,
            tenant_id=identity.tenant_id,
        )

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
            roles = {a.role for a in db.principals if a.held_by(identity) and not (for_ingest and a.stale)}
            for cluster_role, role in CLUSTER_ROLES.items():
                if any(f.matches(identity) for f in self.cluster_roles[cluster_role]):
                    roles.add(role)
            return roles

    def table_roles_of(self, identity: Identity, database: str, table: str, *, for_ingest: bool = False) -> set[str]:
        with self.lock:
            t = self.table(database, table)
            return {a.role for a in t.principals if a.held_by(identity) and not (for_ingest and a.stale)}

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

    def _denial_code(self, identity: Identity, database: str) -> str:
        """A mix, as ADX's error-codes page lists them: a principal with database roles that cannot
        ingest gets BadRequest_DatabaseAccessDenied; one with none (or only stale ones), Forbidden."""
        live = self.db_roles_of(identity, database, for_ingest=True)
        return "BadRequest_DatabaseAccessDenied" if live - {"admins", "ingestors"} else "Forbidden"

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
                for fqn in parsed:
                    if fqn.kind == "aadapp" and self.resolve(fqn) is None:
                        raise unknown_principal(fqn)
                if table is not None:
                    db_principals = self.database(database).principals
                    for fqn in parsed:
                        if not any(a.same_principal(fqn) for a in db_principals):
                            raise KustoFault(
                                400,
                                "BadRequest_PrincipalMissingDatabaseRole",
                                "Kusto.Data.Exceptions.KustoBadRequestException",
                                f"Principal '{fqn}' must hold a role in database '{database}' "
                                f"before it can be given a role on table '{table}'.",
                            )
                for fqn in parsed:
                    if not any(a.role == role and a.same_principal(fqn) for a in holder):
                        holder.append(self.assignment(role, fqn, notes))
            else:
                holder[:] = [a for a in holder if not (a.role == role and any(a.same_principal(f) for f in parsed))]
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
                    code = self.denial_codes.get(f"{database}/{table}") or self._denial_code(identity, database)
                    raise denied(identity, code, "Ingest", f"{self.url}/{database}/{table}")
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
                # With the IngestionTime policy disabled, ingestion_time() is null.
                stored["$IngestionTime"] = now if t.ingestion_time_policy else None
                t.rows.append(stored)
            t.ingest_by_tags.update(tag for tag in tags or [] if tag.startswith("ingest-by:"))
            t.extent_tags.update(tags or [])
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
