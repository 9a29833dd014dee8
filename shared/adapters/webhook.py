"""An incoming webhook (Slack's, or a Teams Workflows URL) over an azure-core pipeline. The URL is a
secret: it is never logged, errors are logged by type only, and urllib3's request lines are
redacted."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class _Redact(logging.Filter):
    """urllib3 logs every request line (method and path) at DEBUG: the webhook's path is its secret."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.secret in text:
            record.msg, record.args = text.replace(self.secret, "<webhook secret redacted>"), ()
        return True


_redacting: set[str] = set()


def _redact_in_transport_logs(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    for secret in (parts.path, parts.query):  # Teams workflow URLs carry their signature in the query
        if len(secret) > 1 and secret not in _redacting:
            _redacting.add(secret)
            logging.getLogger("urllib3.connectionpool").addFilter(_Redact(secret))


class Webhook:
    def __init__(self, url: str, timeout_s: float = 10) -> None:
        self.url = url
        self._timeout_s = timeout_s
        self._client: Any = None
        _redact_in_transport_logs(url)

    def __repr__(self) -> str:  # never show the URL
        return "Webhook(<secret>)"

    def post(self, body: dict[str, Any], what: str) -> bool:
        """POST `body` as JSON; False (logged without the URL) when it was not accepted."""
        from azure.core import PipelineClient
        from azure.core.exceptions import AzureError
        from azure.core.pipeline.policies import RetryPolicy
        from azure.core.rest import HttpRequest

        if self._client is None:
            self._client = PipelineClient(base_url="", policies=[RetryPolicy(retry_total=3, timeout=30)])
        request = HttpRequest("POST", self.url, json=body, headers={"Content-Type": "application/json"})
        try:
            response = self._client.send_request(
                request, connection_timeout=self._timeout_s, read_timeout=self._timeout_s
            )
        except AzureError as exc:  # the message may hold the URL: log the type only
            log.warning("webhook notification for %s failed: %s", what, type(exc).__name__)
            return False
        if response.status_code >= 300:
            log.warning("webhook notification for %s answered %d", what, response.status_code)
            return False
        return True
