"""Diagnosis: what is wrong with a target, with the evidence for it. Pure logic, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from shared.domain.checklist import CheckItem
from shared.domain.principals import (
    INGESTING_DB_ROLES,
    INGESTING_TABLE_ROLES,
    TABLE_ROLE_PREREQUISITES,
    Assignment,
    PrincipalRef,
)

# ADX's error-codes page (permission failures) and the category names it gives them. IoT
# Central's own codes for ADX failures are undocumented, so keywords decide as well.
PERMISSION_CODES = {
    "Forbidden",
    "Unauthorized",
    "UserAccessNotAuthorized",
    "DataAccessNotAuthorized",
    "BadRequest_DatabaseAccessDenied",
    "BadRequest_TableAccessDenied",
    "BadRequest_InvalidKustoIdentityToken",
}
_PERMISSION_TEXT = re.compile(
    r"not\s+authori[sz]ed|unauthori[sz]ed|lacks?\s+(?:the\s+)?required\s+permission|forbidden|"
    r"access\s*(?:to\s+(?:the\s+)?(?:table|database)\s+(?:\S+\s+)?)?(?:is\s+|was\s+)?denied|"
    r"permission\s*denied|insufficient\s*(?:permission|privilege|role)|"
    r"does\s+not\s+have\s+(?:the\s+)?(?:required\s+)?(?:permission|access)|identity\s*token\s+is\s+invalid",
    re.IGNORECASE,
)


def is_permission_failure(code: str, message: str) -> bool:
    """By code (ADX's documented ones) or by keywords in the code or the message."""
    return code in PERMISSION_CODES or bool(_PERMISSION_TEXT.search(f"{code} {message}"))


class Kind(StrEnum):
    HEALTHY = "healthy"
    PRINCIPAL_MISSING = "principal-missing"
    PRINCIPAL_STALE = "principal-stale"
    IDENTITY_CHANGED = "identity-changed"
    INSUFFICIENT_ROLE = "insufficient-role"
    HEALER_NOT_ADMIN = "healer-not-admin"
    NON_PERMISSION = "non-permission"


@dataclass(frozen=True)
class Evidence:
    """One failure signal: where it came from, its code and message."""

    source: str  # "iotcentral" | "loganalytics" | "alert"
    code: str
    message: str

    @property
    def permission(self) -> bool:
        return is_permission_failure(self.code, self.message)


@dataclass(frozen=True)
class AdxState:
    """What ADX says about the target, read by the adapter."""

    database_exists: bool
    table_exists: bool
    database_principals: list[Assignment]
    table_principals: list[Assignment]
    healer_roles: set[str]
    row_level_security: bool = False
    listing_notes: list[str] = field(default_factory=list)  # rows skipped (unknown role text)
    streaming_ingestion: bool | None = None
    table_near_miss: str | None = None  # a table whose name differs only in case


@dataclass
class Diagnosis:
    kind: Kind
    summary: str
    principal: PrincipalRef
    evidence: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    holdings: list[Assignment] = field(default_factory=list)  # the principal's own rows (db level)
    previous: PrincipalRef | None = None  # for identity-changed: the identity ADX still holds
    root_cause: dict[str, object] | None = None  # shared/reporting/root_cause.py: who changed it, when
    checklist: list[CheckItem] = field(default_factory=list)  # the forum's configuration checklist

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": str(self.kind),
            "summary": self.summary,
            "evidence": self.evidence,
            "notes": self.notes,
            "checklist": [c.to_dict() for c in self.checklist],
        }
        if self.root_cause is not None:
            out["root_cause"] = self.root_cause
        return out


def healer_is_admin(roles: set[str]) -> bool:
    return "admins" in roles or "AllDatabasesAdmin" in roles


_NAMED = re.compile(r"aadapp=([0-9a-fA-F-]{36});([0-9a-fA-F-]{36}|[A-Za-z0-9.-]+)", re.IGNORECASE)


def identity_named_by(evidence: list[Evidence], configured: PrincipalRef) -> PrincipalRef | None:
    """A different identity named in permission errors ("Principal 'aadapp=…' is not authorized").

    Trusted only when both the object id and the client id are configured: ADX may name an
    identity by either, so with one id known a mismatch proves nothing.
    """
    if not (configured.object_id and configured.client_id):
        return None
    for item in evidence:
        if not item.permission:
            continue
        for found, tenant in _NAMED.findall(item.message):
            if found.lower() not in configured.ids() and tenant.lower() == configured.tenant_id.lower():
                return PrincipalRef(tenant_id=configured.tenant_id, client_id=found.lower())
    return None


