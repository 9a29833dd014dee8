"""The run machine on the in-memory stand-ins around the model's target, and what the cases read from it."""

from __future__ import annotations

from typing import Any, cast

from shared.iotcentral import IoTCentralAdapter
from shared.kusto import KustoAdapter
from shared.principals import Assignment
from shared.runs import Services
from tests.support.model_fakes import AdxModel, FakeClock, FakeIotc, FakeKusto, Harness, MemoryQueue, MemoryStore
from tests.support.model_target import FQN, NOTES, OBJECT, TARGET, model_settings


def harness(checkpoint: Any = None) -> Harness:
    clock = FakeClock()
    adx = AdxModel(clock, "devicedata", rows=[Assignment("database", "ingestors", FQN, OBJECT, "", NOTES)])
    adx.stale.add(FQN.lower())
    store, queue = MemoryStore(), MemoryQueue(clock)
    services = Services(
        model_settings(),
        {TARGET.key: TARGET},
        store,
        queue,
        cast(Any, lambda url: cast(KustoAdapter, FakeKusto(adx))),
        cast(IoTCentralAdapter, FakeIotc(adx, FQN)),
        clock=clock,
        checkpoint=checkpoint or (lambda name: None),
    )
    return Harness(services, adx, clock, store, queue)


def owes_enable(state: Any) -> bool:
    """The export's re-enable is owed (not yet observed; the record itself settles later)."""
    return state.pending_enable is not None and state.pending_enable.enabled_at is None


def held(h: Harness) -> list[tuple[str, str]]:
    return [(a.role, a.notes) for a in h.adx.rows if a.fqn.lower() == FQN.lower()]


class Crash(Exception):
    pass
