"""The run machine against a model: random deliveries, duplicates, delays, lease expiries, crashes,
ADX faults, the healer losing and regaining Database Admin, the target removed and re-added.

Invariants after every step:
  1. never two drops of the principal without a re-add between;
  2. never side effects of two runs of the target interleaved (run A, then B, then A again);
  3. after a sweep past a re-add's due time plus the grace, with ADX up and the healer admin, the
     principal is back unless a live lease holds the target (someone is re-adding it right now);
and at the end, after quiescence, the principal holds exactly its roles (role and notes) and the
export is enabled (HEALER_TOGGLE_EXPORT is drawn both ways).

At least HEALER_MODEL_EXAMPLES (default 2000) examples per run; the count is reported.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sandbox.waiting import wait_for
from shared.iotcentral import IoTCentralAdapter
from shared.kusto import KustoAdapter
from shared.messages import new_run, parse_message
from shared.principals import Assignment
from shared.runs import Healer, Services
from shared.runs.sweep import sweep
from shared.settings import Settings
from shared.targets import Target
from tests.model_fakes import AdxModel, FakeClock, FakeIotc, FakeKusto, MemoryQueue, MemoryStore

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OBJECT = "0b4f8e1a-0000-4000-8000-000000000001"
FQN = f"aadapp={OBJECT};{TENANT}"
NOTES = "IoT Central contoso data export"
TARGET = Target(
    app="contoso",
    export_id="export-1",
    destination_id="adx-1",
    cluster_url="https://model.westeurope.kusto.windows.net",
    database="devicedata",
    table="DeviceTelemetry",
    principal={"object_id": OBJECT, "tenant_id": TENANT},  # type: ignore[arg-type]
    role="ingestors",  # the model's principal holds Ingestor: a denial is a stale permission
)
EXAMPLES = int(os.environ.get("HEALER_MODEL_EXAMPLES", "2000"))
STATS = {"examples": 0, "steps": 0, "drops": 0, "crashes": 0, "healed": 0, "stalls": 0}


class Crash(Exception):
    pass


def model_settings() -> Settings:
    values: dict[str, Any] = {
        "mode": "enforce",
        "refresh_wait_seconds": 60,
        "sweep_grace_seconds": 120,
        "verify_poll_seconds": 60,
        "verify_deadline_seconds": 300,
        "cooldown_seconds": 0,
        "max_attempts": 50,
        "backfill": "off",  # the model is about principals; the backfill phase has its own tests
        "remedy_order": "refresh",  # the model is the refresh's; re-creating a destination has its own tests
    }
    return Settings(**values)


@dataclass
class Stall:
    """A worker stopped at a checkpoint (a long GC pause, a slow call) while the world goes on."""

    countdown: int
    message_id: int
    thread: threading.Thread = field(init=False)
    paused: threading.Event = field(default_factory=threading.Event)
    woken: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class RunModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        STATS["examples"] += 1
        self.clock = FakeClock()
        self.adx = AdxModel(
            self.clock, "devicedata", rows=[Assignment("database", "ingestors", FQN, OBJECT, "", NOTES)]
        )
        self.settings = model_settings()
        self.store = MemoryStore()
        self.queue = MemoryQueue(self.clock)
        self.crash_after: int | None = None
        self.iotc = FakeIotc(self.adx, FQN)
        self.services = Services(
            self.settings,
            {TARGET.key: TARGET},
            self.store,
            self.queue,
            cast(Any, lambda url: cast(KustoAdapter, FakeKusto(self.adx))),
            cast(IoTCentralAdapter, self.iotc),
            clock=self.clock,
            checkpoint=self._checkpoint,
        )
        self.healer = Healer(self.services)
        self.stall: Stall | None = None

    def _checkpoint(self, name: str) -> None:
        stall = self.stall
        if stall is not None and threading.current_thread() is stall.thread and not stall.woken.is_set():
            stall.countdown -= 1
            if stall.countdown < 0:
                stall.paused.set()
                stall.woken.wait()
            return
        if self.crash_after is not None:
            self.crash_after -= 1
            if self.crash_after < 0:
                self.crash_after = None
                STATS["crashes"] += 1
                raise Crash(name)

    # ------------------------------------------------------------------ the world

    @initialize(trigger=st.sampled_from(["timer", "alert"]), toggle=st.booleans())
    def it_starts_broken(self, trigger: str, toggle: bool) -> None:
        # HEALER_TOGGLE_EXPORT both ways: the toggle adds a phase between the re-add and verification
        self.settings = self.services.settings = self.settings.model_copy(update={"toggle_export": toggle})
        self.adx.stale.add(FQN.lower())
        self.queue.send(new_run(TARGET.key, trigger).to_json())  # type: ignore[arg-type]

    @rule()
    def break_the_principal(self) -> None:
        """IoT Central's identity goes stale in ADX (listed, yet denied)."""
        if self.adx.holds(FQN):
            self.adx.stale.add(FQN.lower())

    @rule(trigger=st.sampled_from(["timer", "alert", "http", "retry"]))
    def a_start_is_queued(self, trigger: str) -> None:
        self.queue.send(new_run(TARGET.key, trigger).to_json())  # type: ignore[arg-type]

    @rule(data=st.data())
    @precondition(lambda self: bool(self.queue.messages))
    def a_message_is_duplicated(self, data: st.DataObject) -> None:
        message = data.draw(st.sampled_from(sorted(self.queue.messages)))
        self.queue.send(self.queue.messages[message].body)

    @rule(seconds=st.sampled_from([1, 30, 61, 130, 301, 700]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(failing=st.booleans())
    def adx_faults(self, failing: bool) -> None:
        self.adx.failing = failing

    @rule(admin=st.booleans())
    def healer_admin(self, admin: bool) -> None:
        self.adx.healer_admin = admin

    @rule(configured=st.booleans())
    def target_configured(self, configured: bool) -> None:
        if configured:
            self.services.targets[TARGET.key] = TARGET
        else:
            self.services.targets.pop(TARGET.key, None)

    # ------------------------------------------------------------------ the healer

    @rule(data=st.data(), crash=st.one_of(st.none(), st.none(), st.integers(0, 12)))
    def a_worker_takes_a_message(self, data: st.DataObject, crash: int | None) -> None:
        visible = self.queue.visible()
        if not visible:
            self.clock.advance(30)  # the worker waits for the next message to come due
            return
        message = data.draw(st.sampled_from(visible))
        message.dequeue_count += 1
        message.visible_at = self.clock() + timedelta(seconds=600)  # invisible while handled
        self.crash_after = crash
        try:
            self.healer.handle(parse_message(message.body))
        except Crash:  # the worker died: the message comes back when its visibility runs out
            return
        except Exception:  # a failed invocation: the host retries soon, then poisons
            if message.dequeue_count >= 5:
                del self.queue.messages[message.id]
            else:
                message.visible_at = self.clock() + timedelta(seconds=10)
            return
        finally:
            self.crash_after = None
            STATS["steps"] += 1
        del self.queue.messages[message.id]

    @rule(data=st.data(), crash=st.one_of(st.none(), st.none(), st.integers(0, 12)))
    def another_worker_takes_a_message(self, data: st.DataObject, crash: int | None) -> None:
        self.a_worker_takes_a_message(data, crash)

    @rule(data=st.data(), at=st.integers(0, 12))
    @precondition(lambda self: self.stall is None and bool(self.queue.visible()))
    def a_worker_stalls(self, data: st.DataObject, at: int) -> None:
        message = data.draw(st.sampled_from(self.queue.visible()))
        message.dequeue_count += 1
        message.visible_at = self.clock() + timedelta(seconds=600)
        stall = Stall(at, message.id)
        STATS["stalls"] += 1

        def work() -> None:
            try:
                self.healer.handle(parse_message(message.body))
                self.queue.messages.pop(message.id, None)
            except Exception:
                pass  # the message comes back when its visibility runs out
            finally:
                stall.done.set()

        stall.thread = threading.Thread(target=work, daemon=True)
        self.stall = stall
        stall.thread.start()
        assert wait_for(lambda: stall.paused.is_set() or stall.done.is_set(), 30, interval=0.0005), "worker hung"
        if stall.done.is_set():
            self.stall = None

    @rule()
    @precondition(lambda self: self.stall is not None)
    def the_stalled_worker_wakes(self) -> None:
        self._wake()

    def _wake(self) -> None:
        stall = self.stall
        if stall is None:
            return
        stall.woken.set()
        stall.done.wait(30)
        assert stall.done.is_set(), "a woken worker never finished"
        self.stall = None

    @rule(crash=st.one_of(st.none(), st.integers(0, 8)))
    def the_timer_sweeps(self, crash: int | None) -> None:
        self.crash_after = crash
        try:
            sweep(self.healer)
        except Crash:
            return
        finally:
            self.crash_after = None
        self._readded_when_overdue()

    # ------------------------------------------------------------------ invariants

    def _readded_when_overdue(self) -> None:
        if self.adx.failing or not self.adx.healer_admin:
            return
        state = self.store.load(TARGET.key)
        pending = state.pending_readd
        if pending is None:
            return
        deadline = pending.due + timedelta(seconds=self.settings.sweep_grace_seconds)
        if pending.readded_at is not None and self.adx.holds(FQN):
            return  # re-added: the record waits for the drop's window to pass before it is discharged
        if state.retry_at is not None and self.clock() < state.retry_at:
            return  # refused earlier: the sweep backs off
        if self.clock() >= deadline and not state.leased(self.clock()):
            raise AssertionError(f"the sweep ran at {self.clock()} past {deadline} and left the principal dropped")

    @invariant()
    def never_two_drops_without_a_readd(self) -> None:
        dropped = False
        for verb, _, fqn in self.adx.log:
            if fqn != FQN.lower():
                continue
            if verb == "drop":
                assert not dropped, f"dropped twice without a re-add between: {self.adx.log}"
                dropped = True
            else:
                dropped = False

    @invariant()
    def runs_never_interleave(self) -> None:
        order: list[str] = []
        for row in self.store.read_journal(TARGET.key):
            if row["Status"] == "intent" and (not order or order[-1] != row["RunId"]):
                order.append(row["RunId"])
        assert len(order) == len(set(order)), f"side effects of runs interleaved: {order}"

    def teardown(self) -> None:
        """Quiescence: faults cleared, the target configured, workers and the timer run until
        nothing is left to do. Then the principal holds exactly its role, with its notes, and the
        export is enabled."""
        self._wake()
        self.adx.failing, self.adx.healer_admin = False, True
        self.services.targets[TARGET.key] = TARGET
        for _ in range(200):
            state = self.store.load(TARGET.key)
            idle = state.pending_readd is None and not state.pending_enable and not state.leased(self.clock())
            if not self.queue.messages and idle:
                break
            self.clock.advance(61)
            sweep(self.healer)
            for message in self.queue.visible():
                self.a_worker_takes_a_message_plain(message.id)
        state = self.store.load(TARGET.key)
        STATS["drops"] += sum(1 for verb, _, _ in self.adx.log if verb == "drop")
        STATS["healed"] += sum(1 for row in self.store.history_rows if row.get("Outcome") == "healed")
        assert state.pending_readd is None, "a re-add is still pending after quiescence"
        held = [(a.role, a.notes) for a in self.adx.rows if a.fqn.lower() == FQN.lower()]
        assert held == [("ingestors", NOTES)], f"after quiescence the principal holds {held}"
        assert self.iotc.enabled and not state.pending_enable, "the export was left disabled"

    def a_worker_takes_a_message_plain(self, message_id: int) -> None:
        message = self.queue.messages.get(message_id)
        if message is None:
            return
        message.dequeue_count += 1
        try:
            self.healer.handle(parse_message(message.body))
        except Exception:
            if message.dequeue_count >= 5:
                del self.queue.messages[message.id]
            else:
                message.visible_at = self.clock() + timedelta(seconds=10)
            return
        del self.queue.messages[message.id]


RunModel.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class TestRunModel(RunModel.TestCase):  # type: ignore[valid-type,misc]
    @classmethod
    def tearDownClass(cls) -> None:
        assert STATS["examples"] >= EXAMPLES, STATS  # pytest's summary reports the counts
