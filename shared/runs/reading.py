"""Reading a target (IoT Central status, ARM identity, ADX principals and policies) and planning.
Reads only: nothing here changes anything."""

from __future__ import annotations

from dataclasses import dataclass

from shared.diagnosis import AdxState, Diagnosis, Evidence, diagnose
from shared.iotcentral import IotcError
from shared.kusto import AdxError, KustoAdapter
from shared.plan import Plan, make_plan
from shared.principals import INGESTING_DB_ROLES, PrincipalRef
from shared.runs.base import Services
from shared.targets import Target


@dataclass
class Reading:
    """Everything diagnosis read, kept so the repair reuses it instead of reading again."""

    target: Target
    adx: AdxState
    diagnosis: Diagnosis
    notes: list[str]


def read(services: Services, target: Target, extra: list[Evidence] | None = None) -> Reading:
    """Read and diagnose `target`; `extra` is evidence the run brought along (logs, alerts)."""
    kusto = services.kusto(target.cluster_url)
    notes: list[str] = []
    evidence: list[Evidence] = []
    try:
        status = services.iotc.status(target.app, target.export_id, target.destination_id)
        evidence = [Evidence("iotcentral", code, message) for code, message in status.all_errors()]
        if not status.enabled:
            notes.append("the export is disabled in IoT Central")
    except IotcError as exc:
        notes.append(f"IoT Central status unavailable: {exc}")
    evidence += [e for e in extra or [] if e not in evidence]
    current: PrincipalRef | None = None
    if target.iotc_resource_id:
        try:
            current = services.iotc.current_identity(target.iotc_resource_id)
        except IotcError as exc:
            notes.append(f"IoT Central identity unavailable from ARM: {exc}")
    principals = [p for p in (current, target.principal.ref()) if p is not None]
    adx = read_adx(kusto, target, principals)
    diagnosis = diagnose(target.principal.ref(), current, adx, evidence, target.database, target.table)
    diagnosis.notes.extend(notes)
    diagnosis.root_cause = root_cause(services, target, diagnosis, current)
    return Reading(target, adx, diagnosis, notes)


def root_cause(
    services: Services, target: Target, diagnosis: Diagnosis, current: PrincipalRef | None
) -> dict[str, object] | None:
    """Who changed the principal (ADXJournal) and how IoT Central's identity changed (ARM)."""
    from shared.iotcentral import IotcError
    from shared.root_cause import explain

    settings = services.settings
    configured = target.principal.ref()
    changed_at = None
    if diagnosis.previous is not None and target.iotc_resource_id:
        try:
            changed_at = services.iotc.identity_changed_at(target.iotc_resource_id, services.clock())
        except IotcError as exc:  # Reader on the app may not reach its activity log: say so, go on
            diagnosis.notes.append(f"activity log of {target.app} unavailable: {exc}")
    cause = explain(
        services.logs,
        settings.log_analytics_workspace_id,
        settings.lookback_minutes,
        target.database,
        str(diagnosis.kind),
        [p for p in (configured, current) if p is not None],
        diagnosis.previous,
        current if diagnosis.previous is not None else None,
        changed_at,
    )
    return cause.to_dict() if cause else None


def read_adx(kusto: KustoAdapter, target: Target, principals: list[PrincipalRef]) -> AdxState:
    db, table = target.database, target.table
    try:
        db_rows = kusto.database_principals(db)
    except AdxError as exc:
        if exc.not_found:
            return AdxState(False, False, [], [], set())
        if exc.forbidden:  # the healer cannot even read: it is certainly not an admin
            return AdxState(True, True, [], [], set())
        raise
    own = kusto.own_roles(db)
    try:  # a policy read also proves the table exists
        rls = kusto.policy_enabled(db, table, "row_level_security")
    except AdxError as exc:
        if exc.not_found:
            return AdxState(True, False, db_rows, [], own)
        raise
    rva = kusto.policy_enabled(db, table, "restricted_view_access")
    # Table-level roles matter only when the database-level ones cannot ingest (one read saved).
    ingests = any(
        a.scope == "database" and a.role in INGESTING_DB_ROLES and a.held_by(p) for a in db_rows for p in principals
    )
    table_rows = [] if ingests else kusto.table_principals(db, table)
    return AdxState(True, True, db_rows, table_rows, own, rls, rva)


def plan(
    services: Services, target: Target, correlation_id: str = "dry-run", extra: list[Evidence] | None = None
) -> tuple[Reading, Plan]:
    reading = read(services, target, extra)
    result = make_plan(
        target, reading.diagnosis, toggle_export=services.settings.toggle_export, correlation_id=correlation_id
    )
    return reading, result
