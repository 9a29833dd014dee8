"""A healer worker in a process of its own, for the real-kill tests: `python -m tests.support.kill_worker CONFIG`.

CONFIG is a JSON file: {"lanes": [{"settings": {...}, "block_at": "phase:dropped" | null}],
"ready": path, "blocked": path-prefix, "visibility_s": 3}. Each lane is one healer (its own
queue) served like the Functions host serves a queue trigger: a received message is invisible
while handled, deleted on success, visible again soon after a failure. When a lane reaches its
`block_at` checkpoint it writes `<blocked><lane>` and blocks there until the test SIGKILLs the
process. With "sweep": true every lane also runs the recovery sweep in a thread of its own, beside
its queue, as the timer would.

A checkpoint passed more than once is named by its pass: `phase:backfilling#2` is the second.
A lane may also name a `record` file (every checkpoint it passes is appended, one per line) and
a `stall_at` checkpoint where its invocation is slow for `stall_s` seconds, once (to spend a
bounded invocation's time budget, so the run has to continue on another message).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _serve(
    lane: int, spec: dict[str, Any], blocked: str, visibility_s: int, sweeps: bool, stop: threading.Event
) -> None:
    from sandbox import sdk
    from shared.adapters.storage import queue_client
    from shared.config.settings import Settings
    from shared.domain.messages import MalformedMessage, parse_message
    from shared.runs import Healer
    from shared.runs.sweep import sweep
    from shared.services import build_services

    settings = Settings(**spec["settings"])
    services = build_services(settings, sdk.credential())
    block_at = spec.get("block_at")
    stall_at, stall_s = spec.get("stall_at"), float(spec.get("stall_s", 0))
    record = Path(spec["record"]) if spec.get("record") else None
    passes: dict[str, int] = {}

    def checkpoint(name: str) -> None:
        passes[name] = passes.get(name, 0) + 1
        numbered = name if passes[name] == 1 else f"{name}#{passes[name]}"
        if record is not None:
            with record.open("a") as out:
                out.write(numbered + "\n")
        if numbered == block_at:
            # Written whole, then renamed: the test reads the name the moment the file appears.
            partial = Path(f"{blocked}{lane}.partial")
            partial.write_text(numbered)
            partial.replace(f"{blocked}{lane}")
            while True:  # the test kills the process here
                time.sleep(1)
        if numbered == stall_at:
            time.sleep(stall_s)  # a slow invocation: its budget is spent when it looks next

    services.checkpoint = checkpoint
    healer = Healer(services)
    queue = queue_client(settings.queue_name, settings.storage_connection_string)

    def sweeping() -> None:  # the timer runs beside the queue trigger, as in the Functions host
        while not stop.wait(0.5):
            sweep(healer)

    if sweeps:
        threading.Thread(target=sweeping, daemon=True).start()
    while not stop.is_set():
        try:
            messages = list(queue.receive_messages(max_messages=1, visibility_timeout=visibility_s))
        except Exception:  # storage hiccup: the host would poll again
            stop.wait(0.5)
            continue
        if not messages:
            stop.wait(0.1)
            continue
        message = messages[0]
        try:
            healer.handle(parse_message(message.content))
        except MalformedMessage:
            queue.delete_message(message)
            continue
        except Exception:  # the host retries a failed invocation after a short delay
            logging.exception("lane %d: invocation failed", lane)
            queue.update_message(message, visibility_timeout=1)
            continue
        queue.delete_message(message)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)  # to the lane's log file, read when a lane fails
    config = json.loads(Path(sys.argv[1]).read_text())
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_serve,
            args=(n, lane, config["blocked"], config["visibility_s"], config.get("sweep", True), stop),
            daemon=True,
        )
        for n, lane in enumerate(config["lanes"])
    ]
    for thread in threads:
        thread.start()
    Path(config["ready"]).write_text("ready")
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)


if __name__ == "__main__":
    main()
