"""Reading a target (IoT Central status, ARM identity, ADX principals and policies) and planning.
Reads only: nothing here changes anything."""

from __future__ import annotations

from dataclasses import dataclass

from shared.adapters.iotcentral_model import ExportStatus, IotcError, service_principal_of
from shared.adapters.kusto import KustoAdapter
from shared.adapters.kusto_errors import AdxError
from shared.domain import checklist
from shared.domain.diagnosis import AdxState, Diagnosis, Evidence, diagnose
from shared.domain.plan import Plan, make_plan
from shared.domain.principals import INGESTING_DB_ROLES, Assignment, PrincipalRef
from shared.domain.targets import Target
from shared.runs.base import Services


@dataclass
class Reading:
    """Everything diagnosis read, kept so the repair reuses it instead of reading again."""

    target: Target
    adx: AdxState
    diagnosis: Diagnosis
    notes: list[str]
    status: ExportStatus | None = None


def read(services: Services, target: Target, extra: list[Evidence] | None = None) -> Reading:
    """Read and diagnose `target`; `extra` is evidence the run brought along (logs, alerts)."""
    kusto = services.kusto(target.cluster_url)
    notes: list[str] = []
    evidence: list[Evidence] = []
    status: ExportStatus | None = None
    try:
        status = services.iotc.status(target.app, target.export_id, target.destination_id)
        evidence = [Evidence("iotcentral", code, message) for code, message in status.all_errors()]
        if not status.enabled:
            notes.append("the export is disabled in IoT Central")
    except IotcError as exc:
        notes.append(f"IoT Central status unavailable: {exc}")
    evidence += [e for e in extra or [] if e not in evidence]
    configured = target.principal.ref()
    writer = service_principal_of(status.destination if status else {})
    current: PrincipalRef | None = None
    identity_on: bool | None = None
    if writer is not None:
        # The destination authorizes as an app registration: that app is what ADX must know.
        notes.append(f"the destination authorizes as service principal {writer.client_id}, not a managed identity")
        configured = writer
    elif target.iotc_resource_id:
        try:
            current = services.iotc.current_identity(target.iotc_resource_id)
            identity_on = current is not None
        except IotcError as exc:
            notes.append(f"IoT Central identity unavailable from ARM: {exc}")
    principals = [p for p in (current, configured) if p is not None]
    adx = read_adx(kusto, target, principals)
    diagnosis = diagnose(configured, current, adx, evidence, target.database, target.table, target.role)
    diagnosis.notes.extend(notes)
    diagnosis.root_cause = root_cause(services, target, diagnosis, configured, current)
    diagnosis.checklist = checklist.run(
        checklist.ChecklistInput(
            cluster_url=target.cluster_url,
            database=target.database,
            table=target.table,
            destination=status.destination if status else None,
            export_enabled=status.enabled if status else None,
            database_exists=adx.database_exists,
            table_exists=adx.table_exists,
            table_near_miss=adx.table_near_miss,
            streaming_ingestion=adx.streaming_ingestion,
            row_level_security=adx.row_level_security,
            identity_on=identity_on,
        )
    )
    if status is not None and status.other_destinations:
        diagnosis.notes.append(
            f"export {target.export_id} also sends to {', '.join(status.other_destinations)}: "
            f"judged by destination {target.destination_id}'s own status"
        )
    return Reading(target, adx, diagnosis, notes, status)


def root_cause(
    services: Services, target: Target, diagnosis: Diagnosis, configured: PrincipalRef, current: PrincipalRef | None
) -> dict[str, object] | None:
    """Who changed the principal (ADXJournal) and how IoT Central's identity changed (ARM)."""
    from shared.adapters.iotcentral_model import IotcError
    from shared.reporting.root_cause import explain

    settings = services.settings
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
        db_rows, skipped = kusto.database_listing(db)
    except AdxError as exc:
        if exc.not_found:
            return AdxState(False, False, [], [], set())
        if exc.forbidden:  # the healer cannot even read: it is certainly not an admin
            return AdxState(True, True, [], [], set())
        raise
    own = kusto.own_roles(db)
    try:  # the details also prove the table exists (names are case-sensitive)
        streaming = kusto.streaming_ingestion(db, table)
    except AdxError as exc:
        if exc.not_found:
            near = next((t for t in kusto.tables(db) if t.lower() == table.lower()), None)
            return AdxState(True, False, db_rows, [], own, listing_notes=skipped, table_near_miss=near)
        raise
    rls = kusto.policy_enabled(db, table, "row_level_security")
    # Restricted view access is not read here: it governs queries, not ingestion, and
    # verification reads it when the count finds nothing (one request less per diagnosis).
    # Table-level roles matter only when the database-level ones cannot ingest (one read saved).
    ingests = any(
        a.scope == "database" and a.role in INGESTING_DB_ROLES and p.matches(a) for a in db_rows for p in principals
    )
    table_rows: list[Assignment] = []
    if not ingests:
        table_rows, more = kusto.table_listing(db, table)
        skipped = skipped + more
    return AdxState(True, True, db_rows, table_rows, own, rls, listing_notes=skipped, streaming_ingestion=streaming)


def plan(
    services: Services, target: Target, correlation_id: str = "dry-run", extra: list[Evidence] | None = None
) -> tuple[Reading, Plan]:
    reading = read(services, target, extra)
    result = make_plan(
        target,
        reading.diagnosis,
        toggle_export=services.settings.toggle_export,
        correlation_id=correlation_id,
        remedies=services.settings.remedies,
        destination=reading.status.destination if reading.status else None,
        other_destinations=tuple(reading.status.other_destinations) if reading.status else (),
    )
    return reading, result
