"""The sandbox's two commands, as a person runs them: `serve` (kept running) and `demo`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from rich.console import Console

from sandbox.demo import run
from tests.support.helpers import ROOT, wait_until


def test_serve_starts_everything_and_stops_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--free-ports", "--export-interval", "0.2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    endpoints_file = tmp_path / ".sandbox" / "endpoints.json"
    try:
        wait_until(endpoints_file.exists, 60, "endpoints.json")
        endpoints = json.loads(endpoints_file.read_text())
        state = requests.get(f"{endpoints['control_url']}/state", timeout=10).json()
        assert set(state["apps"]) == {"contoso", "fabrikam"}
        wait_until(
            lambda: (
                requests.get(f"{endpoints['control_url']}/state", timeout=10).json()["apps"]["contoso"]["exports"][
                    "export-1"
                ]["status"]
                == "healthy"
            ),
            20,
            "the exporter to run",
        )
        assert requests.get(f"{endpoints['kusto_cluster_url']}/v1/rest/auth/metadata", timeout=10).ok
        assert "AccountName=devstoreaccount1" in endpoints["storage_connection_string"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "kusto_cluster_url" in output and "IDENTITY_HEADER" not in output


@pytest.mark.timeout(120)
def test_demo_breaks_every_export_and_shows_it(tmp_path: Path) -> None:
    console = Console(file=(tmp_path / "demo.txt").open("w"), width=160)
    assert run(console) == 0
    console.file.close()
    text = (tmp_path / "demo.txt").read_text()
    for fault in (
        "stale-permission",
        "principal-removed",
        "identity-rotated",
        "table-level-only",
        "healer-not-admin",
        "table-missing",
    ):
        assert fault in text
    assert "Every fault broke its export" in text
