"""Real kills: a worker process is SIGKILLed at every checkpoint of every remedy (and of the
backfill that follows a healing), its message is redelivered to a fresh process, and after
quiescence the invariants hold.

One lane per checkpoint (its own app, queue and tables), all lanes at once: a victim process per
lane blocks at its checkpoint and is killed there; one fresh process then serves every lane. A
control lane runs the same healing unkilled in a process of its own and records every checkpoint
it passes: a checkpoint the code has and the lanes do not is a failure, not a silent gap.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox import backfill_fleet
from sandbox.azurite import ACCOUNT_KEY, Azurite
from sandbox.healer_config import targets_for
from sandbox.waiting import wait_for
from sandbox.world import World
from shared.adapters.storage import RemediationQueue, StateStore
from shared.domain.messages import new_run
from shared.domain.state import TargetState
from tests.support.crash_points import ADD_TOGGLE_POINTS, RECREATE_POINTS, REFRESH_POINTS
from tests.support.healer_env import settings_values
from tests.support.helpers import ROOT, wait_until

pytestmark = pytest.mark.integration
VISIBILITY_S = 3
TRANSFORM = "{ d: .device }"
BACKFILL_BUDGET_S = 5  # the smallest HEALER_BACKFILL_INVOCATION_SECONDS: the continue lanes wait it out

# The backfill after a healed add-role run (its earlier checkpoints are the add-role lanes').
# `phase:backfilling` is passed once when verification hands over, again when the first
# invocation records the measured gap, and a third time when an invocation runs out of budget.
BACKFILL_POINTS = [
    "phase:backfilling",
    "enqueue:backfill",
    "phase:backfilling#2",
    "backfill:intent",
    "effect:backfill-ingest",
    "backfill:window-done",
    "phase:backfilling#3",
    "enqueue:backfill-continue",
]
# Checkpoints of paths these healings do not take (a verification that has to look again, an
# identity Entra does not know yet): the control lane may pass them, no lane blocks there.
CONDITIONAL = {"enqueue:verify-again", "enqueue:add-again"}


@dataclass(frozen=True)
class Remedy:
    name: str
    fault: str
    points: list[str]
    settings: dict[str, Any]
    fleet: bool = False  # apps with device templates and retained telemetry (a backfill needs them)
    stall_at: str | None = None
    # The control lane's checkpoints from the first one after this are compared with `points`.
    after: str | None = None


REMEDIES = [
    # The refresh lanes use the refresh alone (REFRESH_POINTS are its checkpoints).
    Remedy("refresh", "stale-permission", REFRESH_POINTS, {"remedy_order": "refresh"}),
    Remedy("add-role", "principal-removed", ADD_TOGGLE_POINTS, {"toggle_export": True}),
    Remedy("recreate-destination", "destination-stale", RECREATE_POINTS, {}),
    Remedy(
        "backfill",
        "principal-removed",
        BACKFILL_POINTS,
        # A chunk redone after a kill waits for its first send (the sandbox ingests within 0.2 s).
        {"backfill": "on", "backfill_invocation_seconds": BACKFILL_BUDGET_S, "backfill_settle_seconds": 1},
        fleet=True,
        # Slow once, after the first window: the invocation's budget is spent and the run continues
        # on a message of its own (the lanes killed there need it; the others merely wait).
        stall_at="backfill:window-done",
        after="journal:verify:done",
    ),
]


def _spawn(config: dict[str, Any], workdir: Path, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.kill_worker", str(path)],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"{name}.log").open("wb"),
    )


def _intervals(journal: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Per run: from its first side-effect intent to its last result."""
    spans: dict[str, tuple[str, str]] = {}
    for row in journal:
        if row["Step"] in ("plan", "snapshot", "verify"):
            continue
        first, last = spans.get(row["RunId"], (row["At"], row["At"]))
        spans[row["RunId"]] = (min(first, row["At"]), max(last, row["At"]))
    return spans


def _base(point: str) -> str:
    return point.split("#", 1)[0]


@dataclass
class Writes:
    """Every write the healer made to each app's data export (PUT/PATCH/DELETE that succeeded), and
    whether after it the export still sent to destinations that all exist."""

    log: dict[str, list[tuple[str, str, bool]]]

    @staticmethod
    def watch(world: World, apps: list[str]) -> Writes:
        writes = Writes({app: [] for app in apps})
        api = world.iotc._api

        def observed(request: Any, app: Any, path: list[str]) -> Any:
            response = api(request, app, path)
            if request.method in ("PUT", "PATCH", "DELETE") and app.subdomain in writes.log:
                with world.iotc.lock:
                    refs = app.exports["export-1"].get("destinations") or []
                    sending = bool(refs) and all(r["id"] in app.destinations for r in refs)
                    writes.log[app.subdomain].append((request.method, "/".join(path), sending))
            return response

        world.iotc._api = observed  # type: ignore[method-assign]
        return writes


