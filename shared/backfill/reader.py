"""The query side of a backfill, run ahead of the rest in a thread of its own.

The query API allows one request per second per app, so a backfill is bound by its queries; what
follows each answer (rebuilding the messages, the jq transform, reading the table, ingesting)
would otherwise sit between two queries. Here the windows are walked and queried in order while
the previous answers are processed, a few answers ahead at most (each holds up to 10,000
records; what is read ahead and not used when an invocation ends is just asked again later).

The walk is the same one the journal describes: windows from the cursor, each sized from the
last answer's density, a window whose answer hit the record cap cut in half and asked again
(its answer is never used), then the next template from the gap's start. Nothing here writes the
journal: the caller takes the answers in order and moves the cursor past each one it has handled,
so a crash resumes from the last window handled, whatever was read ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.backfill.planner import MIN_WINDOW, RECORD_CAP, Window
from shared.backfill.planner import query_text as build_query
from shared.backfill.records import Message, join_parts, messages_from
from shared.backfill.templates import TemplateInfo

AHEAD = 4  # answers read ahead of the processing (each up to RECORD_CAP records in memory)
_POLL_S = 0.1  # how often a blocked hand-over looks whether the reader was closed


@dataclass(frozen=True)
class Answer:
    template_index: int
    window: Window
    messages: list[Message]  # the window's own messages, re-joined across SELECT splits
    most: int  # records in the largest answer (the density the next window is sized from)
    queries: int  # queries spent on this window, cut-off answers before it included
    next_size: timedelta


@dataclass(frozen=True)
class Position:
    """Where the walk starts: the journal's template, cursor, window size and pending window."""

    template_index: int
    cursor: datetime
    size: timedelta
    pending: Window | None


class _Closed(Exception):
    pass


class Reader:
    def __init__(
        self,
        query: Callable[[str], list[dict[str, Any]]],
        templates: list[TemplateInfo],
        groups: dict[str, list[list[str]]],
        start: datetime,
        end: datetime,
        position: Position,
        *,
        next_size: Callable[[timedelta, int], timedelta],
        first_window: Callable[[], timedelta],
        streams: Callable[[TemplateInfo], int | None] = lambda info: None,
        ahead: int = AHEAD,
    ) -> None:
        self._query = query
        self._templates = templates
        self._groups = groups
        self._start, self._end = start, end
        self._position = position
        self._next_size = next_size
        self._first_window = first_window
        self._streams = streams
        self._answers: queue.Queue[Answer | BaseException | None] = queue.Queue(maxsize=max(1, ahead))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._walk, name="backfill-reader", daemon=True)
        self._rate: float | None = None  # records per second per device stream, last measured
        self.queries = 0  # every query sent, read-ahead ones included

    def start(self) -> Reader:
        self._thread.start()
        return self

    def next(self) -> Answer | None:
        """The next window's answer in walk order, or None when every template is done. An error
        the walk met (a refused query, more than the cap in one second) is raised here."""
        item = self._answers.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self, wait_s: float = 5.0) -> None:
        """Stop reading ahead. A query under way is finished (its answer is dropped)."""
        self._closed.set()
        while True:
            try:
                self._answers.get_nowait()
            except queue.Empty:
                break
        if self._thread.is_alive():
            self._thread.join(wait_s)

    # ---------------------------------------------------------------- the walk (reader thread)

    def _hand_over(self, item: Answer | BaseException | None) -> None:
        while not self._closed.is_set():
            try:
                self._answers.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise _Closed

    def _walk(self) -> None:
        try:
            self._walk_windows()
        except _Closed:
            return
        except Exception as exc:  # handed to the caller, raised in its thread
            try:
                self._hand_over(exc)
            except _Closed:
                return

    def _walk_windows(self) -> None:
        index = self._position.template_index
        cursor, size, pending = self._position.cursor, self._position.size, self._position.pending
        spent = 0  # queries whose answers were cut off, charged to the window that follows
        while index < len(self._templates):
            if cursor >= self._end:
                index += 1
                cursor, pending = self._start, None
                if index < len(self._templates):
                    size = self._first_size(self._templates[index])
                continue
            info = self._templates[index]
            window = pending or Window(cursor, min(self._end, cursor + size))
            parts: list[list[dict[str, Any]]] = []
            most = 0
            for items in self._groups[info.template_id]:
                if self._closed.is_set():
                    raise _Closed
                self.queries += 1
                spent += 1
                answer = self._query(build_query(info.template_id, items, window.start, window.end))
                most = max(most, len(answer))
                if len(answer) >= RECORD_CAP:
                    break
                parts.append(answer)
            if most >= RECORD_CAP:  # cut off: never used; the first half is asked next
                first, _ = window.halves()
                size, pending = first.size, None
                continue
            messages = [m for m in messages_from(info, join_parts(parts)) if window.owns(m.enqueued)]
            next_size = self._next_size(window.size, most)
            self._measure(info, window, most)
            self._hand_over(Answer(index, window, messages, most, spent, next_size))
            spent = 0
            cursor, size, pending = window.end, next_size, None
        self._hand_over(None)

    # ---------------------------------------------------------------- a template's first window

    def _measure(self, info: TemplateInfo, window: Window, most: int) -> None:
        streams = self._streams(info)
        if streams and most:
            # The query asks for one second more than the window (see planner).
            self._rate = most / (window.size + MIN_WINDOW).total_seconds() / streams
        # No answer to size from otherwise: the first window stays the blind one.

    def _first_size(self, info: TemplateInfo) -> timedelta:
        """A template's first window: from the pace the devices of the templates before it sent
        at (a fleet's devices tend to share one), scaled by this template's devices and their
        interfaces; the fixed first window when nothing was measured yet."""
        first = self._first_window()
        streams = self._streams(info)
        if self._rate is None or not streams:
            return first
        expected = self._rate * streams * (first + MIN_WINDOW).total_seconds()
        return self._next_size(first, max(1, round(expected)))
