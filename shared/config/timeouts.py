"""Bounded time for every HTTP call the healer makes.

One retry budget per call: a retry policy that never sleeps past the call's budget (a long
Retry-After is cut to what is left, and then the call gives up), and per-request connect and read
timeouts. A step is a handful of such calls, so a lease a little longer than the worst-case step
can never lapse while its holder is still acting (settings validation enforces that).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.pipeline.policies import RetryPolicy

# azure-kusto-data gives the client this much longer than the server timeout it asks for.
KUSTO_CLIENT_MARGIN_S = 30.0


def bounded_retry_policy(budget_s: float, retries: int = 4, backoff_max_s: float = 8.0) -> RetryPolicy[Any, Any]:
    """An azure-core retry policy whose sleeps end at the budget (azure-core's own absolute timeout
    is checked only after a sleep, so it can oversleep by a whole Retry-After)."""
    from azure.core.pipeline.policies import RetryPolicy

    class BoundedRetryPolicy(RetryPolicy[Any, Any]):
        def configure_retries(self, options: dict[str, object]) -> dict[str, object]:
            settings: dict[str, object] = super().configure_retries(options)
            settings["deadline"] = time.monotonic() + float(str(settings["timeout"]))
            return settings

        def sleep(self, settings: dict[str, object], transport: object, response: object = None) -> None:
            left = float(str(settings["deadline"])) - time.monotonic()
            wait = None
            if response is not None:
                wait = self.get_retry_after(response)  # type: ignore[arg-type]
            if wait is None:
                wait = self.get_backoff_time(settings)
            if left > 0:
                time.sleep(min(wait, left))

    return BoundedRetryPolicy(
        retry_total=retries, retry_backoff_factor=0.5, retry_backoff_max=int(backoff_max_s), timeout=int(budget_s)
    )
