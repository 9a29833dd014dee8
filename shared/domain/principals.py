"""Principals and role assignments as ADX reports them, and who a target's principal is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.domain import kusto_names

# `.show … principals` reports roles as "Database <db> Ingestor", "Table <t> Admin" or a cluster
# role name; commands use the plural keywords.
ROLE_KEYWORDS = {
    "admin": "admins",
    "user": "users",
    "viewer": "viewers",
    "unrestrictedviewer": "unrestrictedviewers",
    "ingestor": "ingestors",
    "monitor": "monitors",
}
CLUSTER_ROLES = ("AllDatabasesAdmin", "AllDatabasesViewer", "AllDatabasesMonitor")
INGESTING_DB_ROLES = frozenset({"admins", "ingestors"})
INGESTING_TABLE_ROLES = frozenset({"admins", "ingestors"})
TABLE_ROLE_PREREQUISITES = frozenset({"admins", "users", "ingestors"})
_FQN_ID = re.compile(r"^aadapp=([^;]+);(.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class PrincipalRef:
    """The identity IoT Central writes as: object id and/or client id, and the tenant."""

    tenant_id: str
    object_id: str | None = None
    client_id: str | None = None

    @staticmethod
    def from_fqn(fqn: str) -> PrincipalRef:
        """The principal an `aadapp=<id>;<tenant>` names; which id it is is not known."""
        match = _FQN_ID.match(fqn.strip())
        if match is None:
            raise ValueError(f"principal={fqn!r} is not aadapp=<id>;<tenant>")
        return PrincipalRef(tenant_id=match.group(2), object_id=match.group(1), client_id=match.group(1))

    def ids(self) -> set[str]:
        return {i.lower() for i in (self.object_id, self.client_id) if i}

    def fqn(self) -> str:
        """The FQN the healer grants: the object id, as IoT Central's docs prescribe."""
        chosen = self.object_id or self.client_id
        return kusto_names.principal_fqn("principal", f"aadapp={chosen};{self.tenant_id}")

    def matches_fqn(self, fqn: str) -> bool:
        """Either id, the tenant as a GUID; case-insensitive (ADX may list the application id
        and the tenant GUID whatever was typed)."""
        match = _FQN_ID.match(fqn.strip())
        if match is None:
            return False
        return match.group(1).lower() in self.ids() and match.group(2).lower() == self.tenant_id.lower()

    def matches(self, assignment: Assignment) -> bool:
        """An assignment names this principal by FQN (either id) or by `PrincipalObjectId`."""
        if self.matches_fqn(assignment.fqn):
            return True
        return bool(assignment.object_id) and assignment.object_id.lower() in self.ids()


def role_keyword(text: str) -> str | None:
    """A role's text → the command keyword: last word, singular or plural, any case."""
    words = text.split()
    if not words:
        return None
    word = words[-1].lower()
    return ROLE_KEYWORDS.get(word) or ROLE_KEYWORDS.get(word.removesuffix("s"))


def own_role(text: str) -> str | None:
    """The text of `Role` in `.show database D principal roles` (undocumented): a cluster role
    name, or a database role in any of the forms seen (Admin, Admins, Database D Admin)."""
    stripped = text.strip()
    for name in CLUSTER_ROLES:
        if stripped.lower() == name.lower():
            return name
    return role_keyword(stripped)


@dataclass(frozen=True)
class Assignment:
    """One row of `.show database|table … principals`."""

    scope: str  # "database", "table" or "cluster"
    role: str  # command keyword (admins, ingestors, …) or a cluster role name
    fqn: str
    object_id: str
    display_name: str
    notes: str

    @staticmethod
    def from_row(row: dict[str, Any]) -> Assignment:
        """Read by column name: ADX does not promise column order. ValueError for a role text
        that is not a database, table or cluster role (callers skip such rows)."""
        role_text = str(row["Role"]).strip()
        words = role_text.split()
        cluster = next((name for name in CLUSTER_ROLES if name.lower() == role_text.lower()), None)
        keyword = role_keyword(role_text)
        if cluster is not None:
            scope, role = "cluster", cluster
        elif len(words) >= 3 and words[0].lower() in ("database", "table") and keyword is not None:
            scope, role = words[0].lower(), keyword
        else:
            raise ValueError(f"unknown role {role_text!r} in a principals listing")
        return Assignment(
            scope=scope,
            role=role,
            fqn=str(row["PrincipalFQN"]),
            object_id=str(row.get("PrincipalObjectId") or ""),
            display_name=str(row.get("PrincipalDisplayName") or ""),
            notes=str(row.get("Notes") or ""),
        )

    def held_by(self, principal: PrincipalRef) -> bool:
        return principal.matches(self)


def parse_listing(rows: list[dict[str, Any]]) -> tuple[list[Assignment], list[str]]:
    """Rows of a principals listing → assignments, and a note per row skipped (unknown role text:
    listings have carried cluster-level rows in other wordings). A listing is never a failed read."""
    assignments: list[Assignment] = []
    skipped: list[str] = []
    for row in rows:
        try:
            assignments.append(Assignment.from_row(row))
        except (ValueError, KeyError) as exc:
            skipped.append(f"skipped a listing row: {exc}")
    return assignments, skipped
