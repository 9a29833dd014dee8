"""Root cause: who changed the database's principals, and when IoT Central's identity changed.

When a diagnosis finds IoT Central's principal missing, reduced or replaced, the ADX diagnostic log
`ADXJournal` (Log Analytics; the cluster's diagnostic setting must send the `Journal` category)
says which control command changed the database's principals, when, and who ran it.

Columns read (Azure Monitor Logs table reference, "ADXJournal": `TimeGenerated`,
`OperationTimestamp`, `DatabaseName`, `EntityName`, `Event`, `ChangeCommand`, `Principal`,
`User`, `CorrelationId`). Note the table's database column is `DatabaseName`, not `Database` as in
`.show journal`. What `Event` holds for a principal change is undocumented, so the query matches
the command text instead; ADX's journal page also warns that the format of its columns is not a
contract, hence the text is matched loosely and everything is shown as found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.adapters.loganalytics_errors import LogAnalyticsError
from shared.domain.principals import PrincipalRef

# The diagnoses that mean someone (or something) changed who may write.
EXPLAINED = {"principal-missing", "insufficient-role", "identity-changed", "healer-not-admin"}
_ROLE_CHANGE = re.compile(
    r"^\s*\.(add|drop|set)\s+(database|table)\s+\S.*?\b(admins|users|viewers|unrestrictedviewers|ingestors|monitors)\b",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class JournalEntry:
    time: datetime | None
    database: str
    entity: str
    command: str
    principal: str
    user: str

    @property
    def actor(self) -> str:
        if self.user and self.principal and self.user != self.principal:
            return f"{self.user} ({self.principal})"
        return self.user or self.principal or "unknown"


@dataclass
class RootCause:
    """What changed the principal: the command, its time and actor, or why nothing was found."""

    found: bool
    source: str  # "ADXJournal" | "ARM" | ""
    summary: str
    command: str = ""
    time: str = ""
    actor: str = ""
    identity_change: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"found": self.found, "source": self.source, "summary": self.summary}
        if self.command:
            out["command"] = self.command
        if self.time:
            out["time"] = self.time
        if self.actor:
            out["actor"] = self.actor
        if self.identity_change:
            out["identity_change"] = self.identity_change
        return out


def not_found(reason: str) -> RootCause:
    return RootCause(False, "", f"not found: {reason}")


def _mentions(command: str, principals: list[PrincipalRef]) -> bool:
    text = command.lower()
    return any(i in text for p in principals for i in p.ids())


def pick(entries: list[JournalEntry], principals: list[PrincipalRef]) -> JournalEntry | None:
    """The change that explains the diagnosis: the newest drop (or `.set`) that names one of the
    principals, else the newest role change that names one, else the newest `.set … none` (it
    names nobody and clears everyone)."""
    changes = [e for e in entries if _ROLE_CHANGE.match(e.command)]
    changes.sort(key=lambda e: e.time or datetime.min.replace(tzinfo=UTC), reverse=True)
    named = [e for e in changes if _mentions(e.command, principals)]
    removals = [e for e in named if re.match(r"^\s*\.(drop|set)\b", e.command, re.IGNORECASE)]
    cleared = [e for e in changes if re.search(r"\bnone\s*$", e.command.strip(), re.IGNORECASE)]
    for group in (removals, named, cleared):
        if group:
            return group[0]
    return None


def from_journal(entry: JournalEntry | None, database: str, lookback_minutes: int) -> RootCause:
    if entry is None:
        return not_found(
            f"no principal change of {database} in ADXJournal in the last {lookback_minutes} min "
            "(journal rows can take minutes to reach Log Analytics)"
        )
    when = entry.time.isoformat() if entry.time else ""
    return RootCause(
        True,
        "ADXJournal",
        f"{entry.actor} ran {entry.command.strip()[:300]} at {when or 'an unknown time'}",
        command=entry.command.strip(),
        time=when,
        actor=entry.actor,
    )


def identity_changed(old: PrincipalRef, new: PrincipalRef, when: str = "", by: str = "") -> dict[str, str]:
    """Old and new identity (ARM's view of the app now); `when`/`by`: the app's newest ARM write in
    the activity log, which is when the identity was switched off and on (or a later write)."""
    change = {"old": old.fqn(), "new": new.fqn(), "seen_by": "ARM"}
    if when:
        change["when"] = when
    if by:
        change["by"] = by
    return change


def entries_from_rows(rows: list[dict[str, Any]]) -> list[JournalEntry]:
    out = []
    for row in rows:
        time = row.get("OperationTimestamp") or row.get("TimeGenerated")
        out.append(
            JournalEntry(
                time=time if isinstance(time, datetime) else None,
                database=str(row.get("DatabaseName") or ""),
                entity=str(row.get("EntityName") or ""),
                command=str(row.get("ChangeCommand") or ""),
                principal=str(row.get("Principal") or ""),
                user=str(row.get("User") or ""),
            )
        )
    return out


def explain(
    logs: Any,
    workspace_id: str | None,
    lookback_minutes: int,
    database: str,
    kind: str,
    principals: list[PrincipalRef],
    previous: PrincipalRef | None = None,
    current: PrincipalRef | None = None,
    changed_at: tuple[str, str] | None = None,
) -> RootCause | None:
    """The root cause for a diagnosis of `kind`, or None when the kind needs none (healthy, stale).

    `principals` are every identity the target's principal may be named by (configured and
    current). Log Analytics failures never fail the diagnosis: they become the reason."""
    if kind not in EXPLAINED:
        return None
    when, by = changed_at or ("", "")
    change = identity_changed(previous, current, when, by) if previous is not None and current is not None else {}
    if logs is None or not workspace_id:
        cause = not_found("no Log Analytics workspace with ADXJournal is set (HEALER_LOG_ANALYTICS_WORKSPACE_ID)")
    else:
        try:
            entries = entries_from_rows(logs.journal(workspace_id, database, lookback_minutes))
        except LogAnalyticsError as exc:
            text = str(exc)
            if "ADXJournal" in text and ("resolve" in text or "not found" in text.lower()):
                cause = not_found(
                    "ADXJournal not enabled: the workspace has no such table (send the cluster's Journal logs there)"
                )
            else:
                cause = not_found(f"ADXJournal could not be read: {text[:300]}")
        else:
            cause = from_journal(pick(entries, principals), database, lookback_minutes)
    if change:
        cause.identity_change = change
        if not cause.found:
            at = f" at {when}" if when else " (when: not in the activity log)"
            actor = f" by {by}" if by else ""
            cause = RootCause(
                True,
                "ARM",
                f"IoT Central's identity changed from {change['old']} to {change['new']}{at}{actor} (ARM); "
                f"ADX journal: {cause.summary}",
                time=when,
                actor=by,
                identity_change=change,
            )
    return cause
