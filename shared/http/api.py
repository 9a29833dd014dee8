"""The HTTP routes, independent of the Functions runtime: (method, route, headers, body) → response.

Bad input gets a 4xx naming the field and value; nothing here answers 500. Routes:
  POST /api/heal      {"target": "<app>:<export>:<destination>", "dry_run": false}
  GET  /api/targets   state, last outcome, cooldown and escalation per target
  POST /api/alerts    Azure Monitor common alert schema
  GET  /api/health    ?deep=true runs the doctor (shared/doctor/): read-only, every target
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024


@dataclass
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return json.dumps(self.body, default=str)


def error(status: int, code: str, message: str, field_name: str | None = None) -> ApiResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field_name:
        body["field"] = field_name
    return ApiResponse(status, {"error": body})


def json_object(body: bytes, headers: Mapping[str, str], limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    content_type = _header(headers, "content-type").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(
            415, "UnsupportedMediaType", f"Content-Type={content_type!r} must be application/json", "Content-Type"
        )
    if len(body) > limit:
        raise ApiError(413, "PayloadTooLarge", f"body is {len(body)} bytes; at most {limit} are accepted", "body")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "InvalidJson", f"body is not JSON: {exc}", "body") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "InvalidBody", f"body must be a JSON object, not {type(value).__name__}", "body")
    return value


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.response = error(status, code, message, field_name)


Handler = Callable[[Mapping[str, str], Mapping[str, str], bytes], ApiResponse]


def dispatch(
    routes: dict[tuple[str, str], Handler],
    method: str,
    route: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
) -> ApiResponse:
    handler = routes.get((method.upper(), route.strip("/").lower()))
    if handler is None:
        allowed = sorted(m for m, r in routes if r == route.strip("/").lower())
        if allowed:
            return error(405, "MethodNotAllowed", f"{method} is not allowed here; use {', '.join(allowed)}")
        return error(404, "NotFound", f"no route {route!r}")
    try:
        return handler(params, headers, body)
    except ApiError as exc:
        return exc.response
    except Exception:  # never a stack trace; 503 lets callers (and action groups) retry
        log.exception("%s /api/%s failed", method, route)
        return error(503, "Unavailable", "the healer could not handle the request now; retry later")
