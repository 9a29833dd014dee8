"""Principals and role assignments as ADX reports them, and who a target's principal is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared import kusto_names

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

    def ids(self) -> set[str]:
        return {i.lower() for i in (self.object_id, self.client_id) if i}

    def fqn(self) -> str:
        """The FQN the healer grants: the object id, as IoT Central's docs prescribe."""
        chosen = self.object_id or self.client_id
        return kusto_names.principal_fqn("principal", f"aadapp={chosen};{self.tenant_id}")

    def matches_fqn(self, fqn: str) -> bool:
        match = _FQN_ID.match(fqn.strip())
        if match is None:
            return False
        return match.group(1).lower() in self.ids() and match.group(2).lower() == self.tenant_id.lower()


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
        """Read by column name: ADX does not promise column order."""
        role_text = str(row["Role"])
        words = role_text.split()
        if role_text in CLUSTER_ROLES:
            scope, role = "cluster", role_text
        elif len(words) >= 3 and words[0] in ("Database", "Table"):
            scope = words[0].lower()
            keyword = ROLE_KEYWORDS.get(words[-1].lower())
            if keyword is None:
                raise ValueError(f"unknown role {role_text!r} in a principals listing")
            role = keyword
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
        return principal.matches_fqn(self.fqn)
