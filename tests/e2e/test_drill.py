"""The whole drill, end to end through the runner, and what its logs must never contain."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from sandbox.azurite import ACCOUNT_KEY
from sandbox.drill import SCENARIOS, SECRET_PATTERNS, run
from sandbox.scenarios import OPERATOR_UPN
from tests.support.html_check import browser, check_html, render_in_browser

ALL = [s.name for s in SCENARIOS]


@pytest.mark.timeout(300)
def test_the_whole_drill_and_its_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "drill-report.json"
    monkeypatch.setenv("COLUMNS", "80")  # as in an 80-column terminal; not a terminal: no live redraws
    environment = dict(os.environ)
    assert run(report_path, None) == 0
    screen = capsys.readouterr().out
    assert dict(os.environ) == environment  # the drill restores the environment it changed

    report = json.loads(report_path.read_text())
    rows = {r["name"]: r for r in report["scenarios"]}
    assert list(rows) == ALL
    assert report["log_contains_secret"] is False and report["log_lines"] > 100
    for row in rows.values():
        assert set(row) >= {
            "name",
            "expected_outcome",
            "outcome",
            "healed",
            "principal_lost",
            "mttd_s",
            "mttr_s",
            "kusto_commands",
            "changing_commands",
            "busy_s",
        }
        assert row["outcome"] == row["expected_outcome"] and row["principal_lost"] is False
    assert rows["stale-permission"]["healed"] and rows["stale-permission"]["changing_commands"] == 2
    assert rows["crash-after-drop"]["healed"]
    assert rows["alert-webhook"]["detected_by"] == "alert"
    assert all(rows[n]["healed"] for n in ALL if rows[n]["expected_outcome"] == "healed")
    for quiet in (
        "healer-not-admin",
        "table-missing",
        "observe-mode",
        "ids-normalised",
        "destination-stale",
        "poisoned-remediation",
    ):
        assert rows[quiet]["changing_commands"] == 0
    # Every run ends with its export enabled and no obligation left open.
    assert all(r["export_enabled"] is True and r["obligations_left"] == [] for r in rows.values())
    # An operator's changes mid-run, garbage from another app, a remediation that never succeeds.
    removed = rows["target-removed-mid-run"]
    assert "toggle-export" in removed["actions"] and "no longer configured" in removed["detail"], removed
    assert "re-enabled export export-1" in removed["detail"]
    late = rows["observe-mid-run"]  # the re-add after the switch is a discharge; nothing more changed
    assert late["healed"] and "backfill (plan)" in late["detail"], late
    garbage = rows["garbage-neighbour"]
    assert garbage["healed"] and garbage["neighbour_runs"] == 0, garbage
    assert "UnexpectedBody" in garbage["neighbour_error"] and "text/html" in garbage["neighbour_error"], garbage
    poisoned = rows["poisoned-remediation"]
    assert poisoned["detail"].startswith("poisoned: run ") and "failed 5 times" in poisoned["detail"], poisoned
    assert poisoned["notifications"] == 1
    outage = rows["outage-backfill"]  # nothing lost, nothing twice, and a second backfill adds nothing
    assert (
        outage["gap_s"] >= 300 and outage["rows_backfilled"] > 0 and outage["rows_expected"] > outage["rows_backfilled"]
    )
    assert (outage["rows_missing"], outage["rows_duplicated"], outage["second_backfill_added"]) == (0, 0, 0)
    # Backfills of exports as rich as real ones: exact, or refused with the reason and nothing ingested.
    for name in ("backfill-enriched", "backfill-simulated"):
        row = rows[name]
        assert row["backfill_outcome"] == "backfilled" and row["rows_backfilled"] > 0, row
        assert (row["rows_missing"], row["rows_duplicated"], row["second_backfill_added"]) == (0, 0, 0), row
    assert rows["backfill-simulated"]["rows_written_for_simulated"] == 0
    refusals = {
        "backfill-creation-time": "$ts",
        "backfill-property-filter": "'firmware'",
        "backfill-row-level-security": "row-level security",
    }
    for name, reason in refusals.items():
        row = rows[name]
        assert row["backfill_outcome"] == "backfill-refused" and reason in row["backfill_detail"], row
        assert row["rows_backfilled"] == 0 and row["rows_duplicated"] == 0 and row["rows_missing"] > 0, row
        assert row["second_backfill_added"] == 0
    retention = rows["backfill-beyond-retention"]
    assert 290 <= retention["unrecoverable_s"] <= 310 and "unrecoverable" in retention["backfill_detail"], retention
    assert (retention["rows_missing"], retention["rows_duplicated"], retention["second_backfill_added"]) == (0, 0, 0)
    assert rows["database-missing"]["diagnosis"] == "non-permission"
    assert "does not exist" in rows["database-missing"]["detail"]
    # Root cause: the command and the person the sandbox journaled for the fault.
    for name in ("principal-removed", "table-level-only"):
        cause, recorded = rows[name]["root_cause"], rows[name]["recorded_change"]
        assert cause["found"] and cause["source"] == "ADXJournal", name
        assert cause["command"] == recorded["command"] and cause["actor"] == recorded["actor"] == OPERATOR_UPN
        assert cause["command"].startswith(".drop database ['devicedata'] admins ('aadapp=")
    assert rows["identity-rotated"]["root_cause"]["identity_change"]["seen_by"] == "ARM"
    assert rows["stale-permission"]["root_cause"] is None
    # One notification per escalated scenario and per backfill that leaves data missing, none otherwise.
    lost = {*refusals, "backfill-beyond-retention"}
    assert {n: r["notifications"] for n, r in rows.items()} == {
        n: (1 if r["expected_outcome"] == "escalated" else 0) + (2 if n in lost else 0) for n, r in rows.items()
    }

    # The HTML report next to the JSON one: a timeline per run, nothing loaded from outside.
    html_path = report_path.with_suffix(".html")
    page = check_html(html_path.read_text())
    assert page.errors == [] and page.external == []
    assert page.title.startswith("iotc-adx-healer drill")
    assert page.runs >= len(ALL)
    healed = [p for p in page.phases if "verification" in p]
    assert healed and all(p[0] == "detection" and p[-1] == "outcome" and "action" in p for p in healed)
    assert OPERATOR_UPN in page.text and "principal-removed" in page.text
    if browser():
        dom = render_in_browser(html_path)
        assert 'class="event phase-detection"' in dom and OPERATOR_UPN in dom
    # Fidelity scenarios: each ends the way real ADX and IoT Central would let it.
    assert rows["ids-normalised"]["diagnosis"] == "healthy" and rows["ids-normalised"]["actions"] == []
    assert rows["ingestor-needs-admin"]["diagnosis"] == "insufficient-role"
    assert rows["destination-stale"]["actions"][0] == "recreate-destination"
    assert rows["service-principal-destination"]["changing_commands"] == 1
    assert rows["access-denied-code"]["diagnosis"] == "principal-stale"
    assert "rows cannot be counted" in rows["restricted-view"]["detail"]
    assert rows["unknown-identity"]["diagnosis"] == "identity-changed"
    assert "unknown to Entra" in rows["unknown-identity"]["detail"]

    log = (tmp_path / "drill.log").read_text()
    assert "remediation" in log  # the capture saw the healer's own lines
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(log), pattern.pattern
    assert ACCOUNT_KEY not in log
    assert "Every scenario ended as expected" in screen
    # Readable at 80 columns: the table printed once, each scenario, outcome and diagnosis whole.
    assert "…" not in screen and screen.count("iotc-adx-healer drill") == 1 and "\x1b[" not in screen
    lines = screen.splitlines()
    for name, row in rows.items():
        assert any(
            line.startswith(name + " ") and f"{row['outcome']} ✓" in line and row["diagnosis"] in line for line in lines
        ), name
    assert all(len(line) <= 80 for line in lines if not line.startswith("Drill finished"))


def test_the_secret_check_catches_secrets(tmp_path: Path) -> None:
    from sandbox.drill import Drill

    drill = Drill([], Console(file=(tmp_path / "x.txt").open("w")), tmp_path)
    drill.secrets = ["function-key-123"]
    drill.capture.lines = ["GET /api/health 200"]
    assert not drill.log_contains_secret()
    for leak in (
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123",
        "key=function-key-123",
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
        f"AccountKey={ACCOUNT_KEY}",
        "PUT http://127.0.0.1:1/devstoreaccount1/ingestion-temp/x?sv=2025-01-05&sig=AbCdEf0123456789%3D",
    ):
        drill.capture.lines = ["ok", leak]
        assert drill.log_contains_secret(), leak
