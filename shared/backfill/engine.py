"""The backfill of one gap: windows over [start, end), each queried, rebuilt, compared with the
table and ingested as one tagged chunk; progress journaled per window so a crash resumes where it
stopped, and each invocation bounded in time (the rest continues on a later queue message).

Journal (the run's `backfill`/`progress` entry) before a chunk is sent: the window, when it was
sent and whether it was the run's first chunk (`pending`); after: the cursor moves past it. A
redelivered message finds `pending` and redoes exactly that window, but not before the first send
has had SETTLE to land (queued ingestion batches for up to five minutes by default): then the
read-back by message identity skips every row that landed, so only rows still missing are sent.

Tags (ADX warns that a unique `ingest-by:` tag per ingestion "can significantly impact
performance", and tags live as long as their extents): every chunk of a run carries the same one,
`ingest-by:` + RUN_TAG(run). `ingestIfNotExists` with it is set on the run's first chunk only
(no other extent can carry the run's tag yet, so it drops exactly a second send of that chunk);
on any later chunk it would drop the chunk itself, so there the read-back is the guard.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.backfill import dedupe
from shared.backfill.identity import Identity, find_identity, unrestorable_fields
from shared.backfill.planner import PlanError, Window, ceil_second, floor_second, next_size, split_select
from shared.backfill.planner import stamp as stamp_s
from shared.backfill.reader import Answer, Position, Reader
from shared.backfill.records import (
    NOT_RETURNED,
    Enrichments,
    ExportFilter,
    FilterUnsupported,
    TransformError,
    parse_ts,
    rows_for,
)
from shared.backfill.templates import TemplateInfo, parse_template
from shared.kusto import AdxError

log = logging.getLogger(__name__)
RETENTION_DAYS = 7  # IoT Central's data retention (quotas page); HEALER_BACKFILL_RETENTION_DAYS
FIRST_WINDOW = timedelta(minutes=1)  # then sized from what each answer held
# How long a sent chunk may take to show in the table before a redo reads it back: the default
# queued-ingestion batching time (ADX IngestionBatching policy, MaximumBatchingTimeSpan 5 min) plus
# a margin (HEALER_BACKFILL_SETTLE_SECONDS). A table with a longer batching policy, or an
# ingestion backlog, may take longer: unverified.
SETTLE = timedelta(minutes=6)


class BackfillRefused(Exception):
    """The gap cannot be backfilled faithfully (unsupported filter or source, no time column…)."""


@dataclass
class Progress:
    target: str
    run_id: str
    mode: str  # plan | on
    start: str
    end: str
    cursor: str
    size_s: int = int(FIRST_WINDOW.total_seconds())
    # The window being sent: its bounds, its tag, and its counts as first seen (a redo after a crash
    # sees the sent rows as present; the first counts are the true ones).
    pending: dict[str, Any] | None = None
    # Templates are done one after another (each with windows of its own density), in the order
    # fixed by the first invocation (`templates`); the one in progress is kept by its id, never by
    # its position: a template that leaves the export's filter must not shift the others.
    template: str = ""
    windows: int = 0
    queries: int = 0
    rows_found: int = 0  # rows the export would have written in the windows done
    rows_present: int = 0  # of those, already in the table
    rows_sent: int = 0  # sent for ingestion (mode on)
    chunks: int = 0
    templates: list[str] = field(default_factory=list)
    unrecoverable: list[str] = field(default_factory=list)
    unrecoverable_s: int = 0  # seconds of the gap older than the retention horizon
    approximate: list[str] = field(default_factory=list)  # fields not restored in rows written anyway
    refused: str = ""
    done: bool = False
    ingestion: str = ""  # queued | streamed
    sends: int = 0  # chunks handed to ingestion (a redo is not counted again)
    wait_s: float = 0  # a redo waits this long for its first send to settle (the next message's delay)

    @property
    def rows_missing(self) -> int:
        return self.rows_found - self.rows_present

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_missing"] = self.rows_missing
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Progress:
        known = {k: v for k, v in data.items() if k in Progress.__dataclass_fields__}
        return Progress(**known)


def tag_for(run_id: str) -> str:
    """The ingest-by tag of every chunk of a run: one per run, never one per ingestion."""
    return f"iotc-adx-healer;{run_id}"


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


class BackfillEngine:
    def __init__(
        self,
        services: Any,
        ingestor: Callable[[str], Any],
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        guard: Callable[[], object] = lambda: None,
    ) -> None:
        self.s = services
        self.ingestor = ingestor
        # Called before every journal write and every ingestion: raises when this invocation no
        # longer holds the run (its lease was taken, or a twin delivery claimed it since).
        self.guard = guard
        self.clock = clock or services.clock
        self.monotonic = monotonic

    # ---------------------------------------------------------------- progress in the journal

    def load(self, target_key: str, run_id: str) -> Progress | None:
        for row in self.s.store.read_journal(target_key, run_id):
            if row["Step"] == "backfill" and row["Status"] == "progress":
                return Progress.from_dict(row["Data"])
        return None

    def save(self, progress: Progress) -> None:
        self.guard()
        self.s.store.write_journal(
            progress.target, progress.run_id, "backfill", "progress", progress.to_dict(), self.clock()
        )

    def begin(self, target: Any, run_id: str, start: datetime, end: datetime, mode: str) -> Progress:
        existing = self.load(target.key, run_id)
        if existing is not None:
            return existing
        now = self.clock()
        days = int(getattr(self.s.settings, "backfill_retention_days", RETENTION_DAYS))
        oldest = floor_second(now - timedelta(days=days))
        unrecoverable: list[str] = []
        lost = timedelta(0)
        if start < oldest:
            lost = min(end, oldest) - start
            unrecoverable.append(
                f"unrecoverable: {_duration(lost)} of telemetry ({stamp_s(start)} to {stamp_s(min(end, oldest))}) is "
                f"older than IoT Central's retention of {days} days: the query API no longer has it"
            )
            start = min(oldest, end)
        start, end = floor_second(start), ceil_second(min(end, now))
        end = max(start, end)
        progress = Progress(target.key, run_id, mode, stamp_s(start), stamp_s(end), stamp_s(start))
        progress.size_s = int(FIRST_WINDOW.total_seconds())
        progress.unrecoverable = unrecoverable
        progress.unrecoverable_s = round(lost.total_seconds())
        self.save(progress)
        return progress

    # ---------------------------------------------------------------- reading the target

    def context(self, target: Any, progress: Progress) -> Context:
        return self._details(target, progress, self._sources(target, progress))

    def _sources(self, target: Any, progress: Progress) -> Context:
        """What the queries need (the export, its filter and templates): read before the rest so
        the queries can start while the devices are still being listed."""
        iotc = self.s.iotc
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

    def _details(self, target: Any, progress: Progress, ctx: Context) -> Context:
        """What rebuilding, comparing and sending need: the app's id, its devices, the table."""
        iotc = self.s.iotc
        ctx.application_id = iotc.application_id(target.iotc_resource_id) if target.iotc_resource_id else ""
        if ctx.templates:  # nothing to ask IoT Central for: nothing to compare or send either
            ctx.devices = {str(d.get("id")): d for d in iotc.devices(target.app)}
            destination = iotc.destination(target.app, target.destination_id)
            # With a managed identity IoT Central does not export simulated devices (its ADX how-to).
            auth = (destination.get("authorization") or {}).get("type", "")
            ctx.exclude_simulated = auth == "systemAssignedManagedIdentity"
            self._table(target, progress, ctx)
        notes = [n for info in ctx.templates for n in info.unrecoverable]
        notes += [f"not rebuilt: {n}" for n in NOT_RETURNED]
        if not ctx.application_id:
            notes.append("applicationId: unknown without iotc_resource_id (rebuilt empty)")
        for note in notes:
            if note not in progress.unrecoverable:
                progress.unrecoverable.append(note)
        return ctx

    def _table(self, target: Any, progress: Progress, ctx: Context) -> None:
        """The table: its columns, how rows are told apart, what they keep that cannot be rebuilt,
        and whether the healer can read all of it back."""
        kusto = self.s.kusto(target.cluster_url)
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
        if lost and not getattr(self.s.settings, "backfill_approximate", False):
            raise BackfillRefused(
                f"the rows of {target.table} keep what the query API cannot give back: {'; '.join(lost)}. Nothing is "
                "ingested (HEALER_BACKFILL_APPROXIMATE=true writes them anyway, marked approximate)"
            )
        ctx.approximate = progress.approximate = lost

    # ---------------------------------------------------------------- the windows

    def _reader(self, target: Any, ctx: Context, progress: Progress, devices: threading.Event) -> Reader:
        """Queries run ahead in their own thread while answers are rebuilt, compared and sent."""
        pending = progress.pending
        position = Position(
            self._current(ctx, progress),
            parse_ts(progress.cursor),
            timedelta(seconds=progress.size_s),
            Window(parse_ts(pending["start"]), parse_ts(pending["end"])) if pending else None,
        )

        def streams(info: TemplateInfo) -> int | None:
            """Device streams of a template (each device sends each interface's telemetry as its
            own message), once the devices are known."""
            if not devices.is_set():
                return None
            count = sum(1 for d in ctx.devices.values() if d.get("template") == info.template_id)
            return count * len({c.component for c in info.telemetry})

        return Reader(
            lambda text: self.s.iotc.query(target.app, text),
            ctx.templates,
            ctx.groups,
            parse_ts(progress.start),
            parse_ts(progress.end),
            position,
            next_size=next_size,
            first_window=lambda: FIRST_WINDOW,
            streams=streams,
        ).start()

    def _current(self, ctx: Context, progress: Progress) -> int:
        """The index in `ctx.templates` of the template in progress (len(ctx.templates) when every
        template is done). A template that has left the export's filter (or the app) since the
        backfill began is passed over, and what was not backfilled of it is said."""
        ids = [t.template_id for t in ctx.templates]
        while progress.template and progress.template not in ids:
            note = (
                f"template {progress.template} left the export's filter during the backfill: its telemetry from "
                f"{progress.cursor} to {progress.end} was not backfilled"
            )
            if note not in progress.unrecoverable:
                progress.unrecoverable.append(note)
            self._advance(progress)
        return ids.index(progress.template) if progress.template else len(ids)

    @staticmethod
    def _advance(progress: Progress) -> None:
        """On to the next template of the fixed order, from the gap's start."""
        order = progress.templates
        at = order.index(progress.template) if progress.template in order else len(order)
        progress.template = order[at + 1] if at + 1 < len(order) else ""
        progress.cursor, progress.size_s = progress.start, int(FIRST_WINDOW.total_seconds())
        progress.pending = None

    def run(self, target: Any, progress: Progress, budget_s: float) -> Progress:
        """Work through windows until done or `budget_s` is spent; progress is saved after each."""
        if progress.done:
            return progress
        started = self.monotonic()
        try:
            ctx = self._sources(target, progress)
        except BackfillRefused as exc:
            progress.refused, progress.done = str(exc), True
            self.save(progress)
            return progress
        devices = threading.Event()
        reader: Reader | None = None
        used = 0  # queries of the answers taken from the reader
        try:
            if self.monotonic() - started < budget_s:
                reader = self._reader(target, ctx, progress, devices)
            try:
                ctx = self._details(target, progress, ctx)
            except (BackfillRefused, TransformError) as exc:
                progress.refused, progress.done = str(exc), True
                self.save(progress)
                return progress
            devices.set()
            end = parse_ts(progress.end)
            # No reader: the budget was spent before the first window, and so it still is.
            progress.wait_s = 0
            while (
                reader is not None
                and not progress.done
                and not progress.wait_s
                and self.monotonic() - started < budget_s
            ):
                cursor = parse_ts(progress.cursor)
                index = self._current(ctx, progress)
                if index >= len(ctx.templates) or cursor >= end:
                    if index < len(ctx.templates):
                        self._advance(progress)
                    progress.done = self._current(ctx, progress) >= len(ctx.templates)
                    self.save(progress)
                    continue
                try:
                    answer = reader.next()
                    if answer is None or answer.template_index != index:
                        raise RuntimeError(f"backfill reader out of step at {progress.cursor}: {answer}")
                    if answer.window.start != cursor:
                        raise RuntimeError(f"backfill reader out of step at {progress.cursor}: {answer.window}")
                    used += answer.queries
                    progress.queries += answer.queries
                    self._window(target, ctx, progress, answer)  # saves the progress it made
                except (BackfillRefused, TransformError, PlanError) as exc:
                    progress.refused, progress.done = str(exc), True
                    self.save(progress)
        finally:
            if reader is not None:
                reader.close()
                if reader.queries > used:  # read ahead, not used: asked again by the next invocation
                    progress.queries += reader.queries - used
                    self.save(progress)
        return progress

    def _window(self, target: Any, ctx: Context, progress: Progress, answer: Answer) -> None:
        info = ctx.templates[self._current(ctx, progress)]
        window = answer.window
        if progress.pending and (stamp_s(window.start), stamp_s(window.end)) != (
            progress.pending["start"],
            progress.pending["end"],
        ):
            progress.pending = None  # the journaled window's answer was cut off: it was never sent
        rows_by_message = rows_for(
            answer.messages,
            application_id=ctx.application_id,
            info=info,
            devices=ctx.devices,
            export_filter=ctx.export_filter,
            transform=ctx.transform,
            enrichments=ctx.enrichments,
            exclude_simulated=ctx.exclude_simulated,
        )
        rows = [r for _, r in rows_by_message]
        if rows:
            identity = ctx.identities[info.template_id]
            present = self.s.kusto(target.cluster_url).rows_between(
                target.database, target.table, identity.time, window.start, window.end
            )
            todo, matched, strangers = dedupe.missing_by_identity(rows, present, identity.columns, ctx.schema)
            if dedupe.times_disagree(matched, strangers):
                raise BackfillRefused(
                    f"{strangers} of the {strangers + matched} rows {target.table} holds for these devices in "
                    f"{stamp_s(window.start)}..{stamp_s(window.end)} have no message time the query API answered: "
                    "its $ts is not the time the export wrote (devices that send iothub-creation-time-utc?), so "
                    "delivered rows cannot be told from missing ones; nothing is ingested"
                )
            redo = progress.pending if progress.pending and "missing" in progress.pending else None
            found, missing = (int(redo["found"]), int(redo["missing"])) if redo else (len(rows), len(todo))
            if todo and progress.mode == "on" and redo and redo.get("at"):
                settle = getattr(self.s.settings, "backfill_settle_seconds", None)
                settled = parse_ts(str(redo["at"])) + (SETTLE if settle is None else timedelta(seconds=settle))
                if self.clock() < settled:  # the first send may still be on its way: read back later
                    progress.wait_s = max(1.0, (settled - self.clock()).total_seconds())
                    self.save(progress)
                    return
            if todo and progress.mode == "on":
                first = bool(redo.get("first")) if redo else progress.sends == 0
                if not redo:
                    progress.sends += 1
                progress.pending = {
                    "start": stamp_s(window.start),
                    "end": stamp_s(window.end),
                    "at": self.clock().isoformat(),
                    "first": first,
                    "found": found,
                    "missing": missing,
                }
                self.save(progress)
                self.s.checkpoint("backfill:intent")
                self.guard()  # right before the act: a twin that claimed the run meanwhile ingests instead
                how = self.ingestor(target.cluster_url).ingest(
                    target.database,
                    target.table,
                    todo,
                    tag_for(progress.run_id),
                    streaming=ctx.streaming and not ctx.approximate,  # approximate rows are tagged so
                    mapping=ctx.mapping,
                    approximate=bool(ctx.approximate),
                    if_not_exists=first,
                )
                self.s.checkpoint("effect:backfill-ingest")
                progress.ingestion = how
            if progress.mode == "on" and (todo or redo):
                progress.rows_sent += missing  # once per chunk, however often it was sent
                progress.chunks += 1
            progress.rows_found += found
            progress.rows_present += found - missing
        progress.pending = None
        progress.windows += 1
        progress.cursor = stamp_s(window.end)
        progress.size_s = int(answer.next_size.total_seconds())
        self.save(progress)
        self.s.checkpoint("backfill:window-done")


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


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")) if n]
    return " ".join(parts) or "0 s"


def gap_window(
    last_good: datetime | None, first_new: datetime | None, fallback_start: datetime, now: datetime, margin: timedelta
) -> tuple[datetime, datetime]:
    """Message-time window to backfill: from the last good ingestion before the failure (or the
    first failure evidence) to the first new row after healing, widened by `margin` on both sides
    for the export's delivery latency (what is already there is skipped, so wider is only slower)."""
    start = (last_good or fallback_start) - margin
    end = (first_new or now) + margin
    return start.astimezone(UTC), min(end, now).astimezone(UTC)
