"""Transport faults (throttling, 5xx, connection resets, latency) for the stand-in services.

Scenario faults (stale permission, removed principal, ...) change service state and live in
`sandbox.scenarios`; this module decides, per request, whether the wire misbehaves.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

SERVICES = ("kusto", "iotcentral", "loganalytics")


@dataclass
class TransportFaults:
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    reset_rate: float = 0.0
    latency_s: float = 0.0
    retry_after_s: float = 1.0
    error_status: int = 503


@dataclass(frozen=True)
class Decision:
    status: int = 0
    retry_after_s: float = 0.0
    reset: bool = False
    latency_s: float = 0.0


@dataclass
class Counters:
    requests: int = 0
    throttled: int = 0
    errors: int = 0
    resets: int = 0


@dataclass
class Faults:
    seed: int = 7
    _per_service: dict[str, TransportFaults] = field(default_factory=dict)
    counters: dict[str, Counters] = field(default_factory=lambda: {s: Counters() for s in SERVICES})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def set_transport(self, service: str, faults: TransportFaults) -> None:
        if service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}, not {service!r}")
        for name in ("throttle_rate", "error_rate", "reset_rate"):
            value = getattr(faults, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value!r}")
        if faults.throttle_rate + faults.error_rate + faults.reset_rate > 1.0:
            raise ValueError("throttle_rate + error_rate + reset_rate must not exceed 1")
        if faults.latency_s < 0 or faults.retry_after_s < 0:
            raise ValueError("latency_s and retry_after_s must not be negative")
        if not 500 <= faults.error_status <= 599:
            raise ValueError(f"error_status must be a 5xx status, not {faults.error_status!r}")
        with self._lock:
            self._per_service[service] = faults

    def clear_transport(self, service: str | None = None) -> None:
        with self._lock:
            if service is None:
                self._per_service.clear()
            else:
                self._per_service.pop(service, None)

    def transport(self, service: str) -> TransportFaults:
        with self._lock:
            return self._per_service.get(service, TransportFaults())

    def http_decision(self, service: str, path: str) -> Decision:
        # The token endpoint and the control plane of the sandbox itself never misbehave.
        if service not in SERVICES or path.endswith("/v1/rest/auth/metadata"):
            return Decision()
        with self._lock:
            counters = self.counters[service]
            counters.requests += 1
            faults = self._per_service.get(service)
            if faults is None:
                return Decision()
            draw = self._rng.random()
            if draw < faults.throttle_rate:
                counters.throttled += 1
                return Decision(status=429, retry_after_s=faults.retry_after_s, latency_s=faults.latency_s)
            draw -= faults.throttle_rate
            if draw < faults.error_rate:
                counters.errors += 1
                return Decision(status=faults.error_status, latency_s=faults.latency_s)
            draw -= faults.error_rate
            if draw < faults.reset_rate:
                counters.resets += 1
                return Decision(reset=True, latency_s=faults.latency_s)
            return Decision(latency_s=faults.latency_s)
