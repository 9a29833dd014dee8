"""The run engine's units on the in-memory stand-ins: a healer with chosen settings and principals,
a run put in phase `planned` holding the lease (where a remedy begins), and small stand-ins for
what verification reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from shared.adapters.iotcentral import IoTCentralAdapter
from shared.adapters.iotcentral_model import ExportStatus, IotcError
from shared.adapters.kusto import KustoAdapter
from shared.adapters.kusto_errors import AdxError
from shared.domain.messages import RemediationMessage, new_run
from shared.domain.plan import Plan
from shared.domain.principals import Assignment
from shared.runs import Services
from shared.runs.base import IDLE, OTHER_RUN, PLANNED
from shared.runs.fencing import Run
from shared.runs.reading import Reading
from shared.runs.remedy import Step
from tests.support.model_fakes import AdxModel, FakeClock, FakeIotc, FakeKusto, Harness, MemoryQueue, MemoryStore
from tests.support.model_target import FQN, NOTES, OBJECT, TARGET, TENANT, model_settings

# Principals of the same database that no run on TARGET may touch.
BYSTANDERS = (
    Assignment("database", "admins", f"aadapp=0b4f8e1a-0000-4000-8000-0000000000aa;{TENANT}", "", "", "ops"),
    Assignment("database", "viewers", f"aaduser=ana@contoso.com;{TENANT}", "", "", "analyst"),
    Assignment("database", "ingestors", f"aadapp=0b4f8e1a-0000-4000-8000-0000000000bb;{TENANT}", "", "", "other app"),
)
THE_PRINCIPAL = Assignment("database", "ingestors", FQN, OBJECT, "", NOTES)


def unit_harness(
    *,
    held: bool = True,
    stale: bool = True,
    bystanders: bool = True,
    checkpoint: Any = None,
    **settings: Any,
) -> Harness:
    """A healer on the stand-ins. `held`: the target's principal holds ingestors; `stale`: it is
    denied anyway (a refresh or a re-creation heals it). `settings` override the model's."""
    clock = FakeClock()
    rows = [THE_PRINCIPAL] if held else []
    adx = AdxModel(clock, "devicedata", rows=rows + (list(BYSTANDERS) if bystanders else []))
    if held and stale:
        adx.stale.add(FQN.lower())
    store, queue = MemoryStore(), MemoryQueue(clock)
    services = Services(
        model_settings().model_copy(update=settings),
        {TARGET.key: TARGET},
        store,
        queue,
        cast(Any, lambda url: cast(KustoAdapter, FakeKusto(adx))),
        cast(IoTCentralAdapter, FakeIotc(adx, FQN)),
        clock=clock,
        checkpoint=checkpoint or (lambda name: None),
    )
    return Harness(services, adx, clock, store, queue)


def iotc_of(h: Harness) -> FakeIotc:
    return cast(FakeIotc, h.services.iotc)


def planned(h: Harness, msg: RemediationMessage | None = None) -> tuple[Step, Reading, Plan]:
    """A fresh run holding the lease in phase `planned`, with what it read and planned: where
    every remedy's `begin` is called."""
    msg = msg or new_run(TARGET.key, "timer")
    run = Run(h.services, TARGET.key, msg.run_id)
    assert run.acquire() is not None
    reading, plan = h.healer.plan(TARGET, msg.correlation_id)
    run.transition({OTHER_RUN, IDLE, PLANNED}, PLANNED)
    return Step(h.healer, run, TARGET, msg), reading, plan


def bystanders_of(h: Harness) -> list[Assignment]:
    return [a for a in h.adx.rows if a.fqn.lower() != FQN.lower()]


def touched(h: Harness) -> set[str]:
    """Every principal a role change was sent for."""
    return {fqn for _, _, fqn in h.adx.log}


def journal(h: Harness, run_id: str) -> list[tuple[str, str]]:
    return [(r["Step"], r["Status"]) for r in h.store.read_journal(TARGET.key, run_id)]


# ---------------------------------------------------------------- what verification reads


@dataclass
class CountingKusto:
    """The two reads verification makes of ADX: the row count and the table's policies."""

    rows: int = 0
    policies: set[str] = field(default_factory=lambda: {"ingestiontime"})
    fail_count: AdxError | None = None
    fail_policies: bool = False
    asked_since: list[datetime] = field(default_factory=list)

    def rows_since(self, database: str, table: str, since: datetime) -> int:
        self.asked_since.append(since)
        if self.fail_count is not None:
            raise self.fail_count
        return self.rows

    def policy_enabled(self, database: str, table: str, policy: str) -> bool:
        if self.fail_policies:
            raise AdxError("ServiceError", "timed out", transient=True, status=504)
        return policy in self.policies


@dataclass
class StatusIotc:
    """IoT Central's export status for the target's destination, and its devices."""

    destination_status: str = "healthy"
    enabled: bool = True
    errors: tuple[tuple[str, str], ...] = ()
    last_export: str | None = None
    authorization: str = "systemAssignedManagedIdentity"
    devices_list: list[dict[str, Any]] = field(default_factory=lambda: [{"id": "d1", "simulated": False}])
    fail: IotcError | None = None

    def status(self, app: str, export_id: str, destination_id: str) -> ExportStatus:
        if self.fail is not None:
            raise self.fail
        export = {"lastExportTime": self.last_export} if self.last_export else {}
        destination = {"authorization": {"type": self.authorization}}
        return ExportStatus(
            export_id,
            self.enabled,
            self.destination_status,
            self.errors,
            destination_id,
            self.destination_status,
            self.errors,
            destination,
            export,
        )

    def devices(self, app: str) -> list[dict[str, Any]]:
        return list(self.devices_list)


def adapters(kusto: CountingKusto, iotc: StatusIotc) -> tuple[KustoAdapter, IoTCentralAdapter]:
    return cast(KustoAdapter, kusto), cast(IoTCentralAdapter, iotc)
