"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("HEALER_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Wait for a condition with a deadline; fail with `what` if it never holds."""
    if not wait_for(check, timeout_s):
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def fixture(relative: str) -> Any:
    path = FIXTURES / relative
    if not FIXTURES.is_dir():
        pytest.skip(f"published samples not found at {FIXTURES} (set HEALER_FIXTURES)")
    return json.loads(path.read_text())