def _setup_apps(world: World, azurite: Azurite, remedy: Remedy, apps: list[str]) -> Writes | None:
    if remedy.fleet:
        world.attach_storage(azurite.connection_string, ACCOUNT_KEY)
    for n, app in enumerate(apps):
        if remedy.fleet:
            backfill_fleet.add_fleet_app(world, app, f"Kill{n}")
        else:
            world.add_app(app, table=f"Kill{n}")
    if remedy.name != "recreate-destination":
        return None
    for app in apps:  # a transform the copy must keep
        world.iotc.apps[app].exports["export-1"]["destinations"] = [{"id": "adx-1", "transform": TRANSFORM}]
    # IoT Central may let a destination in use be deleted (unverified): the lenient answer here,
    # so a deletion before the export is re-pointed would leave the export without a destination
    # (and be seen) rather than be refused by the stand-in.
    world.iotc.refuse_delete_in_use = False
    return Writes.watch(world, apps)


def _lapse(store: StateStore, key: str) -> None:
    """The dead worker's lease runs out (as it would after HEALER_LEASE_SECONDS)."""
    past = datetime.now(UTC) - timedelta(seconds=1)

    def lapsed(state: TargetState) -> None:
        if state.lease_owner:
            state.lease_until = past

    store.update(key, lapsed)


