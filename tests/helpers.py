"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("HEALER_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Wait for a condition with a deadline; fail with `what` if it never holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def fixture(relative: str) -> Any:
    path = FIXTURES / relative
    if not FIXTURES.is_dir():
        pytest.skip(f"published samples not found at {FIXTURES} (set HEALER_FIXTURES)")
    return json.loads(path.read_text())
