"""A live progress bar for long CLI work (a backfill's windows): on a terminal only, so a pipe, a
file or `--json` gets nothing but the result."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any

STEPS = 1000  # the bar's resolution


def backfill_fraction(progress: dict[str, Any]) -> float:
    """How much of the gap is done, 0..1: templates are backfilled one after another, each over the
    whole window, so a template's share is its cursor's way through the window."""
    if progress.get("done"):
        return 1.0
    try:
        start, end, cursor = (datetime.fromisoformat(str(progress[k])) for k in ("start", "end", "cursor"))
    except (KeyError, ValueError):
        return 0.0
    span = (end - start).total_seconds()
    within = min(max((cursor - start).total_seconds() / span, 0.0), 1.0) if span > 0 else 1.0
    templates = max(len(progress.get("templates") or []), 1)
    index = min(int(progress.get("template_index") or 0), templates)
    return min((index + within) / templates, 1.0)


class BackfillProgress:
    """`update(progress)` after each window: the share of the gap done, rows/s and time left."""

    def __init__(self, console: Any, label: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = console is not None and bool(console.is_terminal)
        self._clock = clock
        self._started = clock()
        self._bar: Any = None
        self._task: Any = None
        if self.enabled:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._task = self._bar.add_task(label, total=STEPS, rate="")

    def __enter__(self) -> BackfillProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def rate(self, progress: dict[str, Any]) -> str:
        elapsed = max(self._clock() - self._started, 1e-6)
        rows = int(progress.get("rows_found") or 0)
        return f"{rows} rows, {rows / elapsed:,.0f} rows/s, {int(progress.get('windows') or 0)} windows"

    def update(self, progress: dict[str, Any]) -> None:
        if self._bar is not None:
            done = round(backfill_fraction(progress) * STEPS)
            self._bar.update(self._task, completed=done, rate=self.rate(progress))
            self._bar.refresh()  # a window can take less than the bar's refresh period
