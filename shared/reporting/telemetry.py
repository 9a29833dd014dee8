"""Telemetry through the Azure Monitor OpenTelemetry distro (`azure-monitor-opentelemetry`).

Nothing is exported, and OpenTelemetry is not even imported, unless
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set: local runs stay offline and a cold start without
telemetry pays nothing. With it, `configure_azure_monitor` (distro docs: connection string from
the environment, `credential` for Entra ID authentication, `logger_name` for the logs it ships)
sets the global tracer and meter providers that the spans and metrics below use. Tests install
in-memory SDK providers with `use_providers`.

Metrics (exported to Application Insights' `customMetrics`, name = instrument name, attributes in
`customDimensions`; the Bicep alert rules and the workbook query them):
  healer.remediations       count, by outcome and diagnosis
  healer.time_to_heal       seconds from the run's first step to a verified healing
  healer.escalations        count, by reason kind
  healer.overdue_readds     count, re-adds the recovery sweep had to do
  healer.data_gap_minutes   minutes of data missing before a backfill
  healer.rows_recovered     rows a backfill brought back
  healer.incidents          count, by kind (what people are notified of)
  healer.escalated_targets  gauge, 1 per target escalated now (each detection cycle)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# The distro ships records of this logger only: the Functions host already ships everything else.
TELEMETRY_LOGGER = "iotc_adx_healer.telemetry"
_lock = threading.Lock()
_state: dict[str, Any] = {"configured": False, "tracer": None, "meter": None, "instruments": {}}

_COUNTERS = {
    "healer.remediations": ("1", "Remediation runs that ended, by outcome and diagnosis"),
    "healer.escalations": ("1", "Targets escalated to people"),
    "healer.overdue_readds": ("1", "Re-adds done by the recovery sweep because they were overdue"),
    "healer.rows_recovered": ("1", "Rows a backfill recovered"),
    "healer.incidents": ("1", "Incidents raised to people (one per incident)"),
}
_GAUGES = {
    "healer.escalated_targets": ("1", "1 per target escalated now (recorded every detection cycle)"),
}
_HISTOGRAMS = {
    "healer.time_to_heal": ("s", "Seconds from a run's first step to its verified healing"),
    "healer.data_gap_minutes": ("min", "Minutes of data missing before a backfill"),
}


def _aad_client_id() -> str | None:
    """`APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD;ClientId=<id>` (the setting the
    Functions host reads when local authentication is off) means: authenticate as that identity."""
    text = os.environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "")
    if "authorization=aad" not in text.lower():
        return None
    match = re.search(r"ClientId=([0-9a-fA-F-]{36})", text)
    return match.group(1) if match else ""


def configure() -> bool:
    """Once per process; True when telemetry is exported. Never raises: telemetry is optional."""
    with _lock:
        if _state["configured"]:
            return _state["tracer"] is not None
        _state["configured"] = True
        connection = os.environ.get(CONNECTION_SETTING, "").strip()
        if not connection:
            return False
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
            from opentelemetry import metrics, trace

            kwargs: dict[str, Any] = {"connection_string": connection, "logger_name": TELEMETRY_LOGGER}
            client_id = _aad_client_id()
            if client_id is not None:
                from azure.identity import ManagedIdentityCredential

                kwargs["credential"] = ManagedIdentityCredential(client_id=client_id or None)
            configure_azure_monitor(**kwargs)
            _state["tracer"] = trace.get_tracer("iotc_adx_healer")
            _state["meter"] = metrics.get_meter("iotc_adx_healer")
        except Exception as exc:  # a bad connection string must not stop the healer
            log.warning("telemetry disabled: %s", type(exc).__name__)
            return False
        return True


def use_providers(tracer_provider: Any, meter_provider: Any) -> None:
    """Export to the given SDK providers (tests: in-memory exporters)."""
    with _lock:
        _state.update(
            configured=True,
            tracer=tracer_provider.get_tracer("iotc_adx_healer"),
            meter=meter_provider.get_meter("iotc_adx_healer"),
            instruments={},
        )


def reset() -> None:
    with _lock:
        _state.update(configured=False, tracer=None, meter=None, instruments={})


def enabled() -> bool:
    return bool(_state["configured"] and _state["tracer"] is not None)


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span when telemetry is on (exceptions are recorded by the SDK), else nothing."""
    configure()
    tracer = _state["tracer"]
    if tracer is None:
        yield None
        return
    clean = {k: v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, attributes=clean) as current:
        yield current


def _instrument(name: str) -> Any:
    meter = _state["meter"]
    if meter is None:
        return None
    instruments: dict[str, Any] = _state["instruments"]
    if name not in instruments:
        if name in _COUNTERS:
            unit, description = _COUNTERS[name]
            instruments[name] = meter.create_counter(name, unit=unit, description=description)
        elif name in _GAUGES:
            unit, description = _GAUGES[name]
            instruments[name] = meter.create_gauge(name, unit=unit, description=description)
        else:
            unit, description = _HISTOGRAMS[name]
            instruments[name] = meter.create_histogram(name, unit=unit, description=description)
    return instruments[name]


def count(name: str, value: float = 1, **attributes: str) -> None:
    configure()
    instrument = _instrument(name)
    if instrument is not None:
        instrument.add(value, attributes)


def record(name: str, value: float, **attributes: str) -> None:
    """A histogram value, or a gauge's current value."""
    configure()
    instrument = _instrument(name)
    if instrument is not None:
        (instrument.set if name in _GAUGES else instrument.record)(value, attributes)
