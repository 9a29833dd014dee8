"""The operator CLI as a person runs it: `python -m shared … --sandbox` against `python -m sandbox serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.process import sandbox_process
from tests.support.helpers import ROOT, wait_until

CONTOSO = "contoso:export-1:adx-1"


@pytest.fixture(scope="module")
def sandbox_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("sandbox")
    with sandbox_process(state, "--export-interval", "0.2"):
        yield state


def cli(sandbox_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    suffix = uuid.uuid4().hex[:8]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HEALER_", "IDENTITY_", "AzureWebJobs"))}
    environment.update({"PYTHONPATH": str(ROOT), "HEALER_MODE": "enforce"}, **(env or {}))
    environment.setdefault("HEALER_QUEUE_NAME", f"cli-{suffix}")
    done = subprocess.run(
        [sys.executable, "-m", "shared", "--sandbox", "--sandbox-dir", str(sandbox_dir), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        parsed = json.loads(done.stdout)
    except ValueError:
        parsed = None
    return done.returncode, parsed, done.stdout + done.stderr


def control(sandbox_dir: Path, path: str, body: dict[str, Any]) -> None:
    url = json.loads((sandbox_dir / "endpoints.json").read_text())["control_url"]
    requests.post(f"{url}{path}", json=body, timeout=10).raise_for_status()


def test_help_reads_well() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shared", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    for command in ("diagnose", "checklist", "plan", "heal", "status", "history", "resume", "iotc-access", "doctor"):
        assert command in done.stdout
    assert "Exit codes" in done.stdout
    for command in ("diagnose", "checklist", "plan", "heal", "status", "history", "resume", "iotc-access"):
        sub = subprocess.run(
            [sys.executable, "-m", "shared", command, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert "Usage: python -m shared" in sub.stdout and len(sub.stdout.splitlines()) > 3


def test_diagnose_plan_heal_status_history(sandbox_dir: Path) -> None:
    code, healthy, _ = cli(sandbox_dir, "--json", "diagnose", CONTOSO)
    assert (code, healthy["kind"]) == (0, "healthy")
    assert {c["item"] for c in healthy["checklist"]} >= {"cluster-uri", "table", "ingestion-mapping-name"}
    code, items, _ = cli(sandbox_dir, "--json", "checklist", CONTOSO)
    results = {c["item"]: c["status"] for c in items["checklist"]}
    assert code == 0 and results["table"] == "pass" and results["ingestion-mapping-name"] == "not-applicable"
    code, _, out = cli(sandbox_dir, "checklist", CONTOSO)
    assert code == 0 and "streaming-ingestion" in out and "not-applicable" in out
    control(sandbox_dir, "/faults", {"kind": "stale-permission", "app": "contoso"})
    url = json.loads((sandbox_dir / "endpoints.json").read_text())["control_url"]
    wait_until(
        lambda: (
            requests.get(f"{url}/state", timeout=10).json()["apps"]["contoso"]["exports"]["export-1"]["status"]
            == "error"
        ),
        10,
        "the break",
    )
    code, found, _ = cli(sandbox_dir, "--json", "diagnose", CONTOSO)
    assert (code, found["kind"]) == (3, "principal-stale") and found["evidence"]
    code, planned, _ = cli(sandbox_dir, "--json", "plan", CONTOSO)
    assert code == 3 and [a["action"] for a in planned["actions"]] == ["recreate-destination", "refresh", "verify"]
    code, dry, _ = cli(sandbox_dir, "--json", "heal", CONTOSO)
    assert code == 3 and dry["dry_run"] is True
    code, _, out = cli(sandbox_dir, "plan", CONTOSO)
    assert code == 3 and "refresh" in out and "principal-stale" in out
    queue_env = {"HEALER_QUEUE_NAME": "cli-heal-queue"}
    code, queued, _ = cli(sandbox_dir, "--json", "heal", CONTOSO, "--yes", env=queue_env)
    assert code == 0 and queued["queued"] is True and len(queued["run_id"]) == 32
    code, again, _ = cli(sandbox_dir, "--json", "heal", CONTOSO, "--yes", env=queue_env)
    assert code == 5 and "already queued" in again["reason"]
    code, status, _ = cli(sandbox_dir, "--json", "status")
    assert code == 0 and {r["target"] for r in status["targets"]} == {CONTOSO, "fabrikam:export-1:adx-1"}
    code, history, _ = cli(sandbox_dir, "--json", "history", CONTOSO)
    assert code == 0 and isinstance(history, list)
    for command in ("status", "history"):  # as people read them in an 80-column terminal
        code, _, out = cli(sandbox_dir, command, env={"COLUMNS": "80"})
        assert code == 0 and "…" not in out and max(len(line) for line in out.splitlines()) <= 80, out
        assert CONTOSO in out or command == "history"  # no run has ended yet: its table is empty
    code, resume, _ = cli(sandbox_dir, "--json", "resume", CONTOSO)
    assert code == 0 and resume["dry_run"] is True


def test_iotc_access_is_idempotent_with_a_dry_run(sandbox_dir: Path) -> None:
    object_id, tenant = str(uuid.uuid4()), "72f988bf-86f1-41af-91ab-2d7cd011db47"
    args = (
        "--json",
        "iotc-access",
        "--app",
        "contoso",
        "--app",
        "fabrikam",
        "--object-id",
        object_id,
        "--tenant-id",
        tenant,
    )
    code, dry, _ = cli(sandbox_dir, *args)
    assert code == 0 and [r["change"] for r in dry] == ["added", "added"] and all(r["dry_run"] for r in dry)
    code, done, _ = cli(sandbox_dir, *args, "--yes")
    assert code == 0 and [r["change"] for r in done] == ["added", "added"]
    code, again, _ = cli(sandbox_dir, *args, "--yes")
    assert code == 0 and [r["change"] for r in again] == ["none", "none"]


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (("diagnose", "ghost:e:d"), {}, "not configured"),
        (("iotc-access", "--app", "contoso", "--object-id", "nope", "--tenant-id", "x"), {}, "--object-id='nope'"),
        (("status",), {"HEALER_MODE": "fix-all"}, "HEALER_MODE"),
        (("frobnicate",), {}, "No such command"),
    ],
)
def test_usage_and_configuration_errors_exit_2(
    sandbox_dir: Path, args: tuple[str, ...], env: dict[str, str], fragment: str
) -> None:
    code, _, out = cli(sandbox_dir, *args, env=env)
    assert code == 2 and fragment in out
    assert "Traceback" not in out


def test_root_cause_and_the_html_report(sandbox_dir: Path, tmp_path: Path) -> None:
    from sandbox.scenarios import OPERATOR_UPN
    from tests.support.html_check import check_html

    control(sandbox_dir, "/faults", {"kind": "principal-removed", "app": "fabrikam"})
    code, found, _ = cli(sandbox_dir, "--json", "diagnose", "fabrikam:export-1:adx-1")
    assert code == 3 and found["kind"] == "principal-missing"
    cause = found["root_cause"]
    assert cause["found"] and cause["actor"] == OPERATOR_UPN and cause["command"].startswith(".drop database")
    code, _, out = cli(sandbox_dir, "diagnose", "fabrikam:export-1:adx-1")
    assert code == 3 and f"root cause: {OPERATOR_UPN} ran .drop database" in out
    html = tmp_path / "report.html"
    code, report, _ = cli(sandbox_dir, "--json", "report", "--html", str(html))
    assert code == 0 and report["html"] == str(html) and isinstance(report["runs"], list)
    page = check_html(html.read_text())
    assert page.errors == [] and page.external == [] and page.title.endswith("all targets")
    code, _, out = cli(sandbox_dir, "report", "ghost:e:d", "--html", str(html))
    assert code == 2 and "not configured" in out


def test_doctor_is_ready_or_names_the_fix(sandbox_dir: Path) -> None:
    code, _, out = cli(sandbox_dir, "doctor", env={"COLUMNS": "80"})
    assert code == 0, out
    assert "ready" in out and "FAIL" not in out
    assert "target contoso:export-1:adx-1" in out and "adx-role" in out
    wrapped = [line for line in out.splitlines() if len(line) > 80 and "fix:" not in line]
    assert not wrapped, wrapped  # only a fix (one command, soft-wrapped by the terminal) is longer
    endpoints = json.loads((sandbox_dir / "endpoints.json").read_text())
    targets = requests.get(f"{endpoints['control_url']}/healer-targets", timeout=10).json()
    wrong = [{**targets[0], "table": "NoSuchTable"}]
    code, report, out = cli(sandbox_dir, "--json", "doctor", env={"HEALER_TARGETS": json.dumps(wrong)})
    assert code == 1, out
    assert report is not None and report["ok"] is False
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["adx-table"]
    assert failed[0]["fix"].startswith(".create table ['NoSuchTable']")


def test_backfill_dry_run_prints_only_its_result_when_piped(sandbox_dir: Path) -> None:
    from datetime import UTC, datetime, timedelta

    end = datetime.now(UTC).replace(microsecond=0)
    window = ["--from", (end - timedelta(minutes=2)).isoformat(), "--to", end.isoformat()]
    code, _, out = cli(sandbox_dir, "backfill", CONTOSO, *window, "--dry-run")
    assert code in (0, 3), out
    assert out.startswith(f"{CONTOSO}: ") and "\x1b[" not in out and "rows/s" not in out  # no bar in a pipe
