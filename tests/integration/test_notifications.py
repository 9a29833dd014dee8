"""Incidents reach people once: the webhook receiver in the sandbox captures what is sent, the
notifications table makes repeats (redelivered steps, retries) no-ops, and the URL is never logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain.messages import new_run
from shared.reporting.notify import Incident
from shared.runs import Outcome, Status
from tests.support.healer_env import Worker, healer_for, inject_and_wait, make_settings, outcome_of, queue_client

pytestmark = pytest.mark.integration


@pytest.fixture
def notified(world: Any, azurite: Any) -> Any:
    settings = make_settings(world, azurite, notify_webhook=world.endpoints()["notify_webhook_url"])
    healer = healer_for(settings)
    return healer, Worker(healer, queue_client(settings))


def test_an_escalation_is_notified_once(world: Any, notified: Any, caplog: pytest.LogCaptureFixture) -> None:
    healer, worker = notified
    caplog.set_level(logging.DEBUG)
    world.inject("healer-not-admin", "contoso")
    msg = new_run("contoso:export-1:adx-1", "timer")
    healer.services.queue.send(msg.to_json())
    worker.run_until(outcome_of(worker, "escalated"), 30)
    assert len(world.notifications) == 1
    sent = world.notifications[0]
    assert sent["incident"]["kind"] == "escalated" and sent["incident"]["target"] == "contoso:export-1:adx-1"
    assert sent["incident"]["correlation_id"] == msg.correlation_id
    assert sent["text"].startswith("iotc-adx-healer: contoso:export-1:adx-1: escalated: principal-missing")
    assert "not Database Admin" in sent["text"] and sent["incident"]["detail"]["diagnosis"] == "healer-not-admin"
    # The same step delivered again, and the next detection's start: nothing new reaches people.
    healer.handle(msg)
    healer.handle(new_run("contoso:export-1:adx-1", "timer"))
    assert len(world.notifications) == 1
    row = healer.services.store.notifications.get_entity("contoso:export-1:adx-1", f"escalated:{msg.run_id}")
    assert row["Status"] == "sent"
    assert world.webhook_token not in caplog.text


def test_repeats_of_one_incident_send_once_and_a_failed_send_is_retried(world: Any, notified: Any) -> None:
    healer, _ = notified
    notifier = healer.services.notifier
    now = datetime.now(UTC)
    incident = Incident("readd-failed", "fabrikam:export-1:adx-1", "a" * 32, "corr-1", "listed again: False", now)
    assert notifier.raise_incident(incident) is True
    assert notifier.raise_incident(incident) is False
    assert len(world.notifications) == 1
    # The receiver refuses (a rotated token): the claim is kept as failed, and sent again later.
    token, world.webhook_token = world.webhook_token, "rotated"
    other = Incident("data-not-recovered", "fabrikam:export-1:adx-1", "b" * 32, "corr-2", "gap", now)
    assert notifier.raise_incident(other) is True
    assert healer.services.store.notifications.get_entity(other.target, other.incident_id)["Status"] == "failed"
    world.webhook_token = token
    later = Incident(other.kind, other.target, other.run_id, other.correlation_id, "gap", now + timedelta(minutes=1))
    assert notifier.raise_incident(later) is True
    assert [n["incident"]["kind"] for n in world.notifications] == ["readd-failed", "data-not-recovered"]
    assert notifier.raise_incident(later) is False


def test_without_a_webhook_incidents_are_recorded_once(world: Any, azurite: Any) -> None:
    healer = healer_for(make_settings(world, azurite))
    target = healer.target("contoso:export-1:adx-1")
    msg = new_run(target.key, "timer")
    for _ in range(3):  # a redelivered step writes the same history again
        for observe in healer.services.observers:
            observe(target.key, msg, Outcome(Status.ESCALATED, "needs a person"), None, None)
    rows = list(healer.services.store.notifications.list_entities())
    assert [(r["Kind"], r["Status"]) for r in rows] == [("escalated", "recorded")]
    assert world.notifications == []


def test_a_bad_webhook_setting_is_refused_without_echoing_it() -> None:
    from shared.config.settings import load_settings
    from shared.domain.targets import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(notify_webhook="ftp://hooks.example.com/services/SECRET123", targets="[]")
    assert "HEALER_NOTIFY_WEBHOOK" in str(caught.value) and "SECRET123" not in str(caught.value)


def test_a_readd_the_healer_cannot_do_is_one_readd_failed_incident(world: Any, azurite: Any) -> None:
    settings = make_settings(
        world,
        azurite,
        notify_webhook=world.endpoints()["notify_webhook_url"],
        refresh_wait_seconds=1,
        remedy_order="refresh",  # the drop/wait/re-add is what leaves a re-add pending
    )
    healer = healer_for(settings)
    worker = Worker(healer, queue_client(settings))
    world.start_exporter(interval_s=0.2)
    try:
        inject_and_wait(world, "stale-permission", "contoso")
    finally:
        world.stop_exporter()
    worker.enqueue_start("contoso:export-1:adx-1")
    worker.run_until(lambda: healer.services.store.load("contoso:export-1:adx-1").pending_readd is not None, 20)
    # Someone takes Database Admin away from the healer between the drop and the re-add.
    db = world.cluster.database("devicedata")
    db.principals[:] = [a for a in db.principals if not (a.fqn.matches(world.healer) and a.role == "admins")]
    worker.run_until(outcome_of(worker, "escalated"), 20)
    assert healer.services.store.load("contoso:export-1:adx-1").pending_readd is not None  # kept for the sweep
    healer.sweep()  # tries again, still blocked: no second notification
    healer.sweep()
    kinds = [n["incident"]["kind"] for n in world.notifications]
    assert kinds == ["readd-failed"]
    assert "not Database Admin" in world.notifications[0]["text"]