@pytest.mark.parametrize("remedy", REMEDIES, ids=[r.name for r in REMEDIES])
def test_killed_at_every_checkpoint_then_redelivered(
    world: World, azurite: Azurite, tmp_path: Path, remedy: Remedy
) -> None:
    points = remedy.points
    apps = [f"k{n}" for n in range(len(points) + 1)]  # the last one is the control lane's
    writes = _setup_apps(world, azurite, remedy, apps)
    world.start_exporter(interval_s=0.3)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        targets = {t["app"]: t for t in targets_for(world)}
        lanes: list[dict[str, Any]] = []
        for app, point in zip(apps, [*points, None], strict=True):
            values = settings_values(world, azurite, targets=json.dumps([targets[app]]), **remedy.settings)
            lane: dict[str, Any] = {"settings": values, "block_at": point}
            if remedy.stall_at:
                lane.update(stall_at=remedy.stall_at, stall_s=BACKFILL_BUDGET_S + 0.5)
            lanes.append(lane)
        control = tmp_path / "control.txt"
        lanes[-1]["record"] = str(control)
        for app in apps:
            world.inject(remedy.fault, app)
        wait_until(
            lambda: all(world.iotc.apps[a].exports["export-1"].get("status") == "error" for a in apps),
            20,
            "every export to break",
        )
        if remedy.fleet:  # an outage long enough to leave rows to backfill in every table

            def lost(table: str) -> int:
                return sum(1 for r in world.workspace.tables["FailedIngestion"] if r["Table"] == table)

            wait_until(lambda: all(lost(f"Kill{n}") >= 4 for n in range(len(apps))), 20, "batches lost")
        env = world.identity_env()
        victims = []
        for n, lane in enumerate(lanes):
            config = {
                "lanes": [lane],
                "ready": str(tmp_path / f"ready-{n}"),
                "blocked": str(tmp_path / f"blocked-{n}-"),
                "visibility_s": VISIBILITY_S,
                "sweep": False,  # a victim dies in the message path; the fresh process sweeps
            }
            process = _spawn(config, tmp_path, f"victim-{n}" if n < len(points) else "control", env)
            processes.append(process)
            if n < len(points):
                victims.append(process)
        keys = [f"{app}:export-1:adx-1" for app in apps]
        stores = [
            StateStore(lane["settings"]["storage_connection_string"], prefix=lane["settings"]["table_prefix"])
            for lane in lanes
        ]
        for lane, key in zip(lanes, keys, strict=True):
            values = lane["settings"]
            queue = RemediationQueue(values["queue_name"], values["storage_connection_string"])
            queue.ensure()
            queue.send(new_run(key, "timer").to_json())

        # Kill each victim the moment it blocks at its checkpoint.
        killed: dict[int, str] = {}

        def kill_blocked() -> bool:
            for n, victim in enumerate(victims):
                marker = tmp_path / f"blocked-{n}-0"
                if n not in killed and marker.exists():
                    victim.send_signal(signal.SIGKILL)
                    victim.wait(10)
                    killed[n] = marker.read_text()
            return len(killed) == len(victims)

        if not wait_for(kill_blocked, 120, interval=0.05):
            missing = [points[n] for n in range(len(points)) if n not in killed]
            raise AssertionError(f"victims never reached {missing}")
        assert [killed[n] for n in range(len(points))] == points
        if remedy.fleet:
            # A backfill runs as long as its budget: a run whose next message is lost is found by
            # the sweep only once the lease lapsed. Here every dead worker's lease has, so the
            # sweep and the redelivered messages both go for each lane.
            for n in range(len(points)):
                _lapse(stores[n], keys[n])

        # A fresh process serves every killed lane: redelivery, the sweep, and the rest of each run.
        served = lanes[: len(points)]
        config = {"lanes": [{"settings": lane["settings"], "block_at": None} for lane in served]}
        config.update(ready=str(tmp_path / "ready-fresh"), blocked=str(tmp_path / "never-"), visibility_s=VISIBILITY_S)
        processes.append(_spawn(config, tmp_path, "fresh", env))

        def settled(n: int) -> bool:
            state = stores[n].load(keys[n])
            done = state.last_outcome == "healed" and state.lease_owner == "" and state.phase == "done"
            if remedy.fleet:
                done = done and (state.gap or {}).get("status") == "done"
            return done and state.pending_readd is None and not state.pending_enable

        def unsettled() -> list[str]:
            return [([*points, "control"])[n] for n in range(len(lanes)) if not settled(n)]

        wait_for(lambda: not unsettled(), 90)
        stuck = {
            lane: _describe(stores[n], keys[n]) for n, lane in enumerate([*points, "control"]) if lane in unsettled()
        }
        assert stuck == {}, "lanes that did not heal after their kill"

        # Every checkpoint the unkilled healing passed has a lane (the control lane's record).
        passed = [line for line in control.read_text().splitlines() if _base(line) not in CONDITIONAL]
        if remedy.after:
            passed = passed[[_base(p) for p in passed].index(remedy.after) + 1 :]
        assert set(points) <= set(passed), f"lanes at checkpoints never passed: {set(points) - set(passed)}"
        unlaned = list(dict.fromkeys(_base(p) for p in passed if _base(p) not in {_base(q) for q in points}))
        assert unlaned == [], f"checkpoints without a lane: {unlaned}"
        if not remedy.fleet:
            assert list(dict.fromkeys(_base(p) for p in passed)) == points

        for n, app in enumerate(apps):
            lane_name = ([*points, "control"])[n]
            _assert_roles_and_runs(world, remedy, app, lane_name, stores[n], keys[n])
            if remedy.name == "recreate-destination":
                assert writes is not None
                _assert_recreated(world, app, lane_name, writes.log[app], stores[n].load(keys[n]))
            if remedy.fleet:
                _assert_backfilled(world, app, f"Kill{n}", lane_name, stores[n].load(keys[n]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        world.stop_exporter()


def _describe(store: StateStore, key: str) -> str:
    state = store.load(key)
    steps = [f"{r['Step']}:{r['Status']}" for r in store.read_journal(key)]
    return (
        f"phase {state.phase} of {state.run_id}, outcome {state.last_outcome}, lease {state.lease_owner} "
        f"until {state.lease_until}, gap {state.gap}, journal {steps}, "
        f"history {[(h.get('Trigger'), h.get('Outcome'), h.get('Detail')) for h in store.read_history(key)]}"
    )


def _assert_roles_and_runs(world: World, remedy: Remedy, app: str, lane: str, store: StateStore, key: str) -> None:
    """The principal holds exactly its intended role, was dropped at most as the remedy must, and
    no two runs acted at once."""
    identity = world.iotc.identity_of(app)
    held = [(a.role, a.notes) for a in world.cluster.database("devicedata").principals if a.fqn.matches(identity)]
    assert [r for r, _ in held] == ["admins"], f"{lane}: {held}"
    if remedy.name == "refresh":
        assert held[0][1] == f"IoT Central {app} data export", f"{lane}: notes {held[0][1]!r}"
    changes = [
        t
        for _, _, t in world.cluster.command_log
        # ADX lists (and a refresh re-adds) the application id; the healer adds the object id
        if (identity.object_id.lower() in t.lower() or identity.client_id.lower() in t.lower())
        and t.lstrip().startswith((".drop", ".add"))
    ]
    drops = [c for c in changes if c.lstrip().startswith(".drop")]
    assert len(drops) == (1 if remedy.name == "refresh" else 0), f"{lane}: {changes}"
    if remedy.name == "recreate-destination":
        assert changes == [], f"{lane}: a re-creation touched the principal: {changes}"
    spans = sorted(_intervals(store.read_journal(key)).values())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, f"{lane}: two runs acted at once: {spans}"
    if remedy.settings.get("toggle_export"):
        assert world.iotc.apps[app].exports["export-1"]["enabled"] is True, f"{lane}: export left disabled"


def _assert_recreated(
    world: World, app: str, lane: str, writes: list[tuple[str, str, bool]], state: TargetState
) -> None:
    """One working copy, the old one gone, never a moment without a destination."""
    iotc_app = world.iotc.apps[app]
    export = iotc_app.exports["export-1"]
    refs = export["destinations"]
    assert len(refs) == 1 and refs[0]["id"] != "adx-1", f"{lane}: {refs}"
    new_id = refs[0]["id"]
    assert refs[0].get("transform") == TRANSFORM, f"{lane}: transform lost: {refs}"
    assert list(iotc_app.destinations) == [new_id], f"{lane}: orphaned or kept: {list(iotc_app.destinations)}"
    assert export.get("status") == "healthy", f"{lane}: export {export.get('status')}: {export.get('errors')}"
    assert state.destination_id == new_id, f"{lane}: state judges {state.destination_id}"
    gaps = [(method, path) for method, path, sending in writes if not sending]
    assert gaps == [], f"{lane}: the export was left without a destination after {gaps}"
    copies = {path for method, path, _ in writes if method == "PUT" and path.startswith("dataExport/destinations/")}
    assert copies == {f"dataExport/destinations/{new_id}"}, f"{lane}: copies made: {copies}"
    deletes = [i for i, (method, _, _) in enumerate(writes) if method == "DELETE"]
    repoints = [i for i, (method, _, _) in enumerate(writes) if method == "PATCH"]
    assert deletes and repoints and min(repoints) < min(deletes), f"{lane}: deleted before re-pointing: {writes}"


def _assert_backfilled(world: World, app: str, table: str, lane: str, state: TargetState) -> None:
    """The gap backfilled: nothing missing, nothing twice, each chunk counted once."""
    gap = state.gap or {}
    assert gap.get("status") == "done" and gap.get("backfill") == "on", f"{lane}: {gap}"
    assert gap["rows_missing"] > 0 and gap["rows_ingested"] == gap["rows_missing"], f"{lane}: {gap}"
    until = datetime.fromisoformat(str(gap["end"]).replace("Z", "+00:00"))
    result: dict[str, int] = {}

    def complete() -> bool:  # queued ingestion drains in the sandbox's ingestion worker
        result.update(backfill_fleet.compare(world, app, table, until))
        return result["rows_missing"] == 0 and result["rows_duplicated"] == 0

    wait_for(complete, 20)  # the counts below say more than a timeout would
    assert result["rows_missing"] == 0 and result["rows_duplicated"] == 0, f"{lane}: {result}"
    assert result["rows_expected"] > 0, f"{lane}: {result}"


# Lanes with company: the victim blocks at its checkpoint and, before or after it is killed, another
# delivery acts on its target. `twin`: the same message is delivered again and served by another
# process while the victim is still alive (at-least-once delivery); `new-start`: the victim is
# killed, its lease lapses, and a new run's start arrives beside the redelivery.
COMPANY_POINTS = {
    "refresh": ["phase:snapshotted", "effect:drop-admins", "phase:dropped"],
    "recreate-destination": ["phase:destination-prepared", "effect:create-destination", "effect:repoint-export"],
}


@pytest.mark.parametrize("company", ["twin", "new-start"])
@pytest.mark.parametrize("remedy", [r for r in REMEDIES if r.name in COMPANY_POINTS], ids=lambda r: r.name)
def test_killed_with_company(world: World, azurite: Azurite, tmp_path: Path, remedy: Remedy, company: str) -> None:
    points = COMPANY_POINTS[remedy.name]
    apps = [f"c{n}" for n in range(len(points))]
    writes = _setup_apps(world, azurite, remedy, apps)
    world.start_exporter(interval_s=0.3)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        targets = {t["app"]: t for t in targets_for(world)}
        lanes: list[dict[str, Any]] = [
            {
                "settings": settings_values(world, azurite, targets=json.dumps([targets[app]]), **remedy.settings),
                "block_at": point,
            }
            for app, point in zip(apps, points, strict=True)
        ]
        for app in apps:
            world.inject(remedy.fault, app)
        wait_until(
            lambda: all(world.iotc.apps[a].exports["export-1"].get("status") == "error" for a in apps),
            20,
            "every export to break",
        )
        env = world.identity_env()
        victims = []
        for n, lane in enumerate(lanes):
            config = {
                "lanes": [lane],
                "ready": str(tmp_path / f"ready-{n}"),
                "blocked": str(tmp_path / f"blocked-{n}-"),
                "visibility_s": VISIBILITY_S,
                "sweep": False,
            }
            victims.append(_spawn(config, tmp_path, f"victim-{n}", env))
        processes.extend(victims)
        keys = [f"{app}:export-1:adx-1" for app in apps]
        stores = [
            StateStore(lane["settings"]["storage_connection_string"], prefix=lane["settings"]["table_prefix"])
            for lane in lanes
        ]
        queues = [
            RemediationQueue(lane["settings"]["queue_name"], lane["settings"]["storage_connection_string"])
            for lane in lanes
        ]
        starts = [new_run(key, "timer").to_json() for key in keys]
        for queue, start in zip(queues, starts, strict=True):
            queue.ensure()
            queue.send(start)
        blocked = [tmp_path / f"blocked-{n}-0" for n in range(len(points))]
        assert wait_for(lambda: all(b.exists() for b in blocked), 120, interval=0.05), "victims never blocked"
        assert [b.read_text() for b in blocked] == points

        served: dict[str, Any] = {"lanes": [{"settings": lane["settings"], "block_at": None} for lane in lanes]}
        if company == "twin":
            # The same message again, served by another process while each victim is still alive
            # inside its delivery (its lease live): the twin goes as far as it can.
            for queue, start in zip(queues, starts, strict=True):
                queue.send(start)
            twin: dict[str, Any] = {
                **served,
                "ready": str(tmp_path / "ready-twin"),
                "blocked": str(tmp_path / "never-"),
            }
            twin.update(visibility_s=VISIBILITY_S, sweep=False)
            processes.append(_spawn(twin, tmp_path, "twin", env))

            def twins_done() -> bool:
                return all(
                    any(r["Status"] == "done" or r["Step"] == "plan" for r in store.read_journal(key))
                    and not list(queue.client.peek_messages(max_messages=1))
                    for store, key, queue in zip(stores, keys, queues, strict=True)
                )

            wait_for(twins_done, 30)
        for victim in victims:
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        if company == "new-start":
            for store, key, queue in zip(stores, keys, queues, strict=True):
                _lapse(store, key)
                queue.send(new_run(key, "timer").to_json())  # a new start: alert, timer or /api/heal
        fresh: dict[str, Any] = {**served, "ready": str(tmp_path / "ready-fresh"), "blocked": str(tmp_path / "never-")}
        fresh.update(visibility_s=VISIBILITY_S)
        processes.append(_spawn(fresh, tmp_path, "fresh", env))

        def settled(n: int) -> bool:
            state = stores[n].load(keys[n])
            done = state.last_outcome == "healed" and state.lease_owner == "" and state.phase == "done"
            return done and state.pending_readd is None and not state.pending_enable

        wait_for(lambda: all(settled(n) for n in range(len(lanes))), 120)
        stuck = {points[n]: _describe(stores[n], keys[n]) for n in range(len(lanes)) if not settled(n)}
        assert stuck == {}, f"lanes with a {company} that did not heal after their kill"
        for n, app in enumerate(apps):
            lane_name = f"{points[n]} with a {company}"
            _assert_roles_and_runs(world, remedy, app, lane_name, stores[n], keys[n])
            if remedy.name == "recreate-destination":
                assert writes is not None
                _assert_recreated(world, app, lane_name, writes.log[app], stores[n].load(keys[n]))
            if company == "new-start":
                history = [str(h.get("Detail", "")) for h in stores[n].read_history(keys[n])]
                assert any(d.startswith(("handed over", "superseded", "waiting")) for d in history) or any(
                    "re-added first" in d for d in history
                ), f"{lane_name}: the new start's hand-over is not in the history: {history}"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        world.stop_exporter()
