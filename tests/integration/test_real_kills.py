"""Real kills: a worker process is SIGKILLed at every checkpoint of every remedy, its message is
redelivered to a fresh process, and after quiescence the invariants hold.

One lane per checkpoint (its own app, queue and tables), all lanes at once: a victim process per
lane blocks at its checkpoint and is killed there; one fresh process then serves every lane.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.azurite import Azurite
from sandbox.healer_config import targets_for
from sandbox.waiting import wait_for
from sandbox.world import World
from shared.messages import new_run
from shared.storage import RemediationQueue, StateStore
from tests.healer_env import settings_values
from tests.helpers import ROOT, wait_until
from tests.integration.test_healer_resilience import ADD_TOGGLE_POINTS, REFRESH_POINTS

pytestmark = pytest.mark.integration
VISIBILITY_S = 3


def _spawn(config: dict[str, Any], workdir: Path, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.kill_worker", str(path)],
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


@pytest.mark.parametrize(
    ("remedy", "fault", "points", "toggle"),
    [
        ("refresh", "stale-permission", REFRESH_POINTS, False),
        ("add-role", "principal-removed", ADD_TOGGLE_POINTS, True),
    ],
)
def test_killed_at_every_checkpoint_then_redelivered(
    world: World, azurite: Azurite, tmp_path: Path, remedy: str, fault: str, points: list[str], toggle: bool
) -> None:
    apps = [f"k{n}" for n in range(len(points))]
    for n, app in enumerate(apps):
        world.add_app(app, table=f"Kill{n}")
    world.start_exporter(interval_s=0.3)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        targets = {t["app"]: t for t in targets_for(world)}
        lanes: list[dict[str, Any]] = []
        for app, point in zip(apps, points, strict=True):
            # The refresh lanes use the refresh alone (REFRESH_POINTS are its checkpoints).
            order = "refresh" if remedy == "refresh" else "recreate-destination,refresh"
            values = settings_values(
                world, azurite, toggle_export=toggle, targets=json.dumps([targets[app]]), remedy_order=order
            )
            lanes.append({"settings": values, "block_at": point})
        for app in apps:
            world.inject(fault, app)
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
                "sweep": False,  # a victim dies in the message path; the fresh process sweeps
            }
            victims.append(_spawn(config, tmp_path, f"victim-{n}", env))
        processes.extend(victims)
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

        if not wait_for(kill_blocked, 90, interval=0.05):
            missing = [points[n] for n in range(len(points)) if n not in killed]
            raise AssertionError(f"victims never reached {missing}")
        assert [killed[n] for n in range(len(points))] == points

        # A fresh process serves every lane: redelivery, the sweep, and the rest of each run.
        config = {"lanes": [{"settings": lane["settings"], "block_at": None} for lane in lanes]}
        config.update(ready=str(tmp_path / "ready-fresh"), blocked=str(tmp_path / "never-"), visibility_s=VISIBILITY_S)
        processes.append(_spawn(config, tmp_path, "fresh", env))

        def settled(n: int) -> bool:
            state = stores[n].load(keys[n])
            return (
                state.last_outcome == "healed"
                and state.pending_readd is None
                and not state.pending_enable
                and state.lease_owner == ""
            )

        def unsettled() -> list[str]:
            return [points[n] for n in range(len(lanes)) if not settled(n)]

        wait_until(lambda: not unsettled(), 60, "every lane to heal after its kill")

        for n, app in enumerate(apps):
            identity = world.iotc.identity_of(app)
            held = [
                (a.role, a.notes) for a in world.cluster.database("devicedata").principals if a.fqn.matches(identity)
            ]
            expected_notes = f"IoT Central {app} data export" if remedy == "refresh" else None
            assert [r for r, _ in held] == ["admins"], f"{points[n]}: {held}"
            if expected_notes:
                assert held[0][1] == expected_notes, f"{points[n]}: notes {held[0][1]!r}"
            changes = [
                t
                for _, _, t in world.cluster.command_log
                # ADX lists (and a refresh re-adds) the application id; the healer adds the object id
                if (identity.object_id.lower() in t.lower() or identity.client_id.lower() in t.lower())
                and t.lstrip().startswith((".drop", ".add"))
            ]
            drops = [c for c in changes if c.lstrip().startswith(".drop")]
            assert len(drops) == (1 if remedy == "refresh" else 0), f"{points[n]}: {changes}"
            spans = sorted(_intervals(stores[n].read_journal(keys[n])).values())
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert end <= start, f"{points[n]}: two runs acted at once: {spans}"
            if toggle:
                assert world.iotc.apps[app].exports["export-1"]["enabled"] is True, f"{points[n]}: export left disabled"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        world.stop_exporter()
