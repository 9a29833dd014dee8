"""The incident report from history and journal rows: one run per run id, its events in the order
detection → diagnosis → actions → verification → outcome, everything escaped."""

from __future__ import annotations

import json
from typing import Any

from shared.reporting.report.incidents import build_runs
from shared.reporting.report.page import render_html
from tests.support.html_check import check_html

RUN = "a" * 32


def _rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cause = {"found": True, "source": "ADXJournal", "summary": "ops ran .drop database ['d'] ingestors (...)"}
    history = [
        {"PartitionKey": "app:e:d", "RunId": RUN, "At": "2026-11-27T10:00:02+00:00", "Trigger": "timer",
         "CorrelationId": RUN, "Outcome": "waiting", "Detail": "added ingestors; verifying",
         "Diagnosis": "principal-missing", "RootCause": json.dumps(cause)},
        {"PartitionKey": "app:e:d", "RunId": RUN, "At": "2026-11-27T10:00:09+00:00", "Trigger": "timer",
         "CorrelationId": RUN, "Outcome": "healed", "Detail": "<script>alert(1)</script> rows arrived"},
    ]  # fmt: skip
    plan = {"diagnosis": {"kind": "principal-missing", "summary": "gone", "evidence": ["iotcentral: Forbidden: x"],
                          "notes": []}, "actions": [{"action": "add-role"}, {"action": "verify"}]}  # fmt: skip
    journal = [
        {"RunId": RUN, "Step": "plan", "Status": "done", "At": "2026-11-27T10:00:01+00:00", "Data": {"plan": plan}},
        {"RunId": RUN, "Step": "add", "Status": "intent", "At": "2026-11-27T10:00:01.5+00:00", "Data": {"role": "x"}},
        {"RunId": RUN, "Step": "add", "Status": "done", "At": "2026-11-27T10:00:02+00:00", "Data": {"listed": True}},
        {"RunId": RUN, "Step": "verify", "Status": "done", "At": "2026-11-27T10:00:08+00:00", "Data": {"healed": True}},
    ]
    return history, journal


def test_a_run_reads_as_a_timeline() -> None:
    history, journal = _rows()
    [run] = build_runs(history, journal)
    assert (run.target, run.outcome, run.diagnosis, run.trigger) == ("app:e:d", "healed", "principal-missing", "timer")
    phases = [e.phase for e in run.events]
    assert phases[0] == "detection" and phases[-1] == "outcome"
    assert phases.index("diagnosis") < phases.index("action") < phases.index("verification")
    assert run.root_cause and run.root_cause["source"] == "ADXJournal"
    plan_event = next(e for e in run.events if e.title.startswith("diagnosed"))
    assert plan_event.evidence == ["iotcentral: Forbidden: x"]


def test_the_html_is_self_contained_and_escaped() -> None:
    history, journal = _rows()
    runs = build_runs(history, journal)
    text = render_html(runs, "report <x>", [{"scenario": "s", "root cause": runs[0].root_cause}])
    page = check_html(text)
    assert page.errors == [] and page.external == [] and page.runs == 1
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert page.title == "report <x>" and "ops ran .drop database" in page.text
    assert page.phases[0][0] == "detection" and page.phases[0][-1] == "outcome"
    assert check_html(render_html([], "empty")).runs == 0
