"""The plan: ordered actions, each with a one-sentence reason. Pure logic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.domain import kusto_names
from shared.domain.destination_copy import recreatable
from shared.domain.diagnosis import Diagnosis, Kind
from shared.domain.principals import Assignment
from shared.domain.targets import Target

NOTE_PREFIX = "iotc-adx-healer"
CHANGING = ("add-role", "recreate-destination", "refresh", "toggle-export")
REMEDIES = ("recreate-destination", "refresh")


@dataclass(frozen=True)
class Action:
    kind: str  # add-role | recreate-destination | refresh | toggle-export | verify | escalate
    reason: str
    role: str = ""
    fqn: str = ""
    notes: str = ""
    snapshot: tuple[Assignment, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.kind, "reason": self.reason}
        if self.role:
            data["role"] = self.role
        if self.fqn:
            data["principal"] = self.fqn
        if self.snapshot:
            data["snapshot"] = [{"role": a.role, "fqn": a.fqn, "notes": a.notes} for a in self.snapshot]
        return data


@dataclass
class Plan:
    diagnosis: Diagnosis
    actions: list[Action] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return any(a.kind in CHANGING for a in self.actions)

    @property
    def escalates(self) -> bool:
        return any(a.kind == "escalate" for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {"diagnosis": self.diagnosis.to_dict(), "actions": [a.to_dict() for a in self.actions]}

    def describe(self) -> list[str]:
        return [f"{n}. {a.kind}: {a.reason}" for n, a in enumerate(self.actions, 1)]


def make_plan(
    target: Target,
    diagnosis: Diagnosis,
    *,
    toggle_export: bool,
    correlation_id: str,
    remedies: tuple[str, ...] = REMEDIES,
    destination: dict[str, Any] | None = None,
    other_destinations: tuple[str, ...] = (),
) -> Plan:
    """`remedies`: for a principal listed with its role yet denied, the remedies to try in order
    (the first that applies is done; the next ones follow if verification still sees a denial).
    `destination` is IoT Central's destination body (decides whether it can be re-created)."""
    plan = Plan(diagnosis)
    kind = diagnosis.kind
    fqn = diagnosis.principal.fqn()
    note = f"{NOTE_PREFIX}: {kind} {correlation_id}"[: kusto_names.MAX_NOTES]
    if kind == Kind.HEALTHY:
        return plan
    if kind in (Kind.HEALER_NOT_ADMIN, Kind.NON_PERMISSION):
        why = (
            "the healer cannot change roles without Database Admin; a person must grant it or fix the roles"
            if kind == Kind.HEALER_NOT_ADMIN
            else "this is not a permission problem, so changing roles would not help"
        )
        plan.actions.append(Action("escalate", f"{diagnosis.summary}: {why}."))
        return plan
    if kind == Kind.PRINCIPAL_STALE:
        chosen, refused = _remedies(diagnosis, fqn, remedies, destination)
        if not chosen:
            plan.actions.append(Action("escalate", " ".join(refused) or "no remedy is configured."))
            return plan
        plan.actions.extend(chosen)
    else:
        reason = {
            Kind.PRINCIPAL_MISSING: f"{fqn} holds no role on {target.database}, so it gets {target.role}.",
            Kind.INSUFFICIENT_ROLE: f"{fqn}'s roles do not allow IoT Central to export, so it gets database "
            f"{target.role}.",
            Kind.IDENTITY_CHANGED: f"IoT Central now writes as {fqn}, which holds no role, so it gets "
            f"{target.role}; the old identity's roles are left for a person to remove.",
        }[kind]
        plan.actions.append(Action("add-role", reason, role=target.role, fqn=fqn, notes=note))
    if toggle_export:
        also = (
            f" The export also sends to {', '.join(other_destinations)}: they pause while it is off."
            if other_destinations
            else ""
        )
        plan.actions.append(
            Action(
                "toggle-export",
                "the export is disabled and enabled again so IoT Central reconnects with the repaired permissions."
                + also,
            )
        )
    plan.actions.append(
        Action(
            "verify",
            "the repair counts only when the principal is listed, new rows arrive (or, where rows cannot be "
            "counted, IoT Central's destination reports healthy and its last export time advances) and IoT "
            "Central reports the destination healthy.",
        )
    )
    return plan


def _remedies(
    diagnosis: Diagnosis, fqn: str, order: tuple[str, ...], destination: dict[str, Any] | None
) -> tuple[list[Action], list[str]]:
    """The applicable remedies in order, and why the others were left out."""
    chosen: list[Action] = []
    refused: list[str] = []
    for name in order:
        then = " If it is still denied afterwards, the next remedy follows." if not chosen else ""
        prefix = "" if not chosen else "If the previous remedy leaves ingestion denied: "
        if name == "recreate-destination":
            why = "IoT Central's destination could not be read." if destination is None else recreatable(destination)
            if why:
                refused.append(f"Re-creating the destination is not possible: {why.rstrip('.')}.")
                continue
            chosen.append(
                Action(
                    "recreate-destination",
                    f"{prefix}{fqn} is listed with its role yet IoT Central is denied; Microsoft's troubleshooting "
                    "page says a destination created before its permissions were set must be removed and added "
                    "again, so it is re-created make-before-break (copy under a new id, the export re-pointed "
                    f"with its transform, the old one deleted).{then}",
                )
            )
        elif name == "refresh":
            snapshot = tuple(a for a in diagnosis.holdings if a.scope == "database")
            unsafe = [a for a in snapshot if not _readdable(a)]
            if not snapshot or unsafe:
                refused.append(
                    "A refresh would drop roles whose notes cannot be re-added exactly, so nothing is dropped."
                    if unsafe
                    else "No database-level assignment to refresh was found."
                )
                continue
            chosen.append(
                Action(
                    "refresh",
                    f"{prefix}{fqn} is listed but ingestion is still denied, so its database roles are dropped and "
                    "re-added exactly as they were (role, FQN, notes) to refresh ADX's view of it (the forum's "
                    f"remedy; no Microsoft source documents the cache it assumes).{then}",
                    snapshot=snapshot,
                )
            )
    return chosen, refused


def _readdable(assignment: Assignment) -> bool:
    try:
        kusto_names.principal_fqn("snapshot.fqn", assignment.fqn)
        kusto_names.notes("snapshot.notes", assignment.notes)
        kusto_names.db_role("snapshot.role", assignment.role)
    except kusto_names.UnsafeKustoValue:
        return False
    return True