def diagnose(
    configured: PrincipalRef,
    current: PrincipalRef | None,
    adx: AdxState,
    evidence: list[Evidence],
    database: str,
    table: str,
    required_role: str = "admins",
) -> Diagnosis:
    """Classify the target. `current` is the identity IoT Central has now (None if unknown);
    `required_role` is the database role the target is configured to need (IoT Central's docs:
    Admin; the forum: Ingestor)."""
    current = current or identity_named_by(evidence, configured)
    principal = current or configured
    notes = list(adx.listing_notes)
    if adx.row_level_security:
        notes.append(f"row-level security is enabled on {table}: it governs queries, not ingestion; left as is")
    failures = [e for e in evidence if not e.permission]
    denials = [e for e in evidence if e.permission]
    shown = [f"{e.source}: {e.code}: {e.message}" for e in evidence]

    def result(kind: Kind, summary: str, **extra: object) -> Diagnosis:
        return Diagnosis(kind, summary, principal, shown, notes, **extra)  # type: ignore[arg-type]

    if not adx.database_exists:
        return result(Kind.NON_PERMISSION, f"database {database} does not exist in the cluster")
    if not adx.table_exists:
        return result(Kind.NON_PERMISSION, f"table {table} does not exist in database {database}")

    db_rows = [a for a in adx.database_principals if a.scope == "database" and principal.matches(a)]
    table_rows = [a for a in adx.table_principals if a.scope == "table" and principal.matches(a)]
    db_roles = {a.role for a in db_rows}
    table_roles = {a.role for a in table_rows}
    can_ingest = bool(db_roles & INGESTING_DB_ROLES) or (
        bool(table_roles & INGESTING_TABLE_ROLES) and bool(db_roles & TABLE_ROLE_PREREQUISITES)
    )

    needed: Diagnosis | None = None
    changed = current is not None and not (current.ids() & configured.ids())
    if changed and not db_rows and not table_rows:
        old_rows = [a for a in adx.database_principals if a.scope == "database" and configured.matches(a)]
        if old_rows:
            needed = result(
                Kind.IDENTITY_CHANGED,
                f"ADX holds the old identity {configured.fqn()} ({', '.join(sorted(a.role for a in old_rows))}); "
                f"IoT Central now writes as {principal.fqn()}, which holds no role",
                holdings=old_rows,
                previous=configured,
            )
    if needed is None and not db_rows and not table_rows:
        needed = result(Kind.PRINCIPAL_MISSING, f"{principal.fqn()} holds no role on {database} or {table}")
    if needed is None and not can_ingest:
        held = sorted({f"database {r}" for r in db_roles} | {f"table {r}" for r in table_roles})
        needed = result(
            Kind.INSUFFICIENT_ROLE,
            f"{principal.fqn()} holds {', '.join(held)}: not enough to ingest into {table}",
            holdings=db_rows,
        )
    if needed is None and denials and required_role == "admins" and "admins" not in db_roles:
        held = sorted({f"database {r}" for r in db_roles} | {f"table {r}" for r in table_roles})
        needed = result(
            Kind.INSUFFICIENT_ROLE,
            f"{principal.fqn()} holds {', '.join(held)} and IoT Central reports a permission failure: "
            "IoT Central's documentation requires database Admin",
            holdings=db_rows,
        )
    if needed is None and denials:
        needed = result(
            Kind.PRINCIPAL_STALE,
            f"{principal.fqn()} is listed with {', '.join(sorted(db_roles | table_roles))} yet ingestion is denied",
            holdings=db_rows,
        )
    if needed is None:
        if failures:
            return result(Kind.NON_PERMISSION, "the export fails for a reason other than permissions")
        return result(
            Kind.HEALTHY,
            f"{principal.fqn()} can ingest into {table} and no failure is reported",
            holdings=db_rows,
        )
    if not healer_is_admin(adx.healer_roles):
        roles_held = ", ".join(sorted(adx.healer_roles)) or "no role"
        return result(
            Kind.HEALER_NOT_ADMIN,
            f"{needed.kind}: {needed.summary}; but the healer holds {roles_held} on {database}, not Database Admin",
            holdings=needed.holdings,
        )
    return needed
