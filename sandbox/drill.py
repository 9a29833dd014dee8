"""The drill: every failure scenario, end to end, through the real triggers.

Azurite, the sandbox and the local trigger runner start; one IoT Central app per scenario exports
to ADX; each scenario breaks its app's export and waits for the healer - started by its timer
(or, in `alert-webhook`, by an Azure Monitor alert posted to /api/alerts) - to heal it or to
escalate. Some change the healer's app settings mid-run (a target removed, observe mode switched
on: the host restarts, as in Azure), one has another app answer garbage meanwhile, one fails every
delivery until the host poisons it. The report says, per scenario, what happened and what it cost.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from rich.console import Console, Group, JustifyMethod
from rich.live import Live
from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sandbox import backfill_fleet, scenarios
from sandbox.arm_ids import ADX_RESOURCE_ID
from sandbox.azurite import ACCOUNT_KEY, Azurite
from sandbox.healer_config import ALERT_AUDIENCE, app_settings
from sandbox.runner import Runner
from sandbox.waiting import wait_for
from sandbox.world import World

DATABASE = "devicedata"


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str
    fault: str | None
    expected: str  # healed | escalated | planned | healthy
    database: str = DATABASE
    auth: str = "systemAssignedManagedIdentity"  # how the app's destination authorizes
    configured_ids: str = "both"  # which ids of the app's identity the healer is configured with
    trigger: str = "fault"  # "fault": the timer finds the broken export; "http": a manual heal
    # Backfill scenarios: how the app's export and devices look (see BACKFILLS), and how its
    # backfill must end ("backfilled", or "backfill-refused" with nothing ingested).
    backfill: str | None = None
    backfill_expected: str = "backfilled"
    # An app beside this one whose API answers garbage (HTTP 200, an HTML page) throughout.
    neighbour: str | None = None


# Backfill scenarios' apps: the table shape (backfill_fleet.VARIANTS) and what is special about them.
BACKFILLS: dict[str, dict[str, Any]] = {
    "enriched": {"variant": "enriched", "creation_lag_ms": 300},
    "created-ts": {"creation_lag_ms": 300, "ts_reading": "creation"},
    "property-filter": {"filter": 'SELECT * FROM devices WHERE firmware != "1.0"'},
    "simulated": {"simulated": ["thermostat-1", "pump-1"]},
    "beyond-retention": {},
    "rls": {"rls": True},
}
BACKFILL_OUTAGE_S = 30


SCENARIOS = [
    Scenario("stale-permission", "stale", "stale-permission", "healed"),
    Scenario("principal-removed", "removed", "principal-removed", "healed"),
    Scenario("identity-rotated", "rotated", "identity-rotated", "healed"),
    Scenario("table-level-only", "tablelevel", "table-level-only", "healed"),
    # Its own database: demoting the healer must not starve the other scenarios.
    Scenario("healer-not-admin", "notadmin", "healer-not-admin", "escalated", "plantdata"),
    Scenario("table-missing", "missing", "table-missing", "escalated"),
    Scenario("crash-after-drop", "crash", "stale-permission", "healed"),
    Scenario("throttled", "throttled", "stale-permission", "healed"),
    Scenario("alert-webhook", "alerted", "principal-removed", "healed"),
    Scenario("observe-mode", "observed", "principal-removed", "planned"),
    # Two device templates (one with a component), a filter and a jq transform; the export has been
    # failing for OUTAGE_S when the healer sees it. Healed, then backfilled from the query API.
    Scenario("outage-backfill", "outage", "principal-removed", "healed"),
    # Fidelity to ADX and IoT Central (sandbox/fidelity.py).
    Scenario("ids-normalised", "normalised", None, "healthy", configured_ids="object", trigger="http"),
    Scenario("ingestor-needs-admin", "ingestoronly", "ingestor-only", "healed"),
    Scenario("destination-stale", "staledest", "destination-stale", "healed"),
    Scenario("service-principal-destination", "spdest", "principal-removed", "healed", auth="servicePrincipal"),
    Scenario("access-denied-code", "tabledenied", "access-denied-code", "healed"),
    Scenario("restricted-view", "restricted", "restricted-view", "healed"),
    Scenario("unknown-identity", "unknownid", "unknown-identity", "escalated"),
    Scenario("database-missing", "nodb", "database-missing", "escalated", "lostdata"),
    # Backfills of exports as rich as real ones; each ends with rows missing and rows twice.
    Scenario("backfill-enriched", "enriched", "principal-removed", "healed", backfill="enriched"),
    # Devices stamp iothub-creation-time-utc everywhere here; backfill-enriched reads $ts as the
    # enqueued time (exact), this one as the device's creation time: no delivered row can be matched.
    Scenario(
        "backfill-creation-time",
        "createdts",
        "principal-removed",
        "healed",
        backfill="created-ts",
        backfill_expected="backfill-refused",
    ),
    Scenario(
        "backfill-property-filter",
        "propfilter",
        "principal-removed",
        "healed",
        backfill="property-filter",
        backfill_expected="backfill-refused",
    ),
    Scenario("backfill-simulated", "simulated", "principal-removed", "healed", backfill="simulated"),
    # Asked for by hand over a window that starts 7 days and 5 minutes ago.
    Scenario(
        "backfill-beyond-retention", "retention", None, "backfilled", trigger="backfill", backfill="beyond-retention"
    ),
    Scenario(
        "backfill-row-level-security",
        "rls",
        "principal-removed",
        "healed",
        backfill="rls",
        backfill_expected="backfill-refused",
    ),
    # Changes an operator makes while a run is under way, and a run that can never finish. Each ends
    # with nothing dropped, no export left disabled and no obligation left open.
    # HEALER_TOGGLE_EXPORT on; the target leaves HEALER_TARGETS with its export disabled (the app
    # settings change restarts the host mid-run): the run re-enables the export and stops.
    Scenario("target-removed-mid-run", "unlisted", "stale-permission", "skipped"),
    # Observe mode switched on between the drop and the re-add: the re-add still happens.
    Scenario("observe-mid-run", "observedlate", "stale-permission", "healed"),
    # Another app's API answers an HTML page with HTTP 200 meanwhile: this one is healed all the same.
    Scenario("garbage-neighbour", "besidegarbage", "principal-removed", "healed", neighbour="garbage"),
    # Every delivery of the remediation fails until the host moves it to the poison queue: the run is
    # escalated once, with one notification.
    Scenario("poisoned-remediation", "poisoned", "stale-permission", "escalated"),
]
OUTAGE_S = 300
WIDE = 120  # from this console width the drill's table shows every column
TERMINAL = {"healed", "escalated", "planned", "not-healed", "healthy", "backfilled"}


@dataclass
class Result:
    name: str
    expected_outcome: str
    outcome: str = "pending"
    healed: bool = False
    principal_lost: bool = False
    detected_by: str = ""
    diagnosis: str = ""
    actions: list[str] = field(default_factory=list)
    mttd_s: float | None = None
    mttr_s: float | None = None
    kusto_commands: int = 0
    changing_commands: int = 0
    busy_s: float = 0.0
    detail: str = ""
    # Backfill scenarios: the gap, and the table against what the export would have written.
    gap_s: float | None = None
    rows_expected: int | None = None
    rows_missing: int | None = None
    rows_duplicated: int | None = None
    rows_backfilled: int | None = None
    second_backfill_added: int | None = None
    backfill_queries: int | None = None
    backfill_outcome: str | None = None
    backfill_detail: str | None = None  # the first backfill's outcome detail (a refusal's reason)
    backfill_expected: str | None = None
    rows_written_for_simulated: int | None = None
    unrecoverable_s: int | None = None
    root_cause: dict[str, Any] | None = None
    # What the sandbox journaled for the fault (command, actor); the root cause must name it.
    recorded_change: dict[str, str] | None = None
    root_cause_as_recorded: bool | None = None
    notifications: int = 0
    expected_notification_count: int = 0  # expected_notifications, for the report
    # After the run: is the export enabled, and which obligations does the state still hold?
    export_enabled: bool | None = None
    obligations_left: list[str] = field(default_factory=list)
    neighbour_runs: int | None = None  # history rows the garbage-answering neighbour got meanwhile
    neighbour_error: str | None = None  # what detection said of the neighbour meanwhile

    @property
    def expected_notifications(self) -> int:
        """One per escalation; one per backfill that leaves data missing (refused, or older than the
        retention): the first backfill and the second one asked for by hand."""
        lost = self.backfill_expected == "backfill-refused" or bool(self.unrecoverable_s)
        return (1 if self.expected_outcome == "escalated" else 0) + (2 if lost else 0)

    @property
    def ok(self) -> bool:
        ok = (
            self.outcome == self.expected_outcome
            and not self.principal_lost
            and self.export_enabled is not False
            and not self.obligations_left
            and not self.neighbour_runs
            and (self.neighbour_runs is None or self.neighbour_error is not None)
            and self.root_cause_as_recorded is not False
            and self.notifications == self.expected_notifications
        )
        if self.backfill_expected == "backfill-refused":  # refused with its reason, nothing ingested, nothing twice
            return (
                ok
                and self.backfill_outcome == "backfill-refused"
                and self.rows_backfilled == 0
                and self.rows_duplicated == 0
                and self.second_backfill_added == 0
            )
        if self.rows_expected is not None or self.name == "outage-backfill" or self.backfill_expected:
            ok = ok and self.rows_missing == 0 and self.rows_duplicated == 0 and self.second_backfill_added == 0
            ok = ok and not self.rows_written_for_simulated
        return ok


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _principals(world: World, database: str) -> set[tuple[str, str, str]]:
    """(role, principal, notes); the principal by its object id, whichever id was typed when it was
    added (a refresh re-adds what ADX listed: the application id)."""
    db = world.cluster.databases.get(database)
    return {(a.role, a.listed_object_id(), a.notes) for a in db.principals} if db else set()


class Drill:
    def __init__(self, scenarios: list[Scenario], console: Console, state_dir: Path) -> None:
        self.scenarios = scenarios
        self.console = console
        self.state_dir = state_dir
        self.results = [
            Result(s.name, s.expected, backfill_expected=s.backfill_expected if s.backfill else None) for s in scenarios
        ]
        self.capture = _Capture()
        self.secrets: list[str] = []  # what must never appear in the captured log
        self.runs: list[Any] = []  # shared.reporting.report.incidents.ReportedRun of every target, for the HTML report
        self.capture.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    # ------------------------------------------------------------------ display

    def table(self) -> Table:
        """The scenarios as wide as the console allows: from 120 columns everything but the backfill
        in the table; narrower, the scenario, outcome, diagnosis and MTTR, the rest in `details`.
        No cell is ever cut: names keep their full width, the rest wraps."""
        wide = self.console.width >= WIDE
        table = Table(
            title="iotc-adx-healer drill",
            title_justify="left",
            box=None,
            header_style="bold underline",
            collapse_padding=True,
            pad_edge=False,
        )

        def column(name: str, whole: list[str] | None = None, justify: JustifyMethod = "left") -> None:
            longest = max((len(w) for w in whole or []), default=0)
            table.add_column(name, overflow="fold", min_width=longest or None, justify=justify)

        names = [r.name for r in self.results]
        outcomes = [self._outcome(r)[0] for r in self.results]
        diagnoses = [r.diagnosis for r in self.results]
        column("scenario", names)
        column("outcome", outcomes)
        if wide:
            column("detected", ["detected"])
        column("diagnosis", diagnoses)
        if wide:
            column("actions")
        column("MTTR s", justify="right")
        if wide:
            column("Kusto", ["24 (2)"], justify="right")
        for r, outcome in zip(self.results, outcomes, strict=True):
            style = self._outcome(r)[1]
            cells = [r.name, f"[{style}]{outcome}[/]"]
            if wide:
                cells.append(r.detected_by)
            cells.append(r.diagnosis)
            if wide:
                cells.append(", ".join(r.actions))
            cells.append(_num(r.mttr_s))
            if wide:
                done = r.outcome not in ("pending", "running")
                cells.append(f"{r.kusto_commands} ({r.changing_commands})" if done else "")
            table.add_row(*cells)
        return table

    @staticmethod
    def _outcome(r: Result) -> tuple[str, str]:
        if r.outcome in ("pending", "running"):
            return r.outcome, "yellow"
        return f"{r.outcome} {'✓' if r.ok else '✗'}", "green" if r.ok else "red"

    def details(self) -> list[str]:
        """What the table leaves out at this width, a line (wrapped, never cut) per scenario."""
        wide = self.console.width >= WIDE
        lines = []
        for r in self.results:
            if r.outcome in ("pending", "running"):
                continue
            parts = []
            if r.outcome != r.expected_outcome:
                parts.append(f"expected {r.expected_outcome}")
            by = "" if wide else f" by {r.detected_by or '-'}"
            parts.append(f"detected{by} in {_num(r.mttd_s) or '-'} s")
            if not wide:
                parts.append(f"actions {', '.join(r.actions) or 'none'}")
                parts.append(f"Kusto {r.kusto_commands} ({r.changing_commands} changing)")
            parts.append(f"busy {r.busy_s:.2f} s, notified {r.notifications}")
            if r.rows_expected is not None:
                parts.append(
                    f"backfill {_int(r.rows_backfilled)} in, {_int(r.rows_missing)} missing, "
                    f"{_int(r.rows_duplicated)} twice, a second one added {_int(r.second_backfill_added)}"
                )
            if parts:
                lines.append(f"{r.name}: {'; '.join(parts)}")
        return lines

    def live_view(self, scenarios: Progress) -> Group:
        # The progress line first: a terminal shorter than the table crops the bottom.
        return Group(scenarios, self.table())

    # ------------------------------------------------------------------ the run

    def run(self) -> list[Result]:
        root = logging.getLogger()
        root.addHandler(self.capture)
        previous_level = root.level
        root.setLevel(logging.INFO)
        saved_env = dict(os.environ)
        try:
            with Azurite() as azurite, World(seed=5) as world:
                world.start()
                world.attach_storage(azurite.connection_string, ACCOUNT_KEY)  # queued ingestion via Azurite
                for scenario in self.scenarios:
                    table = _table(scenario)
                    if scenario.name == "outage-backfill":
                        backfill_fleet.add_fleet_app(world, scenario.app, table, database=scenario.database)
                    elif scenario.backfill is not None:
                        _add_backfill_app(world, scenario, table)
                    else:
                        if scenario.neighbour:
                            world.add_app(
                                scenario.neighbour, database=scenario.database, table=_table(scenario, neighbour=True)
                            )
                        world.add_app(
                            scenario.app,
                            database=scenario.database,
                            table=table,
                            auth=scenario.auth,
                            configured_ids=scenario.configured_ids,
                        )
                world.start_exporter(interval_s=0.25)
                settings = app_settings(
                    world,
                    azurite,
                    HEALER_REFRESH_WAIT_SECONDS=2,
                    HEALER_VERIFY_POLL_SECONDS=1,
                    HEALER_VERIFY_DEADLINE_SECONDS=20,
                    HEALER_COOLDOWN_SECONDS=300,
                    HEALER_LEASE_SECONDS=150,
                    HEALER_KUSTO_SERVER_TIMEOUT_SECONDS=10,
                    # The SDKs log every request at INFO: asked for here, so the secret check covers them.
                    HEALER_AZURE_LOG_LEVEL="INFO",
                    HEALER_SWEEP_GRACE_SECONDS=30,
                    HEALER_KUSTO_RETRY_BUDGET_SECONDS=30,
                    HEALER_MAX_REMEDIATIONS_PER_CYCLE=5,
                    HEALER_BACKFILL="on",
                    HEALER_NOTIFY_WEBHOOK=world.endpoints()["notify_webhook_url"],
                    HEALER_UNKNOWN_IDENTITY_RETRY_SECONDS=3,
                )
                from shared import entrypoints

                entrypoints.reset()
                # On a terminal: the table redrawn as scenarios end, under it which one runs and for
                # how long. Elsewhere (a file, CI) rich prints only the final table, once.
                scenarios = Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=self.console,
                )
                task = scenarios.add_task("scenarios", total=len(self.scenarios))
                with (
                    Runner(
                        app_settings=settings, http_port=0, timer_interval_s=1.0, retry_delay_s=1, instances=2
                    ) as runner,
                    Live(
                        self.live_view(scenarios),
                        console=self.console,
                        refresh_per_second=4,
                        transient=False,
                        vertical_overflow="visible",
                    ) as live,
                ):
                    for scenario, result in zip(self.scenarios, self.results, strict=True):
                        result.outcome = "running"
                        scenarios.update(task, description=f"running {scenario.name}")
                        live.update(self.live_view(scenarios))
                        self._scenario(world, runner, scenario, result, lambda: live.update(self.live_view(scenarios)))
                        scenarios.advance(task)
                        live.update(self.live_view(scenarios))
                    live.update(self.table())  # the final picture: the table alone
                    self.secrets = [
                        runner.key,
                        world.directory.identity_header,
                        ACCOUNT_KEY,
                        world.webhook_token,
                        *world.sp_secrets.values(),
                    ]
                    from shared.reporting.report.incidents import collect

                    self.runs = collect(entrypoints.composition().healer.services.store, None, 5000)
                entrypoints.reset()
        finally:
            root.removeHandler(self.capture)
            root.setLevel(previous_level)
            os.environ.clear()
            os.environ.update(saved_env)
        return self.results

    def _scenario(
        self, world: World, runner: Runner, scenario: Scenario, result: Result, refresh: Callable[[], None]
    ) -> None:
        from shared import entrypoints

        key = f"{scenario.app}:export-1:adx-1"
        if not wait_for(lambda: world.iotc.apps[scenario.app].exports["export-1"].get("status") == "healthy", 15):
            result.outcome, result.detail = "not-started", "the export never became healthy"
            return
        if scenario.name == "observe-mode":
            runner.set_app_setting("HEALER_MODE", "observe")
            entrypoints.reset()
        targets = runner.settings["HEALER_TARGETS"]
        if scenario.name == "target-removed-mid-run":
            runner.set_app_setting("HEALER_TOGGLE_EXPORT", "true")
            entrypoints.reset()
        healer = entrypoints.composition().healer
        if scenario.name == "crash-after-drop":
            healer.services.checkpoint = _die_once_after("effect:drop-admins")
        if scenario.name == "target-removed-mid-run":
            # Right after the export was disabled, the target leaves the configuration; the settings
            # change restarts the host, so the delivery dies there and comes back to a host without it.
            kept = json.dumps([t for t in json.loads(targets) if t["app"] != scenario.app])
            healer.services.checkpoint = _once_at(
                "effect:disable-export", lambda: _restart(runner, "HEALER_TARGETS", kept)
            )
        if scenario.name == "observe-mid-run":  # between the drop and the re-add
            healer.services.checkpoint = _once_at(
                "enqueue:readd", lambda: _restart(runner, "HEALER_MODE", "observe", in_flight_dies=False)
            )
        if scenario.name == "poisoned-remediation":  # a fault in the worker hit on every delivery
            healer.services.checkpoint = _die_always_at("journal:plan:done")
        if scenario.name == "throttled":
            world.set_transport("kusto", throttle_rate=0.3, retry_after_s=1)
        options = BACKFILLS.get(scenario.backfill or "", {})
        if scenario.name in ("alert-webhook", "outage-backfill") or scenario.backfill:
            runner.pause_timer()
        world.iotc.ts_reading = options.get("ts_reading", "enqueued")
        if options.get("rls"):  # row-level security on the table: the read-back is filtered
            world.inject("row-level-security", scenario.app)
        healer_fqn = world.healer.fqn
        log_start = len(world.cluster.command_log)
        busy_start = runner.stats.busy_s
        started = time.monotonic()
        since = datetime.now(UTC)
        journaled: list[dict[str, str]] = []
        if scenario.neighbour:
            world.inject("gateway-html", scenario.neighbour)
        if scenario.fault:
            journaled = world.inject(scenario.fault, scenario.app).detail.get("journal") or []
        result.recorded_change = dict(journaled[0]) if journaled else None
        before = _principals(world, scenario.database)
        if scenario.name == "outage-backfill" or (scenario.backfill and scenario.fault):
            # The export stopped OUTAGE_S ago: its history moves back, the time since is lost telemetry.
            wait_for(lambda: world.iotc.apps[scenario.app].exports["export-1"].get("status") == "error", 10)
            scenarios.set_back(
                world, scenario.app, OUTAGE_S if scenario.name == "outage-backfill" else BACKFILL_OUTAGE_S
            )
            since = datetime.now(UTC)
            started = time.monotonic()
            runner.timer_paused.clear()
        if scenario.trigger == "backfill":  # a backfill asked for by hand, partly older than the retention
            now = datetime.now(UTC)
            response = requests.post(
                f"{runner.url}/api/heal",
                headers={"x-functions-key": runner.key},
                json={
                    "target": key,
                    # Five minutes past the horizon, two inside it (this app has no telemetry that old).
                    "backfill": {
                        "from": (now - timedelta(days=7, minutes=5)).isoformat(),
                        "to": (now - timedelta(days=7) + timedelta(minutes=2)).isoformat(),
                    },
                },
                timeout=10,
            )
            result.detail = f"heal answered {response.status_code}"
        if scenario.trigger == "http":
            response = requests.post(
                f"{runner.url}/api/heal",
                headers={"x-functions-key": runner.key},
                json={"target": key},
                timeout=10,
            )
            result.detail = f"heal answered {response.status_code}"
        if scenario.name == "alert-webhook":
            wait_for(lambda: world.iotc.apps[scenario.app].exports["export-1"].get("status") == "error", 10)
            started = time.monotonic()
            response = requests.post(
                f"{runner.url}/api/alerts",
                # What an action group's secure webhook sends: an Entra token, no function key.
                headers={"Authorization": f"Bearer {world.directory.mint_action_group(ALERT_AUDIENCE)}"},
                json=_alert(scenario, key),
                timeout=10,
            )
            result.detail = f"webhook answered {response.status_code}"

        def progress() -> bool:
            history = [h for h in healer.services.store.read_history(key) if h["At"] >= since.isoformat()]
            if history and result.mttd_s is None:
                result.mttd_s = round(time.monotonic() - started, 2)
                first = history[-1]
                result.detected_by = str(first.get("Trigger", ""))
            for row in history:
                if row.get("Diagnosis"):
                    result.diagnosis = str(row["Diagnosis"])
                    result.actions = [a["action"] for a in json.loads(row.get("Actions") or "[]")]
                if row.get("RootCause"):
                    result.root_cause = json.loads(row["RootCause"])
            if history and not result.diagnosis:  # the run died before its history row: read the journal
                for entry in healer.services.store.read_journal(key):
                    if entry["Step"] == "plan" and entry["At"] >= since.isoformat():
                        plan = entry["Data"]["plan"]
                        result.diagnosis = str(plan["diagnosis"]["kind"])
                        result.actions = [a["action"] for a in plan["actions"]]
            terminal = [h for h in history if h["Outcome"] in TERMINAL | {scenario.expected}]
            if not terminal:  # a poisoned run leaves no history row: its escalation is in the state
                state = healer.services.store.load(key)
                if state.escalated and state.escalation_reason.startswith("poisoned:"):
                    terminal = [{"Outcome": "escalated", "Detail": state.escalation_reason}]
                    if result.mttd_s is None:
                        result.mttd_s = round(time.monotonic() - started, 2)
                        result.detected_by = "timer"
                    for entry in healer.services.store.read_journal(key):
                        if entry["Step"] == "plan" and entry["At"] >= since.isoformat():
                            plan = entry["Data"]["plan"]
                            result.diagnosis = str(plan["diagnosis"]["kind"])
                            result.actions = [a["action"] for a in plan["actions"]]
            if terminal:
                result.outcome = str(terminal[0]["Outcome"])
                result.detail = str(terminal[0].get("Detail", ""))[:200]
                if result.outcome == "healed":
                    result.healed = True
                    result.mttr_s = round(time.monotonic() - started, 2)
                return True
            refresh()
            return False

        if not wait_for(progress, 60, interval=0.1):
            result.outcome = "timeout"
        if (scenario.name == "outage-backfill" or scenario.backfill) and result.outcome in ("healed", "backfilled"):
            self._backfill(world, runner, healer, scenario, result, refresh)

        def notified() -> int:
            with world.lock:
                return sum(1 for n in world.notifications if n.get("incident", {}).get("target") == key)

        # The notification is sent right after the history row that raised it: give it a moment.
        wait_for(lambda: notified() >= result.expected_notifications, 5)
        if result.recorded_change is not None:
            cause = result.root_cause or {}
            result.root_cause_as_recorded = (
                cause.get("command") == result.recorded_change["command"]
                and cause.get("actor") == result.recorded_change["actor"]
            )
        sent = [t for who, _, t in world.cluster.command_log[log_start:] if who == healer_fqn]
        result.kusto_commands = len(sent)
        result.changing_commands = sum(1 for t in sent if t.lstrip().startswith((".add", ".drop", ".set")))
        # Let in-flight verification finish before the next scenario takes the stage (a poisoned
        # run keeps its lease until it lapses: nothing of it is in flight any more).
        wait_for(lambda: (st := healer.services.store.load(key)).escalated or not st.leased(datetime.now(UTC)), 15)
        final = healer.services.store.load(key)
        owed = {"re-add": final.pending_readd, "enable": final.pending_enable, "copy": final.pending_copy}
        result.obligations_left = [name for name, record in owed.items() if record is not None]
        result.export_enabled = world.iotc.apps[scenario.app].exports["export-1"].get("enabled") is not False
        if scenario.neighbour:
            from shared.detection.detector import last_cycle

            def garbage_seen() -> bool:  # detection names the app and goes on with the others
                cycle = last_cycle()
                said = [e for e in (cycle.errors if cycle else []) if e.startswith(f"{scenario.neighbour}:")]
                result.neighbour_error = said[0][:300] if said else None
                return bool(said)

            wait_for(garbage_seen, 5, interval=0.1)
            world.clear("gateway-html", scenario.neighbour)
            neighbour = f"{scenario.neighbour}:export-1:adx-1"
            result.neighbour_runs = sum(
                1 for h in healer.services.store.read_history(neighbour) if h["At"] >= since.isoformat()
            )
        result.busy_s = round(runner.stats.busy_s - busy_start, 3)
        result.notifications = notified()  # after the run ended: a late duplicate would show here
        result.expected_notification_count = result.expected_notifications
        after = _principals(world, scenario.database)
        # A principal is lost when a role that stood after the fault is gone once the healer is done.
        result.principal_lost = bool({(r, f) for r, f, _ in before} - {(r, f) for r, f, _ in after})
        healer.services.checkpoint = lambda name: None
        world.iotc.ts_reading = "enqueued"
        if options.get("rls"):
            world.clear("row-level-security", scenario.app)
        world.faults.clear_transport()
        runner.timer_paused.clear()
        if scenario.name in ("observe-mode", "observe-mid-run"):
            runner.set_app_setting("HEALER_MODE", "enforce")
            entrypoints.reset()
        if scenario.name == "target-removed-mid-run":  # listed again, without the toggle
            runner.set_app_setting("HEALER_TARGETS", targets)
            runner.set_app_setting("HEALER_TOGGLE_EXPORT", "false")
            entrypoints.reset()
        if result.outcome in ("escalated", "planned", "skipped") and scenario.fault:
            world.clear(scenario.fault, scenario.app)  # people fix what the healer escalated

    def _backfill(
        self,
        world: World,
        runner: Runner,
        healer: Any,
        scenario: Scenario,
        result: Result,
        refresh: Callable[[], None],
    ) -> None:
        """After the healing: the backfill run, the table against the ground truth, and a second
        backfill of the same gap (asked for through /api/heal) that must add nothing."""
        key = f"{scenario.app}:export-1:adx-1"
        table = _table(scenario)

        def backfills() -> list[dict[str, Any]]:
            rows = [
                h for h in healer.services.store.read_history(key) if h["Outcome"] in ("backfilled", "backfill-refused")
            ]
            return sorted(rows, key=lambda h: str(h["At"]))

        if not wait_for(lambda: bool(backfills()), 60, interval=0.2):
            result.detail = "no backfill finished"
            return
        result.backfill_outcome = str(backfills()[0]["Outcome"])
        result.backfill_detail = str(backfills()[0].get("Detail", ""))[:400]
        first = json.loads(backfills()[0].get("Gap") or "{}")
        result.unrecoverable_s = int(first.get("unrecoverable_s", 0))
        gap = healer.services.store.load(key).gap or {}
        until = datetime.fromisoformat(str(first.get("end", gap.get("end"))).replace("Z", "+00:00"))
        start = datetime.fromisoformat(str(first.get("start", gap.get("start"))).replace("Z", "+00:00"))
        result.gap_s = round((until - start).total_seconds(), 1)
        result.rows_backfilled = int(first.get("rows_sent", 0))
        result.backfill_queries = int(first.get("queries", 0))
        counts: dict[str, int] = {}

        def landed() -> bool:  # queued ingestion lands when the data-management worker gets to it
            counts.update(backfill_fleet.compare(world, scenario.app, table, until, scenario.database))
            refresh()
            return counts["rows_missing"] == 0 and counts["rows_duplicated"] == 0

        # A refused backfill ingests nothing: the table is read as it is (what is missing is reported).
        wait_for(landed, 30 if result.backfill_outcome == "backfilled" else 0.5, interval=0.2)
        result.rows_expected = counts["rows_expected"]
        result.rows_missing, result.rows_duplicated = counts["rows_missing"], counts["rows_duplicated"]
        simulated = set(BACKFILLS.get(scenario.backfill or "", {}).get("simulated", []))
        if simulated:
            with world.cluster.lock:
                rows = world.cluster.table(scenario.database, table).rows
                result.rows_written_for_simulated = sum(1 for r in rows if r.get("DeviceId") in simulated)
        answer = requests.post(
            f"{runner.url}/api/heal",
            headers={"x-functions-key": runner.key},
            json={"target": key, "backfill": {"from": start.isoformat(), "to": until.isoformat()}},
            timeout=10,
        )
        if answer.status_code != 202 or not wait_for(lambda: len(backfills()) >= 2, 60, interval=0.2):
            result.detail = f"the second backfill did not run (/api/heal answered {answer.status_code})"
            return
        second = json.loads(backfills()[-1].get("Gap") or "{}")
        result.second_backfill_added = int(second.get("rows_sent", -1))
        # What the table says, beside what the healer says it sent: a second backfill that added rows
        # shows as more duplicates or fewer missing. The ground truth may still grow by the
        # exporter's last batches before the gap's end (delivered, or missing for now): neither is
        # the backfill's doing.
        again = backfill_fleet.compare(world, scenario.app, table, until, scenario.database)
        filled = counts["rows_missing"] - again["rows_missing"]
        twice = again["rows_duplicated"] - counts["rows_duplicated"]
        result.second_backfill_added = max(result.second_backfill_added, twice, filled)
        result.detail = (
            f"gap {result.gap_s:.0f} s: {result.rows_backfilled} rows backfilled with {result.backfill_queries} "
            f"queries; missing {result.rows_missing}, duplicated {result.rows_duplicated}; "
            f"second backfill added {result.second_backfill_added}"
        )

    def log_contains_secret(self) -> bool:
        """Tokens (JWTs, bearer headers), the function key, the identity header, storage keys."""
        text = "\n".join(self.capture.lines)
        return any(p.search(text) for p in SECRET_PATTERNS) or any(s and s in text for s in self.secrets)

    def write_report(self, path: Path) -> dict[str, Any]:
        scenarios = [asdict(r) for r in self.results]
        report = {
            "generated_at": datetime.now(UTC).isoformat(),
            "all_as_expected": all(r.ok for r in self.results),
            "principal_lost_anywhere": any(r.principal_lost for r in self.results),
            "log_lines": len(self.capture.lines),
            "log_contains_secret": self.log_contains_secret(),
            "scenarios": scenarios,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        from shared.reporting.report.page import render_html

        summary = [
            {
                "scenario": r.name,
                "expected": r.expected_outcome,
                "outcome": r.outcome,
                "diagnosis": r.diagnosis,
                "actions": r.actions,
                "MTTD s": r.mttd_s,
                "MTTR s": r.mttr_s,
                "root cause": r.root_cause,
                "notifications": r.notifications,
                "as expected": "yes" if r.ok else "NO",
            }
            for r in self.results
        ]
        path.with_suffix(".html").write_text(
            render_html(self.runs, "iotc-adx-healer drill: every run, end to end", summary), encoding="utf-8"
        )
        (path.parent / "drill.log").write_text("\n".join(self.capture.lines) + "\n")
        return report


def _add_backfill_app(world: World, scenario: Scenario, table: str) -> None:
    options = BACKFILLS[scenario.backfill or ""]
    lag = options.get("creation_lag_ms")
    backfill_fleet.add_fleet_app(
        world,
        scenario.app,
        table,
        database=scenario.database,
        variant=options.get("variant", "default"),
        export_filter=options.get("filter", backfill_fleet.FILTER),
        thermostats=2,
        pumps=2,
        creation_lag=timedelta(milliseconds=lag) if lag else None,
    )
    with world.iotc.lock:
        devices = world.iotc.apps[scenario.app].devices
        for device_id in options.get("simulated", []):
            devices[device_id]["simulated"] = True
        for device in devices.values():  # what a property filter reads
            device["properties"] = {"firmware": "1.0" if device["id"].endswith("-0") else "2.0"}


def _table(scenario: Scenario, *, neighbour: bool = False) -> str:
    app = (scenario.neighbour or "") if neighbour else scenario.app
    return "".join(p.title() for p in app.split("-")) + "Telemetry"


def _die_once_after(point: str) -> Callable[[str], None]:
    fired: list[str] = []

    def hook(name: str) -> None:
        if name == point and not fired:
            fired.append(name)
            raise RuntimeError(f"the worker died right after {point}")

    return hook


def _once_at(point: str, then: Callable[[], None]) -> Callable[[str], None]:
    fired: list[str] = []

    def hook(name: str) -> None:
        if name == point and not fired:
            fired.append(name)
            then()

    return hook


def _die_always_at(point: str) -> Callable[[str], None]:
    def hook(name: str) -> None:
        if name == point:
            raise RuntimeError(f"the worker fails at {point} on every delivery")

    return hook


def _restart(runner: Runner, setting: str, value: str, *, in_flight_dies: bool = True) -> None:
    """An app settings change: Azure restarts the host. The next invocation builds its state from
    the new settings; the one in flight dies with the host (or, `in_flight_dies=False`, had just
    finished when the restart came)."""
    from shared import entrypoints

    runner.set_app_setting(setting, value)
    entrypoints.reset()
    if in_flight_dies:
        raise RuntimeError(f"the host restarted: app setting {setting} changed")


# The FailedIngestion rule's query as infra/modules/alerts.bicep writes it (tests/unit/test_infra.py).
FAILED_INGESTION_ALERT_QUERY = (
    'FailedIngestion | where ErrorCode in ("Forbidden", "BadRequest_DatabaseAccessDenied", '
    '"BadRequest_TableAccessDenied") | project TimeGenerated, Database, Table, ErrorCode, _ResourceId'
)


def _alert(scenario: Scenario, key: str) -> dict[str, Any]:
    """A Log Alerts V2 notification (common alert schema) for a FailedIngestion rule."""
    table = "".join(p.title() for p in scenario.app.split("-")) + "Telemetry"
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.AlertsManagement"
                f"/alerts/{key.replace(':', '-')}-{int(time.time())}",
                "alertRule": "iotc-adx-healer-failed-ingestion",
                "severity": "Sev2",
                "signalType": "Log",
                "monitorCondition": "Fired",
                "monitoringService": "Log Alerts V2",
                "alertTargetIDs": [
                    "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-adx/"
                    "providers/microsoft.operationalinsights/workspaces/adx-logs"
                ],
                "firedDateTime": datetime.now(UTC).isoformat(),
            },
            "alertContext": {
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": "PT5M",
                    "allOf": [
                        {
                            "searchQuery": FAILED_INGESTION_ALERT_QUERY,
                            "metricValue": 3,
                            "operator": "GreaterThan",
                            "threshold": "0",
                            "timeAggregation": "Count",
                            "dimensions": [
                                {"name": "Database", "value": scenario.database},
                                {"name": "Table", "value": table},
                                {"name": "_ResourceId", "value": ADX_RESOURCE_ID},
                            ],
                        }
                    ],
                },
            },
            "customProperties": None,
        },
    }


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _int(value: int | None) -> str:
    return "?" if value is None else str(value)


SECRET_PATTERNS = [
    re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    re.compile(r"(?i)bearer\s+[a-z0-9._-]{20,}"),
    re.compile(r"AccountKey="),
    re.compile(r"[?&]sig=(?!REDACTED)[A-Za-z0-9%+/=]{8,}"),  # a SAS signature (ingestion resources)
]


def run(report_path: Path, names: list[str] | None = None, console: Console | None = None) -> int:
    console = console or Console()  # the terminal's width (COLUMNS where there is no terminal)
    scenarios = [s for s in SCENARIOS if not names or s.name in names]
    drill = Drill(scenarios, console, report_path.parent)
    started = time.monotonic()
    drill.run()
    console.print()
    for line in drill.details():
        console.print(line, markup=False, highlight=False)
    report = drill.write_report(report_path)
    console.print(
        f"Drill finished in {time.monotonic() - started:.0f} s; report: {report_path} "
        f"(and {report_path.with_suffix('.html')}); log: {report_path.parent / 'drill.log'}"
    )
    bad = [r.name for r in drill.results if not r.ok]
    if bad:
        console.print(f"[red]Not as expected: {', '.join(bad)}[/]")
    else:
        console.print("[green]Every scenario ended as expected; no principal was lost.[/]")
    if report["log_contains_secret"]:
        console.print("[red]The captured log contains a token, key or secret.[/]")
    return 0 if report["all_as_expected"] and not report["log_contains_secret"] else 1
