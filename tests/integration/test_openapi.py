"""openapi.json is a valid OpenAPI document, names exactly the app's routes, and every answer the
running app gives matches the documented schema for its status."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from sandbox.healer_config import ALERT_AUDIENCE
from sandbox.runner import Runner, load_functions
from sandbox.world import World
from tests.support.helpers import wait_until
from tests.support.openapi_check import SPEC, check

pytestmark = pytest.mark.integration


def test_the_document_is_valid_openapi() -> None:
    validate(SPEC)


def test_documented_routes_are_the_apps_routes() -> None:
    documented = {(path.strip("/"), method.upper()) for path, ops in SPEC["paths"].items() for method in ops}
    wired = set()
    for function in load_functions():
        trigger = function.get_trigger().get_dict_repr()
        if trigger["type"] == "httpTrigger":
            wired |= {(trigger["route"], str(getattr(m, "value", m)).upper()) for m in trigger["methods"]}
    assert documented == wired


def test_answers_match_the_document(app: tuple[World, Runner]) -> None:
    world, runner = app
    key = {"x-functions-key": runner.key}

    webhook = {"Authorization": f"Bearer {world.directory.mint_action_group(ALERT_AUDIENCE)}"}

    def send(method: str, route: str, body: Any = None, content_type: str = "application/json") -> None:
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        credential = webhook if route == "alerts" else key
        response = requests.request(
            method,
            f"{runner.url}/api/{route}",
            data=data,
            headers={**credential, "Content-Type": content_type},
            timeout=30,
        )
        check(route, method, response)

    send("GET", "health")
    send("GET", "targets")
    send("POST", "heal", {"target": "contoso:export-1:adx-1", "dry_run": True})
    send("POST", "heal", {"target": "nope:e:d"})
    send("POST", "heal", {"target": 1})
    send("POST", "heal", b"x", "text/plain")
    world.inject("principal-removed", "contoso")
    wait_until(lambda: world.iotc.apps["contoso"].exports["export-1"]["status"] == "error", 10, "the break")
    send("POST", "heal", {"target": "contoso:export-1:adx-1"})
    send("POST", "heal", {"target": "contoso:export-1:adx-1"})  # 409: already queued
    world.inject("stale-permission", "fabrikam")  # a plan with remedies in order
    wait_until(lambda: world.iotc.apps["fabrikam"].exports["export-1"]["status"] == "error", 10, "the break")
    send("POST", "heal", {"target": "fabrikam:export-1:adx-1", "dry_run": True})
    alert = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": {"alertId": "a-1", "monitorCondition": "Fired", "alertTargetIDs": []}},
    }
    send("POST", "alerts", alert)
    send("POST", "alerts", alert)  # duplicate
    send("POST", "alerts", {"schemaId": "other"})
    send("POST", "alerts", b"x" * (300 * 1024))
    webhook = {}
    send("POST", "alerts", alert)  # 401: no token
