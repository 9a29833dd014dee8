"""Queries within the query API's documented limits (howto-query-with-rest-api.md): at most 15
SELECT items, no `*`, at most 350 characters, at most 10 logical operations, at most 10,000
telemetry records per answer (more are cut off), about one request per second per app.

Windows are owned half-open, [start, end) in whole seconds; a query asks for one second more at
the start (`WITHIN_WINDOW('start-1s/end')`) because the docs do not say whether the range
includes its ends, and records outside [start, end) are dropped by the caller. So every record
belongs to exactly one window, whatever the service does at the edges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.backfill.templates import Capability

MAX_ITEMS = 15
MAX_CHARS = 350
RECORD_CAP = 10_000
# Aim a little below the cap: a window whose answer is cut off costs its query and a half-sized
# one after it, while each record under the cap is a record the query could have brought. Next to
# each other, windows of a gap differ in density by far less than this margin.
TARGET_RECORDS = 9_500
MIN_WINDOW = timedelta(seconds=1)
MAX_WINDOW = timedelta(days=7)
FIXED_ITEMS = ("$id", "$ts")
# What may reach a query's text: device template ids (dtmi:… or the older urn:…) and DTDL names
# (letters, digits, underscores; `component.name` for a component's capability). Anything else,
# even from the app's own templates, is refused rather than spliced into a query.
_TEMPLATE_ID = re.compile(r"(?:dtmi|urn):[A-Za-z0-9_:;.\-]{1,200}")
_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}(?:\.[A-Za-z][A-Za-z0-9_]{0,63})?")


class PlanError(ValueError):
    """A template or window that cannot be queried within the limits."""


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def alias(path: str) -> str:
    """The name a capability is asked for under: a component's `c.name` as `c__name`, since how an
    answer names an unaliased component capability is undocumented (`AS` settles it)."""
    return path.replace(".", "__")


def select_item(path: str) -> str:
    return f"{path} AS {alias(path)}" if "." in path else path


def query_text(template_id: str, items: list[str], start: datetime, end: datetime) -> str:
    select = ", ".join([*FIXED_ITEMS, *(select_item(i) for i in items)])
    window = f"WITHIN_WINDOW('{stamp(start - MIN_WINDOW)}/{stamp(end)}')"
    return f"SELECT {select} FROM {template_id} WHERE {window}"  # noqa: S608 - IoT Central query, not SQL


def split_select(template_id: str, telemetry: list[Capability]) -> list[list[str]]:
    """Groups of telemetry paths so each query has ≤ 15 items (with $id, $ts) and ≤ 350 characters.
    The window stamps have a fixed length, so one probe window sizes every query of the template."""
    if not _TEMPLATE_ID.fullmatch(template_id):
        raise PlanError(f"template id {template_id!r} is not a dtmi:/urn: id; it is not put into a query")
    for cap in telemetry:
        if not _PATH.fullmatch(cap.path):
            raise PlanError(f"telemetry name {cap.path!r} of {template_id} is not a DTDL name; not put into a query")
    probe = datetime(2000, 1, 1, tzinfo=UTC)
    groups: list[list[str]] = []
    current: list[str] = []
    for cap in telemetry:
        trial = [*current, cap.path]
        fits = (
            len(trial) + len(FIXED_ITEMS) <= MAX_ITEMS
            and len(query_text(template_id, trial, probe, probe)) <= MAX_CHARS
        )
        if fits:
            current = trial
            continue
        if not current:
            raise PlanError(f"telemetry {cap.path!r} of {template_id} alone makes a query over {MAX_CHARS} characters")
        groups.append(current)
        current = [cap.path]
        if len(query_text(template_id, current, probe, probe)) > MAX_CHARS:
            raise PlanError(f"telemetry {cap.path!r} of {template_id} alone makes a query over {MAX_CHARS} characters")
    if current:
        groups.append(current)
    return groups


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def size(self) -> timedelta:
        return self.end - self.start

    def halves(self) -> tuple[Window, Window]:
        seconds = int(self.size.total_seconds())
        if seconds < 2:
            raise PlanError(f"more than {RECORD_CAP} records in one second ({stamp(self.start)}): cannot split further")
        middle = self.start + timedelta(seconds=seconds // 2)
        return Window(self.start, middle), Window(middle, self.end)

    def owns(self, ts: datetime) -> bool:
        return self.start <= ts < self.end


def floor_second(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


def ceil_second(value: datetime) -> datetime:
    floored = floor_second(value)
    return floored if floored == value else floored + MIN_WINDOW


def next_size(previous: timedelta, records: int) -> timedelta:
    """Size the next window so its query should answer about TARGET_RECORDS, from the density of
    the last one (`records` in the largest answer for `previous`, whose query asked one second
    more: both the density and the next query's reach count that second)."""
    if records <= 0:
        grown = previous * 8
    else:
        asked = previous + MIN_WINDOW
        grown = asked * (TARGET_RECORDS / records) - MIN_WINDOW
    seconds = max(MIN_WINDOW.total_seconds(), min(MAX_WINDOW.total_seconds(), grown.total_seconds()))
    return timedelta(seconds=int(seconds))
