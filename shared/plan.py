"""The plan: ordered actions, each with a one-sentence reason. Pure logic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import kusto_names
from shared.diagnosis import Diagnosis, Kind
from shared.principals import Assignment
from shared.targets import Target

NOTE_PREFIX = "iotc-adx-healer"


@dataclass(frozen=True)
class Action:
    kind: str  # add-role | refresh | toggle-export | verify | escalate
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
        return any(a.kind in ("add-role", "refresh", "toggle-export") for a in self.actions)

    @property
    def escalates(self) -> bool:
        return any(a.kind == "escalate" for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {"diagnosis": self.diagnosis.to_dict(), "actions": [a.to_dict() for a in self.actions]}

    def describe(self) -> list[str]:
        return [f"{n}. {a.kind}: {a.reason}" for n, a in enumerate(self.actions, 1)]


def make_plan(target: Target, diagnosis: Diagnosis, *, toggle_export: bool, correlation_id: str) -> Plan:
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
        snapshot = tuple(a for a in diagnosis.holdings if a.scope == "database")
        unsafe = [a for a in snapshot if not _readdable(a)]
        if not snapshot or unsafe:
            plan.actions.append(
                Action(
                    "escalate",
                    "a refresh would drop roles whose notes cannot be re-added exactly, so nothing is dropped."
                    if unsafe
                    else "no database-level assignment to refresh was found.",
                )
            )
            return plan
        plan.actions.append(
            Action(
                "refresh",
                f"{fqn} is listed but ingestion is still denied, so its database roles are dropped and re-added "
                "exactly as they were (role, FQN, notes) to refresh ADX's view of it.",
                snapshot=snapshot,
            )
        )
    else:
        reason = {
            Kind.PRINCIPAL_MISSING: f"{fqn} holds no role on {target.database}, so it gets {target.role}.",
            Kind.INSUFFICIENT_ROLE: f"{fqn}'s roles do not allow ingestion, so it gets database {target.role}.",
            Kind.IDENTITY_CHANGED: f"IoT Central now writes as {fqn}, which holds no role, so it gets "
            f"{target.role}; the old identity's roles are left for a person to remove.",
        }[kind]
        plan.actions.append(Action("add-role", reason, role=target.role, fqn=fqn, notes=note))
    if toggle_export:
        plan.actions.append(
            Action(
                "toggle-export",
                "the export is disabled and enabled again so IoT Central reconnects with the repaired permissions.",
            )
        )
    plan.actions.append(
        Action(
            "verify",
            "the repair counts only when the principal is listed, new rows arrive "
            "and IoT Central reports the export healthy.",
        )
    )
    return plan


def _readdable(assignment: Assignment) -> bool:
    try:
        kusto_names.principal_fqn("snapshot.fqn", assignment.fqn)
        kusto_names.notes("snapshot.notes", assignment.notes)
        kusto_names.db_role("snapshot.role", assignment.role)
    except kusto_names.UnsafeKustoValue:
        return False
    return True
