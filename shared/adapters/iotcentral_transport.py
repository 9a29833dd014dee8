"""IoT Central's transport: one azure-core pipeline per token scope (bounded retries, timeouts, a
bearer token), requests spaced per app within IoT Central's documented rate, answers read as JSON
and failures as IotcError, and paging through `nextLink`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from shared.adapters.iotcentral_model import IotcError

API_VERSION = "2022-10-31-preview"
IOTC_SCOPE = "https://apps.azureiotcentral.com/.default"
REQUESTS_PER_SECOND = 20.0  # IoT Central's documented data-plane limit per app
# The query API allows about one request per second per app; a little slower, so the service's
# own clock never sees two inside one second.
QUERY_INTERVAL_S = 1.05


class RateLimiter:
    """Requests per key (an app) spaced at least 1/rate seconds apart, across all threads."""

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def acquire(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next.get(key, now))
            self._next[key] = start + 1.0 / self.rate
        if start > now:
            self._sleep(start - now)


def _session() -> Any:
    import requests

    session = requests.Session()
    # A pool per app host (many apps), each as deep as the cycle's concurrency (requests: 10 and 10).
    adapter = requests.adapters.HTTPAdapter(pool_connections=256, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _loopback(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "http://localhost"))


class IotcTransport:
    def __init__(
        self,
        base_url_template: str,
        credential: Any,
        arm_url: str = "https://management.azure.com",
        rate_per_app: float = REQUESTS_PER_SECOND,
        timeout_s: float = 30.0,
        retry_budget_s: float = 60.0,
    ) -> None:
        self._timeout = timeout_s
        self._budget = retry_budget_s
        self._template = base_url_template
        self._credential = credential
        self._arm_url = arm_url.rstrip("/")
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._limiter = RateLimiter(rate_per_app)
        self._query_limiter = RateLimiter(1.0 / QUERY_INTERVAL_S)
        self.requests = 0
        self.queries = 0

    def _client(self, scope: str) -> Any:
        """One pipeline per token scope for every app: one token, one connection pool (a client
        per app would hold a thousand sessions for a thousand apps)."""
        with self._lock:
            client = self._clients.get(scope)
            if client is None:
                from azure.core import PipelineClient
                from azure.core.pipeline.policies import BearerTokenCredentialPolicy, HeadersPolicy, UserAgentPolicy
                from azure.core.pipeline.transport import RequestsTransport

                from shared.config.timeouts import bounded_retry_policy

                client = PipelineClient(
                    base_url="",
                    policies=[
                        HeadersPolicy(),
                        UserAgentPolicy("iotc-adx-healer"),
                        # Retries 408/429/5xx, honouring Retry-After, within one budget per call.
                        bounded_retry_policy(self._budget),
                        BearerTokenCredentialPolicy(self._credential, scope),
                    ],
                    # azure-core's defaults are 300 s to connect and to read.
                    transport=RequestsTransport(
                        session=_session(), connection_timeout=self._timeout, read_timeout=self._timeout
                    ),
                )
                self._clients[scope] = client
            return client

    def _call(
        self,
        base_url: str,
        scope: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        content_type: str | None = None,
        limit_key: str | None = None,
    ) -> Any:
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.core.rest import HttpRequest

        client = self._client(scope)
        url = path if path.startswith("http") else base_url.rstrip("/") + path
        headers = {"Content-Type": content_type} if content_type else None
        request = HttpRequest(method, url, params=params, json=json_body, headers=headers)
        if limit_key:
            self._limiter.acquire(limit_key)
        self.requests += 1
        try:
            response = client.send_request(request, enforce_https=not _loopback(base_url))
            response.raise_for_status()
        except HttpResponseError as exc:
            code, message = "HttpError", str(exc.message or exc)
            try:
                body = json.loads(exc.response.text()) if exc.response is not None else {}
                code = body["error"]["code"]
                message = body["error"]["message"]
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
            raise IotcError(exc.status_code, code, message) from exc
        except AzureError as exc:
            raise IotcError(None, type(exc).__name__, str(exc)[:300]) from exc
        text = response.text()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:  # a gateway's page, a proxy's error: not IoT Central's answer
            kind = response.headers.get("Content-Type") or "no content type"
            where = path.split("?", 1)[0]
            raise IotcError(
                response.status_code,
                "UnexpectedBody",
                f"{method} {where} answered {response.status_code} ({kind}, {len(text)} characters) "
                "with a body that is not JSON",
            ) from exc

    def _app(self, app: str, method: str, path: str, **kwargs: Any) -> Any:
        base = self._template.format(subdomain=app)
        params = {"api-version": API_VERSION} if not path.startswith("http") else None
        return self._call(base, IOTC_SCOPE, method, path, params=params, limit_key=app, **kwargs)

    def pages(self, app: str, path: str) -> Iterator[dict[str, Any]]:
        page = self._app(app, "GET", path)
        while True:
            yield from page.get("value", [])
            next_link = page.get("nextLink")
            if not next_link:
                return
            page = self._app(app, "GET", next_link)
