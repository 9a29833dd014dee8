"""A backfill's progress as its journal keeps it (windows done, rows found, present and sent, the
chunk being sent), the ingest-by tag of its chunks, and the refusal that ends it. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

FIRST_WINDOW = timedelta(minutes=1)  # then sized from what each answer held


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


def duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")) if n]
    return " ".join(parts) or "0 s"
