"""The sandbox in a process of its own (`python -m sandbox serve`), for benchmarks and CLI tests:
services that share a process with their client would share its GIL too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def sandbox_process(state_dir: Path, *options: str, timeout_s: float = 120) -> Iterator[dict[str, str]]:
    """Start `serve --free-ports` writing to `state_dir`; yield its endpoints; stop it with SIGTERM."""
    endpoints_file = state_dir / "endpoints.json"
    endpoints_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--free-ports", "--state-dir", str(state_dir), *options],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: endpoints_file.exists() or process.poll() is not None, timeout_s, interval=0.1)
        if not endpoints_file.exists():
            raise RuntimeError(f"the sandbox did not start (exit code {process.poll()})")
        yield json.loads(endpoints_file.read_text())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
