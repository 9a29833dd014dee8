"""A threaded loopback HTTP server for one stand-in service, with fault injection in front."""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from sandbox.faults import Faults

LOOPBACK = "127.0.0.1"
Handler = Callable[[Request], Response]

# werkzeug logs every request at INFO; the sandbox is chatty enough without it.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers or {}, content_type="application/json; charset=utf-8"
    )


def drop_connection(environ: WSGIEnvironment) -> None:
    """Drop the connection without an answer, as a dying front end or load balancer would.

    Only shut down, never close: the server thread still holds the socket, and closing a file
    descriptor under it could hit a newer connection that reused the number.
    """
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)


class ServiceServer:
    """One service on 127.0.0.1: `port=0` picks a free port. Started in a daemon thread."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        faults: Faults | None = None,
        port: int = 0,
        fault_error: Callable[[int, float], Response] | None = None,
    ) -> None:
        self.name = name
        self._handler = handler
        self._faults = faults
        self._fault_error = fault_error
        self._server: BaseWSGIServer = make_server(LOOPBACK, port, self._wsgi, threaded=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> ServiceServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if self._faults is not None:
            decision = self._faults.http_decision(self.name, request.path)
            if decision.latency_s > 0:
                time.sleep(decision.latency_s)
            if decision.reset:
                drop_connection(environ)
                start_response("500 Connection dropped", [])
                return []
            if decision.status and self._fault_error is not None:
                return self._fault_error(decision.status, decision.retry_after_s)(environ, start_response)
        try:
            response = self._handler(request)
        except Exception:  # a stand-in must answer, never hang the client
            logging.getLogger(__name__).exception("sandbox %s crashed on %s", self.name, request.path)
            response = json_response(
                {"error": {"code": "InternalServerError", "message": "sandbox handler failed"}}, 500
            )
        return response(environ, start_response)
