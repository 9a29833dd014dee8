"""Control commands of the ADX stand-in: a strict tokenizer and the commands the healer needs."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.adx.model import (
    CLUSTER_ROLES,
    DB_ROLES,
    PRINCIPAL_TYPES,
    TABLE_ROLES,
    Assignment,
    Cluster,
    KustoFault,
    Table,
    bad_request,
    forbidden,
)
from sandbox.entra import Identity

Column = tuple[str, str]  # (name, Kusto scalar type)


@dataclass
class Frame:
    columns: list[Column]
    rows: list[list[Any]]


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<command>^\.[A-Za-z-]+)
  | (?P<skip>skip-results\b)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<bracket>\[\s*(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")\s*\])
  | (?P<string>[hH]?(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")|@'[^'\n]*'|@"[^"\n]*")
  | (?P<pipe><\|)
  | (?P<punct>[(),:;])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Tok:
    kind: str
    value: str
    pos: int


def _unquote(text: str) -> str:
    if text[:1] in "hH" and text[1:2] in "'\"":
        text = text[1:]
    if text.startswith("@"):
        return text[2:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), text[1:-1])


def tokenize(text: str) -> tuple[list[Tok], str]:
    """Tokens before `<|`, and the raw text after it (inline ingestion data)."""
    tokens: list[Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise bad_request(f"Syntax error: unexpected character {text[pos]!r} at position {pos}.")
        kind = match.lastgroup or ""
        chunk = match.group(0)
        if kind == "pipe":
            return tokens, text[match.end() :]
        if kind in {"name", "skip"}:
            tokens.append(Tok("name", chunk, pos))
        elif kind == "command":
            tokens.append(Tok("command", chunk.lower(), pos))
        elif kind == "bracket":
            tokens.append(Tok("ident", _unquote(chunk[1:-1].strip()), pos))
        elif kind == "string":
            tokens.append(Tok("string", _unquote(chunk), pos))
        elif kind == "punct":
            tokens.append(Tok("punct", chunk, pos))
        pos = match.end()
    return tokens, ""


class Cursor:
    def __init__(self, tokens: list[Tok]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self, offset: int = 0) -> Tok | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def word(self, *expected: str) -> str:
        tok = self.peek()
        if tok is None or tok.kind != "name" or (expected and tok.value.lower() not in expected):
            want = " or ".join(f"'{e}'" for e in expected) if expected else "a keyword"
            found = tok.value if tok else "end of command"
            raise bad_request(f"Syntax error: expected {want}, found '{found}'.")
        self.i += 1
        return tok.value.lower()

    def accept(self, value: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind in ("name", "punct") and tok.value.lower() == value:
            self.i += 1
            return True
        return False

    def entity(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind not in ("name", "ident"):
            raise bad_request(
                f"Syntax error: expected an entity name, found '{tok.value if tok else 'end of command'}'."
            )
        self.i += 1
        return tok.value

    def string(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind != "string":
            raise bad_request(
                f"Syntax error: expected a string literal, found '{tok.value if tok else 'end of command'}'."
            )
        self.i += 1
        return tok.value

    def end(self) -> None:
        tok = self.peek()
        if tok is not None:
            raise bad_request(f"Syntax error: unexpected '{tok.value}' at position {tok.pos}.")


_PRINCIPAL_COLUMNS: list[Column] = [
    ("Role", "string"),
    ("PrincipalType", "string"),
    ("PrincipalDisplayName", "string"),
    ("PrincipalObjectId", "string"),
    ("PrincipalFQN", "string"),
    ("Notes", "string"),
    ("RoleAssignmentIdentifier", "string"),
]
_POLICY_COLUMNS: list[Column] = [
    ("PolicyName", "string"),
    ("EntityName", "string"),
    ("Policy", "string"),
    ("ChildEntities", "dynamic"),
    ("EntityType", "string"),
]


# `.show table T details`, the columns its reference page lists (dataexplorer-docs,
# kusto/management/show-table-details-command.md): policies are the *effective* ones, "taking
# into account policies of parent entities (such as database/cluster)".
_DETAILS_COLUMNS: list[Column] = [
    ("TableName", "string"),
    ("DatabaseName", "string"),
    ("Folder", "string"),
    ("DocString", "string"),
    ("TotalExtents", "long"),
    ("TotalExtentSize", "real"),
    ("TotalOriginalSize", "real"),
    ("TotalRowCount", "long"),
    ("HotExtents", "long"),
    ("HotExtentSize", "real"),
    ("HotOriginalSize", "real"),
    ("HotRowCount", "long"),
    ("AuthorizedPrincipals", "string"),
    ("RetentionPolicy", "string"),
    ("CachingPolicy", "string"),
    ("ShardingPolicy", "string"),
    ("MergePolicy", "string"),
    ("StreamingIngestionPolicy", "string"),
    ("IngestionBatchingPolicy", "string"),
    ("MinExtentsCreationTime", "datetime"),
    ("MaxExtentsCreationTime", "datetime"),
    ("RowOrderPolicy", "string"),
    ("TableId", "string"),
]


def _table_details(cluster: Cluster, db_name: str, table: Table) -> Frame:
    """The stand-in models the names, row count, the table's own principals and the effective
    streaming-ingestion policy; extents and the other policies it does not model (null, 0)."""
    streaming = table.streaming_ingestion or cluster.database(db_name).streaming_ingestion
    principals = [
        {
            "Type": PRINCIPAL_TYPES[a.fqn.kind],
            "DisplayName": a.display_name,
            "ObjectId": a.listed_object_id(),
            "FQN": a.listed_fqn(cluster.list_normalised),
            "Notes": a.notes,
        }
        for a in table.principals
    ]
    rows = len(table.rows)
    row = [
        table.name,
        db_name,
        "",
        "",
        1 if rows else 0,
        0.0,
        0.0,
        rows,
        1 if rows else 0,
        0.0,
        0.0,
        rows,
        json.dumps(principals),
        None,
        None,
        None,
        None,
        json.dumps({"IsEnabled": True, "HintAllocatedRate": None}) if streaming else None,
        None,
        None,
        None,
        None,
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cluster.url}/{db_name}/{table.name}")),
    ]
    return Frame(_DETAILS_COLUMNS, [row])


def _principal_rows(
    cluster: Cluster, scope: str, assignments: list[Assignment], roles: dict[str, str]
) -> list[list[Any]]:
    return [
        [
            f"{scope} {roles[a.role]}",
            PRINCIPAL_TYPES[a.fqn.kind],
            a.display_name,
            a.listed_object_id(),
            a.listed_fqn(cluster.list_normalised),
            a.notes,
            a.assignment_id,
        ]
        for a in assignments
    ]


def _cluster_rows(cluster: Cluster) -> list[list[Any]]:
    """Cluster-level roles as listings show them; their role text is not a database role."""
    rows: list[list[Any]] = []
    for cluster_role, members in cluster.cluster_roles.items():
        text = cluster_role if cluster.cluster_row_text == "role-name" else f"Cluster {cluster_role[12:]}"
        for fqn in members:
            a = cluster.assignment(CLUSTER_ROLES[cluster_role], fqn, "")
            rows.append(
                [
                    text,
                    PRINCIPAL_TYPES[fqn.kind],
                    a.display_name,
                    a.listed_object_id(),
                    a.listed_fqn(cluster.list_normalised),
                    "",
                    a.assignment_id,
                ]
            )
    return rows


def execute(cluster: Cluster, caller: Identity, database: str | None, text: str) -> Frame:
    tokens, inline = tokenize(text.strip())
    if not tokens or tokens[0].kind != "command":
        raise bad_request("Syntax error: a control command starts with '.'.")
    cur = Cursor(tokens)
    verb = cur.peek()
    assert verb is not None
    cur.i = 1
    with cluster.lock:
        if verb.value == ".show":
            return _show(cluster, caller, database, cur)
        if verb.value in (".add", ".drop", ".set"):
            cluster.command_text = text.strip()
            try:
                return _principals(cluster, caller, database, verb.value[1:], cur)
            finally:
                cluster.command_text = ""
        if verb.value == ".create":
            return _create_table(cluster, caller, database, cur)
        if verb.value == ".ingest":
            return _ingest_inline(cluster, caller, database, cur, inline)
        if verb.value == ".get":
            return _get(cluster, caller, cur)
    raise bad_request(f"Syntax error: unknown control command '{verb.value}'.")


def _need_db(database: str | None) -> str:
    if not database:
        raise bad_request(
            "The request does not name a database (the 'db' property is empty).", "BadRequest_NoDatabaseName"
        )
    return database


def _show(cluster: Cluster, caller: Identity, database: str | None, cur: Cursor) -> Frame:
    what = cur.word("database", "table", "tables", "ingestion")
    if what == "tables":
        cur.end()
        db = _need_db(database)
        cluster.require_metadata_reader(caller, db, "ShowTables")
        return Frame(
            [
                ("TableName", "string"),
                ("DatabaseName", "string"),
                ("Folder", "string"),
                ("DocString", "string"),
            ],
            [[t.name, db, "", ""] for t in cluster.database(db).tables.values()],
        )
    if what == "ingestion":
        cur.word("failures")
        cur.end()
        return _ingestion_failures(cluster, caller, database)
    if what == "database":
        name = cur.entity()
        kind = cur.word("principals", "principal", "policy")
        if kind == "policy":
            cur.word("streamingingestion")
            cur.end()
            cluster.require_metadata_reader(caller, name, "ShowDatabasePolicy")
            on = cluster.database(name).streaming_ingestion
            value = json.dumps({"IsEnabled": True, "HintAllocatedRate": None}) if on else "null"
            return Frame(_POLICY_COLUMNS, [["StreamingIngestionPolicy", f"[{name}]", value, None, "Database"]])
        if kind == "principal":
            cur.word("roles")
            cur.end()
            cluster.database(name)
            return _caller_roles(cluster, caller, name)
        cur.end()
        cluster.require_metadata_reader(caller, name, "ShowDatabasePrincipals")
        rows = _principal_rows(cluster, f"Database {name}", cluster.database(name).principals, DB_ROLES)
        return Frame(_PRINCIPAL_COLUMNS, rows + _cluster_rows(cluster))
    # table
    db_name = _need_db(database)
    name = cur.entity()
    kind = cur.word("principals", "ingestion", "policy", "cslschema", "details")
    table = cluster.table(db_name, name)
    cluster.require_metadata_reader(caller, db_name, "ShowTable")
    if kind == "details":
        cur.end()
        return _table_details(cluster, db_name, table)
    if kind == "cslschema":
        cur.end()
        schema = ", ".join(f"{c}:{t}" for c, t in table.columns)
        return Frame(
            [
                ("TableName", "string"),
                ("Schema", "string"),
                ("DatabaseName", "string"),
                ("Folder", "string"),
                ("DocString", "string"),
            ],
            [[name, schema, db_name, "", ""]],
        )
    if kind == "principals":
        cur.end()
        # The table's own rows, then what it inherits from its database and the cluster.
        rows = _principal_rows(cluster, f"Table {name}", table.principals, TABLE_ROLES)
        rows += _principal_rows(cluster, f"Database {db_name}", cluster.database(db_name).principals, DB_ROLES)
        return Frame(_PRINCIPAL_COLUMNS, rows + _cluster_rows(cluster))
    if kind == "ingestion":
        mapping_kind = None
        if not cur.accept("mappings"):
            mapping_kind = cur.word("csv", "json", "avro", "parquet", "orc", "w3clogfile")
            cur.word("mappings")
        cur.end()
        rows = [
            [m["Name"], m["Kind"], json.dumps(m["Mapping"]), m["LastUpdatedOn"], db_name, name]
            for m in table.mappings
            if mapping_kind is None or m["Kind"].lower() == mapping_kind
        ]
        return Frame(
            [
                ("Name", "string"),
                ("Kind", "string"),
                ("Mapping", "string"),
                ("LastUpdatedOn", "datetime"),
                ("Database", "string"),
                ("Table", "string"),
            ],
            rows,
        )
    policy = cur.word("row_level_security", "restricted_view_access", "ingestiontime", "streamingingestion")
    cur.end()
    entity = f"[{db_name}].[{name}]"
    if policy == "streamingingestion":
        value = json.dumps({"IsEnabled": True, "HintAllocatedRate": None}) if table.streaming_ingestion else "null"
        return Frame(_POLICY_COLUMNS, [["StreamingIngestionPolicy", entity, value, None, "Table"]])
    if policy == "row_level_security":
        value = json.dumps(table.row_level_security) if table.row_level_security else "null"
        return Frame(_POLICY_COLUMNS, [["RowLevelSecurityPolicy", entity, value, None, "Table"]])
    if policy == "ingestiontime":
        value = json.dumps({"IsEnabled": table.ingestion_time_policy})
        return Frame(_POLICY_COLUMNS, [["IngestionTimePolicy", entity, value, None, "Table"]])
    value = "true" if table.restricted_view_access else "null"
    return Frame(_POLICY_COLUMNS, [["RestrictedViewAccessPolicy", entity, value, None, "Table"]])


def _get(cluster: Cluster, caller: Identity, cur: Cursor) -> Frame:
    """`.get ingestion resources` and `.get kusto identity token`: the data-management commands
    azure-kusto-ingest sends (its _ResourceManager) before queuing a blob."""
    service = cluster.ingestion
    what = cur.word("ingestion", "kusto")
    if what == "ingestion":
        cur.word("resources")
    else:
        cur.word("identity")
        cur.word("token")
    cur.end()
    if service is None:
        raise bad_request("Queued ingestion is not configured on this cluster.", "BadRequest_NotSupported")
    if not any(cluster.db_roles_of(caller, db) & {"admins", "ingestors"} for db in cluster.databases):
        raise forbidden(caller, "GetIngestionResources", cluster.url)
    if what == "ingestion":
        return Frame([("ResourceTypeName", "string"), ("StorageRoot", "string")], service.resources())
    return Frame([("AuthorizationContext", "string")], [[service.identity_token(caller)]])


def _caller_roles(cluster: Cluster, caller: Identity, name: str) -> Frame:
    rows: list[list[Any]] = []
    db = cluster.database(name)
    for a in db.principals:
        if a.held_by(caller):
            role = DB_ROLES[a.role]
            if cluster.own_role_text == "plural":
                role += "s"
            elif cluster.own_role_text == "scoped":
                role = f"Database {name} {role}"
            rows.append([f"Database {name}", a.display_name, caller.object_id, role])
    for cluster_role, members in cluster.cluster_roles.items():
        if any(f.matches(caller) for f in members):
            rows.append(["Cluster", cluster.display_name(members[0]), caller.object_id, cluster_role])
    return Frame([("Scope", "string"), ("DisplayName", "string"), ("AADObjectID", "string"), ("Role", "string")], rows)


def _ingestion_failures(cluster: Cluster, caller: Identity, database: str | None) -> Frame:
    visible = [
        f
        for f in cluster.ingestion_failures
        if f.database in cluster.databases
        and cluster.db_roles_of(caller, f.database) & {"admins", "monitors", "viewers"}
    ]
    if database and database in cluster.databases:
        cluster.require_metadata_reader(caller, database, "ShowIngestionFailures")
    return Frame(
        [
            ("OperationId", "guid"),
            ("Database", "string"),
            ("Table", "string"),
            ("FailedOn", "datetime"),
            ("IngestionSourcePath", "string"),
            ("Details", "string"),
            ("FailureKind", "string"),
            ("RootActivityId", "guid"),
            ("OperationKind", "string"),
            ("OriginatesFromUpdatePolicy", "bool"),
            ("ShouldRetry", "bool"),
        ],
        [
            [
                f.operation_id,
                f.database,
                f.table,
                f.failed_on,
                f.source,
                f.details,
                f.kind,
                f.operation_id,
                "DataIngestPull",
                False,
                False,
            ]
            for f in visible
        ],
    )


def _principals(cluster: Cluster, caller: Identity, database: str | None, verb: str, cur: Cursor) -> Frame:
    scope = cur.word("database", "table", "cluster", "function", "materialized-view", "external")
    if scope == "cluster":
        raise KustoFault(
            403,
            "Forbidden",
            "Kusto.Data.Exceptions.UnauthorizedOperationException",
            "Cluster-level security roles (AllDatabasesAdmin, AllDatabasesViewer, AllDatabasesMonitor) "
            "cannot be changed with a command on Azure Data Explorer; use the Azure portal or ARM.",
        )
    if scope not in ("database", "table"):
        raise bad_request(f"Syntax error: '{scope}' principals are not supported by this cluster.")
    name = cur.entity()
    role = cur.word()
    if verb == "set":
        cur.word("none")
        skip = cur.accept("skip-results")
        cur.end()
        if scope != "database":
            raise bad_request("Syntax error: '.set table … none' is not supported.")
        result = cluster.clear_role(caller, name, role)
        return Frame(_PRINCIPAL_COLUMNS, [] if skip else _principal_rows(cluster, f"Database {name}", result, DB_ROLES))
    if not cur.accept("("):
        raise bad_request("Syntax error: expected '(' before the list of principals.")
    fqns = [cur.string()]
    while cur.accept(","):
        fqns.append(cur.string())
    if not cur.accept(")"):
        raise bad_request("Syntax error: expected ')' after the list of principals.")
    skip = cur.accept("skip-results")
    notes = cur.string() if cur.peek() is not None else ""
    cur.end()
    if scope == "database":
        result = cluster.change_principals(caller, verb, name, role, fqns, notes, None)
        return Frame(_PRINCIPAL_COLUMNS, [] if skip else _principal_rows(cluster, f"Database {name}", result, DB_ROLES))
    db_name = _need_db(database)
    result = cluster.change_principals(caller, verb, db_name, role, fqns, notes, name)
    return Frame(_PRINCIPAL_COLUMNS, [] if skip else _principal_rows(cluster, f"Table {name}", result, TABLE_ROLES))


_SCALAR_TYPES = {
    "string",
    "long",
    "int",
    "real",
    "double",
    "datetime",
    "bool",
    "boolean",
    "dynamic",
    "guid",
    "timespan",
}


def _create_table(cluster: Cluster, caller: Identity, database: str | None, cur: Cursor) -> Frame:
    cur.word("table")
    db_name = _need_db(database)
    name = cur.entity()
    if not cur.accept("("):
        raise bad_request("Syntax error: expected '(' before the table schema.")
    columns: list[Column] = []
    while True:
        col = cur.entity()
        if not cur.accept(":"):
            raise bad_request("Syntax error: expected ':' between a column name and its type.")
        col_type = cur.word()
        if col_type not in _SCALAR_TYPES:
            raise bad_request(f"Syntax error: '{col_type}' is not a scalar type.")
        columns.append((col, col_type))
        if not cur.accept(","):
            break
    if not cur.accept(")"):
        raise bad_request("Syntax error: expected ')' after the table schema.")
    cur.end()
    cluster.require_db(caller, db_name, {"admins", "users"}, "CreateTable")
    cluster.create_table(db_name, name, columns)
    return Frame(
        [("TableName", "string"), ("Schema", "string"), ("DatabaseName", "string")],
        [[name, ", ".join(f"{c}:{t}" for c, t in columns), db_name]],
    )


def _ingest_inline(cluster: Cluster, caller: Identity, database: str | None, cur: Cursor, data: str) -> Frame:
    cur.word("inline")
    cur.word("into")
    cur.word("table")
    name = cur.entity()
    cur.end()
    db_name = _need_db(database)
    table = cluster.table(db_name, name)
    rows = []
    for record in csv.reader(io.StringIO(data.strip())):
        if len(record) > len(table.columns):
            raise bad_request(f"The record has {len(record)} fields; table '{name}' has {len(table.columns)} columns.")
        rows.append({col: _convert(value, kind) for (col, kind), value in zip(table.columns, record, strict=False)})
    try:
        count = cluster.ingest(caller, db_name, name, rows, "inline", by_command=True)
    except KustoFault as fault:
        if fault.status == 403:
            raise forbidden(caller, "Ingest", f"{cluster.url}/{db_name}/{name}") from fault
        raise
    return Frame(
        [("ExtentId", "guid"), ("ItemLoaded", "string"), ("Duration", "timespan"), ("HasErrors", "bool")],
        [["00000000-0000-0000-0000-000000000000", "inline", "00:00:00", False]] if count else [],
    )


def _convert(value: str, kind: str) -> Any:
    if value == "":
        return None
    if kind in ("long", "int"):
        return int(value)
    if kind in ("real", "double"):
        return float(value)
    if kind in ("bool", "boolean"):
        return value.lower() == "true"
    if kind == "datetime":
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    if kind == "dynamic":
        return json.loads(value)
    return value


__all__ = ["CLUSTER_ROLES", "Frame", "execute"]
