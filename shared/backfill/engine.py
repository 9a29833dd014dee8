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

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.backfill import dedupe
from shared.backfill.context import Context, read_details, read_sources
from shared.backfill.planner import PlanError, Window, ceil_second, floor_second, next_size
from shared.backfill.planner import stamp as stamp_s
from shared.backfill.progress import FIRST_WINDOW, BackfillRefused, Progress, duration, tag_for
from shared.backfill.reader import Answer, Position, Reader
from shared.backfill.records import parse_ts
from shared.backfill.templates import TemplateInfo
from shared.backfill.transform import TransformError, rows_for

log = logging.getLogger(__name__)
RETENTION_DAYS = 7  # IoT Central's data retention (quotas page); HEALER_BACKFILL_RETENTION_DAYS
# How long a sent chunk may take to show in the table before a redo reads it back: the default
# queued-ingestion batching time (ADX IngestionBatching policy, MaximumBatchingTimeSpan 5 min) plus
# a margin (HEALER_BACKFILL_SETTLE_SECONDS). A table with a longer batching policy, or an
# ingestion backlog, may take longer: unverified.
SETTLE = timedelta(minutes=6)


class BackfillEngine:
    def __init__(
        self,
        services: Any,
        ingestor: Callable[[str], Any],
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        guard: Callable[[], object] = lambda: None,
    ) -> None:
        self.services = services
        self.ingestor = ingestor
        # Called before every journal write and every ingestion: raises when this invocation no
        # longer holds the run (its lease was taken, or a twin delivery claimed it since).
        self.guard = guard
        self.clock = clock or services.clock
        self.monotonic = monotonic

    # ---------------------------------------------------------------- progress in the journal

    def load(self, target_key: str, run_id: str) -> Progress | None:
        for row in self.services.store.read_journal(target_key, run_id):
            if row["Step"] == "backfill" and row["Status"] == "progress":
                return Progress.from_dict(row["Data"])
        return None

    def save(self, progress: Progress) -> None:
        self.guard()
        self.services.store.write_journal(
            progress.target, progress.run_id, "backfill", "progress", progress.to_dict(), self.clock()
        )

    def begin(self, target: Any, run_id: str, start: datetime, end: datetime, mode: str) -> Progress:
        existing = self.load(target.key, run_id)
        if existing is not None:
            return existing
        now = self.clock()
        days = int(getattr(self.services.settings, "backfill_retention_days", RETENTION_DAYS))
        oldest = floor_second(now - timedelta(days=days))
        unrecoverable: list[str] = []
        lost = timedelta(0)
        if start < oldest:
            lost = min(end, oldest) - start
            unrecoverable.append(
                f"unrecoverable: {duration(lost)} of telemetry ({stamp_s(start)} to {stamp_s(min(end, oldest))}) is "
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
        return read_details(self.services, target, progress, read_sources(self.services, target, progress))

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
            lambda text: self.services.iotc.query(target.app, text),
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
            ctx = read_sources(self.services, target, progress)
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
                ctx = read_details(self.services, target, progress, ctx)
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
            present = self.services.kusto(target.cluster_url).rows_between(
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
                settle = getattr(self.services.settings, "backfill_settle_seconds", None)
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
                self.services.checkpoint("backfill:intent")
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
                self.services.checkpoint("effect:backfill-ingest")
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
        self.services.checkpoint("backfill:window-done")


def gap_window(
    last_good: datetime | None, first_new: datetime | None, fallback_start: datetime, now: datetime, margin: timedelta
) -> tuple[datetime, datetime]:
    """Message-time window to backfill: from the last good ingestion before the failure (or the
    first failure evidence) to the first new row after healing, widened by `margin` on both sides
    for the export's delivery latency (what is already there is skipped, so wider is only slower)."""
    start = (last_good or fallback_start) - margin
    end = (first_new or now) + margin
    return start.astimezone(UTC), min(end, now).astimezone(UTC)
