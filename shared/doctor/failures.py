"""Failures, classified: could a retry later answer differently (then the line cannot tell), and
what HTTP status an adapter's or SDK's error carries."""

from __future__ import annotations

from shared.adapters.kusto_errors import AdxError


def transient(exc: Exception) -> bool:
    """Could a retry later answer differently (network, throttling, 5xx)? Then: cannot tell."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    from shared.adapters.iotcentral_model import IotcError
    from shared.adapters.loganalytics_errors import LogAnalyticsError

    if isinstance(exc, AdxError):
        return exc.transient
    if isinstance(exc, IotcError | LogAnalyticsError):
        return exc.status is None or exc.status == 429 or exc.status >= 500
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    status = getattr(exc, "status_code", None)
    return not isinstance(status, int) or status == 429 or status >= 500


def status_of(exc: Exception) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None
