"""The Log Analytics adapter's error, apart from the adapter so that pure modules which report it
(root_cause) need not import the adapter, which imports them."""

from __future__ import annotations


class LogAnalyticsError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status; None when no answer came
