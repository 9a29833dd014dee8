"""Waiting on a condition with a deadline (never a blind sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(check: Callable[[], bool], timeout_s: float, interval: float = 0.05) -> bool:
    """Poll `check()` until it holds (True) or the deadline passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
