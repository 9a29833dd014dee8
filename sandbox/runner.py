"""A local stand-in for the Azure Functions host, for machines without Core Tools.

It loads `function_app.app`, and runs its triggers with the host's semantics:
- timer: on its NCRONTAB schedule (six fields, UTC), or every `timer_interval_s` locally; one
  instance at a time, as the host's storage lock ensures;
- queue: polls the queue in Azure Storage (Azurite), base64 messages as host.json says; a message
  stays invisible while it is processed, a failure makes it visible again after host.json's
  `visibilityTimeout`, and after `maxDequeueCount` tries it moves to `<queue>-poison`;
- HTTP: the routes under `/api/` on 127.0.0.1, with the function key check (`x-functions-key`
  header or `code` query parameter).
It can run several queue instances on one queue, as a scaled-out app would.

Settings as the host has them: only the app settings handed over (a dict, or the `Values` of a
local.settings.json), never this process's environment, no defaults. A function whose binding
names a `%SETTING%` that is not there is not indexed (the host's message is in `errors`); the
functions see the app settings as environment variables while the runner runs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.httpserver import ServiceServer, json_response

log = logging.getLogger("sandbox.runner")
ROOT = Path(__file__).resolve().parent.parent
_FUNCTIONS: dict[str, list[Any]] = {}
_EXPRESSION = re.compile(r"%([^%]+)%")
# The connection non-HTTP triggers need; Core Tools refuses to start them without it.
_STORAGE = "AzureWebJobsStorage"


class FunctionIndexError(Exception):
    """A function the host would refuse to index (and so never run)."""


def load_functions(module: str = "function_app") -> list[Any]:
    """`app.get_functions()` may be called once per app: index once per process."""
    if module not in _FUNCTIONS:
        app = importlib.import_module(module).app
        _FUNCTIONS[module] = list(app.get_functions())
    return _FUNCTIONS[module]


def load_local_settings(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json, as Core Tools reads them (every value a string)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read local settings: {exc}") from exc
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: 'Values' must be an object of app settings")
    if document.get("IsEncrypted"):
        raise ValueError(f"{path}: IsEncrypted=true is not supported here")
    bad = sorted(k for k, v in values.items() if not isinstance(v, str))
    if bad:
        raise ValueError(f"{path}: app settings are strings; {', '.join(bad)} is not")
    return dict(values)


def resolve(value: str, settings: Mapping[str, str], function_name: str = "") -> str:
    """A binding expression like `%HEALER_QUEUE_NAME%`, from app settings only (no default).

    The host refuses to index a function whose expression does not resolve, with
    "The 'NAME' function is in error: '%SETTING%' does not resolve to a value." (WebJobs SDK
    name resolution); the same text is raised here.
    """

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        found = settings.get(name)
        if found is None:
            raise FunctionIndexError(
                f"The '{function_name}' function is in error: '%{name}%' does not resolve to a value."
            )
        return found

    return _EXPRESSION.sub(lookup, value)


# ---------------------------------------------------------------------- NCRONTAB


def next_fire(expression: str, after: datetime) -> datetime:
    """The next time a six-field NCRONTAB expression (second minute hour day month weekday) fires."""
    from croniter import croniter

    if len(expression.split()) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
        raise ValueError(f"NCRONTAB needs six valid fields (second minute hour day month weekday), got {expression!r}")
    fire: datetime = croniter(expression, after, second_at_beginning=True).get_next(datetime)
    return fire


# ---------------------------------------------------------------------- the runner


@dataclass
class Stats:
    invocations: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    busy_s: float = 0.0
    poisoned: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, seconds: float, failed: bool) -> None:
        with self.lock:
            self.invocations[name] = self.invocations.get(name, 0) + 1
            self.busy_s += seconds
            if failed:
                self.failures[name] = self.failures.get(name, 0) + 1


class Runner:
    def __init__(
        self,
        *,
        app_settings: Mapping[str, str] | None = None,
        settings_file: Path | None = None,
        key: str | None = None,
        http_port: int = 7071,
        instances: int = 1,
        timer_interval_s: float | None = None,
        retry_delay_s: float | None = None,
        poll_interval_s: float = 0.2,
        processing_visibility_s: int = 120,
    ) -> None:
        """App settings come from `app_settings` or a local.settings.json (`settings_file`), never
        from this process's environment: the host knows only its app settings."""
        if (app_settings is None) == (settings_file is None):
            raise ValueError("pass exactly one of app_settings (a dict) or settings_file (a local.settings.json)")
        self.settings: dict[str, str] = (
            dict(app_settings) if app_settings is not None else load_local_settings(settings_file)  # type: ignore[arg-type]
        )
        bad = sorted(k for k, v in self.settings.items() if not isinstance(v, str))
        if bad:
            raise ValueError(f"app settings are strings; {', '.join(bad)} is not")
        host = json.loads((ROOT / "host.json").read_text())
        queues = host.get("extensions", {}).get("queues", {})
        self.max_dequeue = int(queues.get("maxDequeueCount", 5))
        self.retry_delay_s = retry_delay_s if retry_delay_s is not None else _seconds(queues.get("visibilityTimeout"))
        self.key = key or secrets.token_urlsafe(24)
        self.http_port = http_port
        self.instances = instances
        self.timer_interval_s = timer_interval_s
        self.poll_interval_s = poll_interval_s
        self.processing_visibility_s = processing_visibility_s
        self.stats = Stats()
        self.timer_paused = threading.Event()
        self.timer_running = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: ServiceServer | None = None
        self._saved_env: dict[str, str] | None = None
        # Indexing as the host does it: a function whose bindings do not resolve is left out
        # (and reported), the others run.
        self.errors: dict[str, str] = {}
        self.functions: list[Any] = []
        self.bindings: dict[str, dict[str, Any]] = {}
        for function in load_functions():
            name = function.get_function_name()
            try:
                self.bindings[name] = self._index(function)
            except FunctionIndexError as exc:
                self.errors[name] = str(exc)
                log.error("%s", exc)
                continue
            self.functions.append(function)
        self.timers = [f for f in self.functions if _trigger_type(f) == "timerTrigger"]
        self.queues = [f for f in self.functions if _trigger_type(f) == "queueTrigger"]
        self.routes = {
            (str(self.bindings[f.get_function_name()]["route"]).lower(), str(getattr(m, "value", m)).upper()): f
            for f in self.functions
            if _trigger_type(f) == "httpTrigger"
            for m in self.bindings[f.get_function_name()]["methods"]
        }

    def _index(self, function: Any) -> dict[str, Any]:
        """The trigger binding with every `%NAME%` resolved, or FunctionIndexError as the host says it."""
        name = function.get_function_name()
        trigger = _trigger_type(function)
        for binding in function.get_bindings():
            for value in binding.get_dict_repr().values():
                if isinstance(value, str):
                    resolve(value, self.settings, name)
        resolved = {
            k: resolve(v, self.settings, name) if isinstance(v, str) else v for k, v in _binding(function).items()
        }
        if trigger in ("timerTrigger", "queueTrigger"):
            connection = str(resolved.get("connection") or _STORAGE)
            if not any(k == connection or k.startswith(f"{connection}__") for k in self.settings):
                raise FunctionIndexError(
                    f"The '{name}' function is in error: Missing value for {connection} in the app settings. "
                    "This is required for all triggers other than httptrigger."
                )
        if trigger == "timerTrigger" and self.timer_interval_s is None:
            try:
                next_fire(str(resolved["schedule"]), datetime.now(UTC))
            except ValueError as exc:
                raise FunctionIndexError(f"The '{name}' function is in error: {exc}") from exc
        return resolved

    def set_app_setting(self, name: str, value: str) -> None:
        """Change one app setting (in Azure this restarts the app; the caller drops cached state)."""
        self.settings[name] = value
        if self._saved_env is not None:
            os.environ[name] = value

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def start(self) -> Runner:
        # The worker sees the app settings as environment variables, as in Azure.
        self._saved_env = dict(os.environ)
        os.environ.update(self.settings)
        self._stop.clear()
        self._server = ServiceServer("functions", self._http, None, self.http_port).start()
        for function in self.timers:
            self._spawn(f"timer-{function.get_function_name()}", self._timer_loop, function)
        for function in self.queues:
            for n in range(self.instances):
                self._spawn(f"queue-{function.get_function_name()}-{n}", self._queue_loop, function)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._saved_env is not None:
            os.environ.clear()
            os.environ.update(self._saved_env)
            self._saved_env = None

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Callable[[Any], None], function: Any) -> None:
        thread = threading.Thread(target=target, args=(function,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _invoke(self, function: Any, *args: Any) -> Any:
        name = function.get_function_name()
        started = time.perf_counter()
        failed = False
        try:
            return function.get_user_function()(*args)
        except Exception:
            failed = True
            raise
        finally:
            self.stats.record(name, time.perf_counter() - started, failed)

    # ------------------------------------------------------------------ timer

    def pause_timer(self, timeout_s: float = 30) -> None:
        """Stop timer invocations and wait for a running one to finish."""
        self.timer_paused.set()
        deadline = time.monotonic() + timeout_s
        while self.timer_running.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)

    def run_timer_now(self) -> None:
        from azure.functions import timer

        for function in self.timers:
            self._invoke(function, timer.TimerRequest(past_due=False))

    def _timer_loop(self, function: Any) -> None:
        from azure.functions import timer

        schedule = str(self.bindings[function.get_function_name()]["schedule"])
        while not self._stop.is_set():
            if self.timer_interval_s is not None:
                wait = self.timer_interval_s
            else:
                now = datetime.now(UTC)
                wait = (next_fire(schedule, now) - now).total_seconds()
            if self._stop.wait(wait):
                return
            if self.timer_paused.is_set():
                continue
            self.timer_running.set()
            try:
                self._invoke(function, timer.TimerRequest(past_due=False))
            except Exception:
                log.exception("timer function %s failed", function.get_function_name())
            finally:
                self.timer_running.clear()

    # ------------------------------------------------------------------ queue

    def _queue_client(self, name: str) -> Any:
        from shared.adapters.storage import queue_client

        # The host's own connection setting, base64 messages as host.json says.
        return queue_client(name, self.settings[_STORAGE])

    def _queue_loop(self, function: Any) -> None:
        import azure.functions.queue as fq
        from azure.core.exceptions import AzureError, ResourceExistsError

        name = str(self.bindings[function.get_function_name()]["queueName"])
        queue, poison = self._queue_client(name), self._queue_client(f"{name}-poison")
        for client in (queue, poison):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
        while not self._stop.is_set():
            try:
                messages = list(queue.receive_messages(max_messages=1, visibility_timeout=self.processing_visibility_s))
            except AzureError:
                log.warning("queue %s unreachable; retrying", name)
                self._stop.wait(1)
                continue
            if not messages:
                self._stop.wait(self.poll_interval_s)
                continue
            for message in messages:
                body = message.content
                request = fq.QueueMessage(  # type: ignore[no-untyped-call]
                    id=message.id, body=body, dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt
                )
                try:
                    self._invoke(function, request)
                except Exception:
                    log.exception(
                        "queue function %s failed (try %s)", function.get_function_name(), message.dequeue_count
                    )
                    if (message.dequeue_count or 0) >= self.max_dequeue:
                        poison.send_message(body)
                        queue.delete_message(message)
                        with self.stats.lock:
                            self.stats.poisoned += 1
                    else:
                        queue.update_message(message, visibility_timeout=int(self.retry_delay_s))
                    continue
                queue.delete_message(message)

    # ------------------------------------------------------------------ HTTP

    def _http(self, request: Request) -> Response:
        import azure.functions as func

        path = request.path
        if not path.startswith("/api/"):
            return json_response({"error": {"code": "NotFound", "message": f"no route {path}"}}, 404)
        route = path[len("/api/") :].strip("/").lower()
        function = self.routes.get((route, request.method.upper()))
        if function is None:
            known = any(r == route for r, _ in self.routes)
            status, code = (405, "MethodNotAllowed") if known else (404, "NotFound")
            return json_response({"error": {"code": code, "message": f"{request.method} {path}"}}, status)
        level = self.bindings[function.get_function_name()].get("authLevel")
        level_text = str(getattr(level, "value", level or "function")).lower()
        supplied = request.headers.get("x-functions-key") or request.args.get("code")
        if level_text != "anonymous" and not (supplied and secrets.compare_digest(supplied, self.key)):
            return Response(status=401)
        params = {k: v for k, v in request.args.items() if k != "code"}
        http_request = func.HttpRequest(
            request.method,
            request.url,
            headers=dict(request.headers),
            params=params,
            route_params={},
            body=request.get_data(),
        )
        answer = self._invoke(function, http_request)
        headers = dict(answer.headers)
        headers.pop("Content-Type", None)
        return Response(answer.get_body(), status=answer.status_code, headers=headers, mimetype=answer.mimetype)


def _trigger_type(function: Any) -> str:
    return str(function.get_trigger().get_dict_repr()["type"])


def _binding(function: Any) -> dict[str, Any]:
    result: dict[str, Any] = function.get_trigger().get_dict_repr()
    return result


def _seconds(text: Any) -> float:
    if not text:
        return 0.0
    hours, minutes, seconds = (float(x) for x in str(text).split(":"))
    return hours * 3600 + minutes * 60 + seconds
