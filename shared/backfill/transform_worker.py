"""The destination's jq transform of a big window, run in a worker process.

jq holds Python's interpreter lock for every message it transforms (tens of microseconds each),
and a backfill's windows hold thousands of messages: in the invocation's own process that time is
taken from the queries read ahead and the sends. One worker process (`python -m
shared.backfill.transform_worker`, this module), started by the first big window of an
invocation and stopped at its end, runs the transform on another core. Small windows, and every
window once the worker cannot be started or has died, are transformed in-process by the same
function, so the rows are the same either way.

The worker is a plain child process talking over its stdin and stdout (length-prefixed pickles
between this code and itself), not multiprocessing: multiprocessing's spawn re-imports the
parent's main module in the child, which is only safe for guarded scripts.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from typing import IO, Any

from shared.backfill.records import ExportFilter, Message, TransformError, rows_for
from shared.backfill.templates import TemplateInfo

log = logging.getLogger(__name__)
WORKER_FROM = 2_000  # messages in a window from which the worker pays for the copies
_LENGTH = struct.Struct("!Q")


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the other side closed")
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the other side closed mid-message")
    return pickle.loads(data)  # noqa: S301 - written by this module on the other end of our own pipe


def _rows(
    messages: list[Message],
    application_id: str,
    info: TemplateInfo,
    devices: dict[str, dict[str, Any]],
    export_filter: ExportFilter,
    transform: str | None,
) -> list[tuple[int, dict[str, Any]]]:
    """rows_for, each row given by its message's index (the messages are not sent back)."""
    index = {id(m): n for n, m in enumerate(messages)}
    found = rows_for(
        messages,
        application_id=application_id,
        info=info,
        devices=devices,
        export_filter=export_filter,
        transform=transform,
    )
    return [(index[id(m)], row) for m, row in found]


def main() -> None:
    """The worker: one request, one answer, until its stdin closes."""
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            args = _receive(requests)
        except EOFError:
            return
        try:
            _send(answers, ("rows", _rows(*args)))
        except TransformError as exc:
            _send(answers, ("transform-error", str(exc)))


class TransformWorker:
    def __init__(self, worker_from: int | None = None) -> None:
        self.worker_from = WORKER_FROM if worker_from is None else worker_from
        self._process: subprocess.Popen[bytes] | None = None
        self._broken = False
        self._lock = threading.Lock()

    def rows(
        self,
        messages: list[Message],
        *,
        application_id: str,
        info: TemplateInfo,
        devices: dict[str, dict[str, Any]],
        export_filter: ExportFilter,
        transform: str | None,
    ) -> list[tuple[Message, dict[str, Any]]]:
        """rows_for, in the worker when the window is big and there is a transform to run."""
        if not transform or self._broken or len(messages) < self.worker_from:
            return rows_for(
                messages,
                application_id=application_id,
                info=info,
                devices=devices,
                export_filter=export_filter,
                transform=transform,
            )
        wanted = {m.device_id for m in messages}
        subset = {k: v for k, v in devices.items() if k in wanted}
        try:
            with self._lock:
                process = self._start()
                assert process.stdin is not None and process.stdout is not None
                _send(process.stdin, (messages, application_id, info, subset, export_filter, transform))
                kind, value = _receive(process.stdout)
        except (OSError, EOFError, pickle.PickleError) as exc:  # not started, or died: in-process from now on
            log.warning("backfill: transform worker unavailable (%s); transforming in-process", type(exc).__name__)
            self._broken = True
            self.close()
            return self.rows(
                messages,
                application_id=application_id,
                info=info,
                devices=devices,
                export_filter=export_filter,
                transform=transform,
            )
        if kind == "transform-error":
            raise TransformError(str(value))
        return [(messages[n], row) for n, row in value]

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            env = dict(os.environ)
            # The packages this process imports from (a function app's .python_packages included).
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            self._process = subprocess.Popen(
                [sys.executable, "-m", "shared.backfill.transform_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        return self._process

    def close(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()  # the worker's end of input: it exits
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()


if __name__ == "__main__":
    main()
