"""The run machine on the in-memory stand-ins around the model's target, and what the cases read from it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.support.model_fakes import Harness
from tests.support.model_target import FQN
from tests.support.run_units import unit_harness


def harness(checkpoint: Any = None) -> Harness:
    """The model's target, its principal holding ingestors yet denied, and no bystanders."""
    return unit_harness(bystanders=False, checkpoint=checkpoint)


def crash_once_at(point: str) -> Callable[[str], None]:
    """A checkpoint hook: the worker dies the first time it reaches `point`, never again."""
    pending = [point]

    def checkpoint(name: str) -> None:
        if pending and name == pending[0]:
            pending.clear()
            raise Crash(name)

    return checkpoint


def hold_in_flight(h: Harness, verb: str, thread: str) -> tuple[threading.Event, threading.Event]:
    """A command sent from the thread named `thread` stops on its way until woken: a late act.
    Returns (paused, woken): set once the command is held, and the event that lets it land."""
    paused, woken = threading.Event(), threading.Event()

    def in_flight(sent: str) -> None:
        if sent == verb and threading.current_thread().name == thread:
            paused.set()
            woken.wait(10)

    h.adx.before_command = in_flight
    return paused, woken


def owes_enable(state: Any) -> bool:
    """The export's re-enable is owed (not yet observed; the record itself settles later)."""
    return state.pending_enable is not None and state.pending_enable.enabled_at is None


def held(h: Harness) -> list[tuple[str, str]]:
    return [(a.role, a.notes) for a in h.adx.rows if a.fqn.lower() == FQN.lower()]


class Crash(Exception):
    pass
