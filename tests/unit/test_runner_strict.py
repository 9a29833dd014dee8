"""The local runner is as strict as the Functions host: app settings only from what it is handed
(a dict or a local.settings.json), a `%NAME%` that does not resolve keeps that function from being
indexed (with the host's message), and NCRONTAB schedules come from croniter."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandbox.runner import Runner, load_local_settings, next_fire

FULL = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "HEALER_TIMER_SCHEDULE": "0 */5 * * * *",
    "HEALER_QUEUE_NAME": "healer-remediations",
}


def names(runner: Runner) -> set[str]:
    return {f.get_function_name() for f in runner.functions}


def test_every_function_indexes_when_every_setting_is_given() -> None:
    runner = Runner(app_settings=FULL, http_port=0)
    assert runner.errors == {}
    assert names(runner) == {"detect", "remediate", "heal", "targets", "alerts", "health"}
    assert runner.bindings["remediate"]["queueName"] == "healer-remediations"


def test_an_unresolved_queue_name_keeps_only_that_function_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALER_QUEUE_NAME", "from-the-process-env")  # the host never reads this
    settings = {k: v for k, v in FULL.items() if k != "HEALER_QUEUE_NAME"}
    runner = Runner(app_settings=settings, http_port=0)
    assert "remediate" not in names(runner) and "detect" in names(runner)
    assert runner.errors == {
        "remediate": "The 'remediate' function is in error: '%HEALER_QUEUE_NAME%' does not resolve to a value."
    }


def test_an_unresolved_schedule_keeps_the_timer_out() -> None:
    settings = {k: v for k, v in FULL.items() if k != "HEALER_TIMER_SCHEDULE"}
    runner = Runner(app_settings=settings, http_port=0)
    assert "detect" not in names(runner) and not runner.timers
    assert "'%HEALER_TIMER_SCHEDULE%' does not resolve to a value" in runner.errors["detect"]


def test_a_bad_schedule_or_no_storage_keeps_the_triggers_out() -> None:
    runner = Runner(app_settings={**FULL, "HEALER_TIMER_SCHEDULE": "*/5 * * * *"}, http_port=0)
    assert "six valid fields" in runner.errors["detect"]
    runner = Runner(app_settings={k: v for k, v in FULL.items() if k != "AzureWebJobsStorage"}, http_port=0)
    assert set(runner.errors) == {"detect", "remediate"}
    assert "Missing value for AzureWebJobsStorage" in runner.errors["remediate"]
    assert "heal" in names(runner)  # HTTP triggers need no storage connection


def test_settings_come_from_a_local_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": FULL}))
    runner = Runner(settings_file=path, http_port=0)
    assert runner.errors == {} and runner.settings == FULL
    path.write_text(json.dumps({"Values": {**FULL, "HEALER_REFRESH_WAIT_SECONDS": 60}}))
    with pytest.raises(ValueError, match="HEALER_REFRESH_WAIT_SECONDS is not"):
        load_local_settings(path)
    with pytest.raises(ValueError, match="exactly one"):
        Runner(http_port=0)


def test_the_example_local_settings_index_every_function() -> None:
    root = Path(__file__).resolve().parents[2]
    runner = Runner(settings_file=root / "local.settings.json.example", http_port=0)
    assert runner.errors == {}


def test_the_runner_hands_the_worker_its_settings_and_restores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    monkeypatch.delenv("HEALER_QUEUE_NAME", raising=False)
    before = dict(os.environ)
    runner = Runner(app_settings={**FULL, "HEALER_QUEUE_NAME": "q-only-here"}, http_port=0)
    runner.timers, runner.queues = [], []  # no Azurite here: HTTP only
    with runner:
        assert os.environ["HEALER_QUEUE_NAME"] == "q-only-here"
        runner.set_app_setting("HEALER_MODE", "enforce")
        assert os.environ["HEALER_MODE"] == "enforce"
    assert dict(os.environ) == before


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 5, 0, tzinfo=UTC)),
        ("*/5 * * * * *", datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)),
        ("30 15 2 * * 1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 5, 2, 15, 30, tzinfo=UTC)),  # Monday
        ("0 0 0 29 2 *", datetime(2026, 3, 1, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_ncrontab_six_fields(expression: str, after: datetime, expected: datetime) -> None:
    assert next_fire(expression, after) == expected


@pytest.mark.parametrize("expression", ["*/5 * * * *", "61 * * * * *", "0 0 0 * * * *", "nonsense"])
def test_ncrontab_refuses_what_the_host_refuses(expression: str) -> None:
    with pytest.raises(ValueError, match="six valid fields"):
        next_fire(expression, datetime(2026, 1, 1, tzinfo=UTC))
