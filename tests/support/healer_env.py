"""A healer wired to the sandbox and Azurite, plus a small queue worker standing in for the host."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.storage.queue import QueueClient

from sandbox import sdk
from sandbox.azurite import Azurite
from sandbox.healer_config import targets_for
from sandbox.world import World
from shared.config.settings import Settings
from shared.domain.messages import MalformedMessage, new_run, parse_message
from shared.runs import Healer, Outcome
from shared.services import build_services
from tests.support.helpers import wait_until


def make_settings(world: World, azurite: Azurite, **overrides: Any) -> Settings:
    return Settings(**settings_values(world, azurite, **overrides))


def settings_values(world: World, azurite: Azurite, **overrides: Any) -> dict[str, Any]:
    """Settings as plain values (they can travel to a worker process), on fresh tables and queue."""
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "mode": "enforce",
        "targets": json.dumps(targets_for(world)),
        "refresh_wait_seconds": 1,
        "verify_poll_seconds": 1,
        "verify_deadline_seconds": 15,
        "cooldown_seconds": 0,
        "lease_seconds": 120,
        "clock_skew_seconds": 0,  # one machine, one clock: the lease margin is the renewal alone
        "act_lands_within_seconds": 0,  # the sandbox answers every command before the call returns
        "kusto_server_timeout_seconds": 5,
        "http_timeout_seconds": 5,
        "http_retry_budget_seconds": 10,
        "sweep_grace_seconds": 0,
        "kusto_retry_budget_seconds": 20,
        "queue_name": f"healer-{suffix}",
        "table_prefix": f"h{suffix}",
        "iotc_base_url": world.endpoints()["iotcentral_base_url"],
        "arm_url": world.endpoints()["arm_url"],
        "storage_connection_string": azurite.connection_string,
        "backfill": "off",  # tests of backfill turn it on; the others end their runs at verification
    }
    values.update(overrides)
    return values


def healer_for(settings: Settings) -> Healer:
    services = build_services(settings, sdk.credential())
    services.queue.ensure()  # the host creates the queue it listens on; tables come with the first write
    return Healer(services)


def queue_client(settings: Settings) -> QueueClient:
    from shared.adapters.storage import queue_client as client

    result: QueueClient = client(settings.queue_name, settings.storage_connection_string)
    return result


class Crash(Exception):
    """A worker dying at a chosen point (raised from the healer's checkpoint hook)."""


@dataclass
class Worker:
    """Receives remediation messages as the Functions host does: a message stays invisible while it
    is processed; a failure makes it visible again after `visibility_s` (the host's retry delay);
    after `max_dequeue` tries, or when malformed, it goes to the poison list."""

    healer: Healer
    queue: QueueClient
    visibility_s: int = 2
    max_dequeue: int = 5
    outcomes: list[Outcome] = field(default_factory=list)
    poison: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    crashes: int = 0

    def enqueue_start(self, target: str, trigger: str = "timer") -> str:
        msg = new_run(target, trigger)  # type: ignore[arg-type]
        self.healer.services.queue.send(msg.to_json())
        return msg.run_id

    def poll_once(self) -> int:
        handled = 0
        for message in self.queue.receive_messages(max_messages=1, visibility_timeout=60):
            handled += 1
            try:
                parsed = parse_message(message.content)
            except MalformedMessage as exc:
                self.poison.append(str(exc))
                self.queue.delete_message(message)
                continue
            try:
                self.outcomes.append(self.healer.handle(parsed))
            except Exception as exc:  # the host retries any failure of the function
                if isinstance(exc, Crash):
                    self.crashes += 1
                else:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                if (message.dequeue_count or 0) >= self.max_dequeue:
                    self.poison.append(f"gave up after {message.dequeue_count} tries: {exc}")
                    self.queue.delete_message(message)
                else:
                    self.queue.update_message(message, visibility_timeout=self.visibility_s)
                continue
            self.queue.delete_message(message)
        return handled

    def run_until(self, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll_once()
            if done():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s}s; outcomes so far: {[o.status for o in self.outcomes]}")

    def run_in_thread(self, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.is_set():
                self.poll_once()
                stop.wait(0.05)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread


def changing_commands(world: World, since: int = 0) -> list[str]:
    return [
        text
        for _, path, text in world.cluster.command_log[since:]
        if text.lstrip().startswith((".add", ".drop", ".set", ".create", ".alter"))
    ]


def outcome_of(worker: Worker, status: str) -> Callable[[], bool]:
    return lambda: any(o.status == status for o in worker.outcomes)


def inject_and_wait(world: World, fault: str, app: str = "contoso", timeout_s: float = 10) -> None:
    """Break an app's export and wait until IoT Central reports it (the exporter must be running)."""
    world.inject(fault, app)
    wait_until(
        lambda: world.iotc.apps[app].exports["export-1"].get("status") == "error",
        timeout_s,
        f"{app}'s export to break after {fault}",
    )
