"""The whole sandbox put together: the stage (sandbox/stage.py) served on 127.0.0.1 (Entra ID, ADX,
IoT Central with its data export, Log Analytics) with the control API (`sandbox/control.py`), and
the faults of `sandbox/scenarios.py` injected and cleared."""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.wrappers import Response

from sandbox import monitor, scenarios
from sandbox.adx import server as adx_server
from sandbox.control import Control
from sandbox.entra import TokenEndpoint
from sandbox.httpserver import Handler, ServiceServer
from sandbox.iotc import server as iotc_server
from sandbox.stage import HEALER, ActiveFault, Stage


class World(Stage):
    def start(self, ports: dict[str, int] | None = None) -> World:
        ports = ports or {}
        handlers: dict[str, tuple[Handler, Callable[[int, float], Response] | None]] = {
            "kusto": (adx_server.KustoService(self.cluster, self.directory), adx_server.transport_error),
            "iotcentral": (self.iotc, iotc_server.transport_error),
            "loganalytics": (self.la, monitor.transport_error),
            "identity": (TokenEndpoint(self.directory, HEALER), None),
            "control": (Control(self), None),
        }
        try:
            for name, (handler, fault_error) in handlers.items():
                self.servers[name] = ServiceServer(name, handler, self.faults, ports.get(name, 0), fault_error).start()
        except OSError:
            self.stop()
            raise
        self.cluster.url = self.servers["kusto"].url
        self.iotc.base_url = self.servers["iotcentral"].url
        return self

    def stop(self) -> None:
        self.delivery.stop()
        if self.ingestion is not None:
            self.ingestion.stop()
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, kind: str, subdomain: str) -> ActiveFault:
        """Break one app's export the way operators see it break. Returns the fault (with undo)."""
        return scenarios.inject(self, kind, subdomain)

    def clear(self, kind: str, subdomain: str) -> None:
        """Undo a fault by hand (as an operator would); a healed fault is simply forgotten."""
        scenarios.clear(self, kind, subdomain)
