"""Calls to the running Function App over HTTP, and what the tests read back from the sandbox."""

from __future__ import annotations

import json
from typing import Any

import requests

from sandbox.runner import Runner
from sandbox.world import World

CONTOSO = "contoso:export-1:adx-1"


def call(
    runner: Runner,
    method: str,
    route: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
    key: bool = True,
    token: str | None = None,
) -> requests.Response:
    headers = {"Content-Type": content_type}
    if key:
        headers["x-functions-key"] = runner.key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    return requests.request(method, f"{runner.url}/api/{route}", data=data, headers=headers, timeout=30)


def broken(world: World, app: str = "contoso") -> bool:
    return world.iotc.apps[app].exports["export-1"].get("status") == "error"
