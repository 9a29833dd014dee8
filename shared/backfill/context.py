"""What a backfill needs to know about its target, read once per invocation through the adapters:
the export (its source, filter, transform, enrichments), the templates it covers, the devices, and
the table (columns, policies, ingestion mappings, how rows are told apart). Whatever makes a
faithful backfill impossible refuses it here, before anything is sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.kusto_errors import AdxError
from shared.backfill.export_filter import ExportFilter, FilterUnsupported
from shared.backfill.identity import Identity, find_identity, unrestorable_fields
from shared.backfill.planner import PlanError, split_select
from shared.backfill.progress import BackfillRefused, Progress
from shared.backfill.records import NOT_RETURNED, Enrichments
from shared.backfill.templates import TemplateInfo, parse_template


@dataclass
class Context:
    """What a backfill needs to know about its target, read once per invocation."""

    application_id: str
    templates: list[TemplateInfo]
    groups: dict[str, list[list[str]]]
    devices: dict[str, dict[str, Any]]
    export_filter: ExportFilter
    transform: str | None
    schema: list[tuple[str, str]]
    streaming: bool
    enrichments: Enrichments = field(default_factory=Enrichments)
    exclude_simulated: bool = False
    identities: dict[str, Identity] = field(default_factory=dict)  # per template id
    approximate: list[str] = field(default_factory=list)  # fields written approximate (opt-in)
    mapping: str | None = None  # the table's JSON ingestion mapping, when it has one


def read_sources(services: Any, target: Any, progress: Progress) -> Context:
    """What the queries need (the export, its filter and templates): read before the rest so
    the queries can start while the devices are still being listed."""
    iotc = services.iotc
    export = iotc.export(target.app, target.export_id)
    if export.get("source", "telemetry") != "telemetry":
        raise BackfillRefused(
            f"export {target.export_id} exports {export.get('source')!r}: only telemetry can be recovered "
            "(the query API has no history of property changes or lifecycle events)"
        )
    transform = next(
        (d.get("transform") for d in export.get("destinations") or [] if d.get("id") == target.destination_id),
        None,
    )
    templates = [parse_template(t) for t in iotc.device_templates(target.app)]
    try:
        export_filter = ExportFilter.parse(export.get("filter"))
        export_filter.check_fields(templates)
    except FilterUnsupported as exc:
        raise BackfillRefused(str(exc)) from exc
    templates = [t for t in templates if export_filter.covers(t.template_id) and t.telemetry]
    groups: dict[str, list[list[str]]] = {}
    for info in templates:
        try:
            groups[info.template_id] = split_select(info.template_id, info.telemetry)
        except PlanError as exc:
            raise BackfillRefused(str(exc)) from exc
    if not progress.templates:  # the order is fixed at the first invocation
        progress.templates = sorted(t.template_id for t in templates)
        progress.template = progress.templates[0] if progress.templates else ""
    by_id = {t.template_id: t for t in templates}
    templates = [by_id[t] for t in progress.templates if t in by_id]
    enrichments = Enrichments.parse(export.get("enrichments"))
    return Context("", templates, groups, {}, export_filter, transform, [], False, enrichments)


def read_details(services: Any, target: Any, progress: Progress, ctx: Context) -> Context:
    """What rebuilding, comparing and sending need: the app's id, its devices, the table."""
    iotc = services.iotc
    ctx.application_id = iotc.application_id(target.iotc_resource_id) if target.iotc_resource_id else ""
    if ctx.templates:  # nothing to ask IoT Central for: nothing to compare or send either
        ctx.devices = {str(d.get("id")): d for d in iotc.devices(target.app)}
        destination = iotc.destination(target.app, target.destination_id)
        # With a managed identity IoT Central does not export simulated devices (its ADX how-to).
        auth = (destination.get("authorization") or {}).get("type", "")
        ctx.exclude_simulated = auth == "systemAssignedManagedIdentity"
        _table(services, target, progress, ctx)
    notes = [n for info in ctx.templates for n in info.unrecoverable]
    notes += [f"not rebuilt: {n}" for n in NOT_RETURNED]
    if not ctx.application_id:
        notes.append("applicationId: unknown without iotc_resource_id (rebuilt empty)")
    for note in notes:
        if note not in progress.unrecoverable:
            progress.unrecoverable.append(note)
    return ctx


def _table(services: Any, target: Any, progress: Progress, ctx: Context) -> None:
    """The table: its columns, how rows are told apart, what they keep that cannot be rebuilt,
    and whether the healer can read all of it back."""
    kusto = services.kusto(target.cluster_url)
    try:
        ctx.schema = kusto.table_schema(target.database, target.table)
        if kusto.policy_enabled(target.database, target.table, "row_level_security"):
            raise BackfillRefused(
                f"table {target.table} has a row-level security policy: it filters what the healer reads back "
                "(it applies to admins too), so rows already delivered would look missing and be ingested again; "
                "nothing is ingested. Backfill by hand with the policy disabled, or compare as a principal the "
                "policy lets see every row"
            )
        ctx.streaming = kusto.policy_enabled(target.database, target.table, "streamingingestion")
        mappings = kusto.ingestion_mappings(target.database, target.table) if ctx.streaming else []
    except AdxError as exc:
        if exc.not_found:
            what = exc.missing or "table"
            name = target.database if what == "database" else target.table
            raise BackfillRefused(
                f"{what} {name} is missing in {target.cluster_url}: nothing to backfill into"
            ) from exc
        raise
    # Streaming JSON needs a pre-created mapping, and rows are keyed by column name: only a mapping
    # that reads each column from the field of its own name will do; otherwise the rows go queued.
    ctx.mapping = next((str(m.get("Name")) for m in mappings if _by_column_name(m)), None)
    columns = dict(ctx.schema)
    for info in ctx.templates:
        identity = find_identity(info, ctx.transform, ctx.enrichments, columns)
        if identity is None:
            raise BackfillRefused(
                f"no columns of {target.table} carry each message's device id and time (the destination's "
                f"transform was run on probe messages of {info.template_id}): rows already delivered cannot be "
                "told apart from missing ones, so nothing is ingested"
            )
        ctx.identities[info.template_id] = identity
    lost = unrestorable_fields(ctx.transform, ctx.enrichments, columns)
    if lost and not getattr(services.settings, "backfill_approximate", False):
        raise BackfillRefused(
            f"the rows of {target.table} keep what the query API cannot give back: {'; '.join(lost)}. Nothing is "
            "ingested (HEALER_BACKFILL_APPROXIMATE=true writes them anyway, marked approximate)"
        )
    ctx.approximate = progress.approximate = lost


def _by_column_name(mapping: dict[str, Any]) -> bool:
    """A JSON ingestion mapping (`.show table T ingestion mappings` row) whose every column is read
    from the field of its own name (`$.Name` or `$['Name']`)."""
    if str(mapping.get("Kind", "")).lower() != "json":
        return False
    columns = mapping.get("Mapping")
    try:
        columns = json.loads(columns) if isinstance(columns, str) else columns
    except ValueError:
        return False
    if not isinstance(columns, list) or not columns:
        return False
    for column in columns:
        if not isinstance(column, dict):
            return False
        name = str(column.get("column") or column.get("Column") or "")
        path = str((column.get("Properties") or {}).get("Path") or column.get("path") or "")
        if not name or path not in (f"$.{name}", f"$['{name}']"):
            return False
    return True
