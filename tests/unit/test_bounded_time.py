"""Bounded time: one retry budget per call that no Retry-After can stretch, and ADX calls that
carry a server timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.iotcentral import IoTCentralAdapter
from shared.adapters.iotcentral_model import IotcError
from shared.adapters.kusto import KustoAdapter


class _Token:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("t", int(time.time()) + 3600)


@pytest.fixture
def throttling_server() -> Iterator[tuple[str, list[float]]]:
    """Answers every request 429 with Retry-After: 30 (a long wait a budget must cut short)."""
    seen: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(time.monotonic())
            self.send_response(429)
            self.send_header("Retry-After", "30")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{{subdomain}}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_retry_after_past_the_budget_is_cut_to_the_budget(throttling_server: tuple[str, list[float]]) -> None:
    template, seen = throttling_server
    adapter = IoTCentralAdapter(template, _Token(), timeout_s=2, retry_budget_s=2)
    started = time.monotonic()
    with pytest.raises(IotcError):
        adapter.exports("contoso")
    took = time.monotonic() - started
    assert seen  # asked once, then waited as told, but only until the budget ran out
    assert 1.5 < took < 6, f"{took:.1f} s for a 2 s budget (Retry-After asked for 30)"


def test_adx_calls_carry_the_server_timeout() -> None:
    adapter = KustoAdapter("https://x.westeurope.kusto.windows.net", _Token(), server_timeout_s=45)
    assert adapter._properties().get_option("servertimeout", None) == timedelta(seconds=45)
