"""The alert webhook's credential opens the webhook only, and manual heals are rate limited per
target whoever holds a key. Through the local runner, with the sandbox's Entra stand-in
publishing its signing keys (JWKS) and minting the token an action group's secure webhook sends."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
import requests

from sandbox.entra import Directory
from sandbox.healer_config import ALERT_AUDIENCE, ALERT_CLIENT_ID
from sandbox.runner import Runner
from sandbox.world import World
from shared import entrypoints
from tests.support.helpers import wait_until

pytestmark = pytest.mark.integration
CONTOSO = "contoso:export-1:adx-1"
ALERT = {
    "schemaId": "azureMonitorCommonAlertSchema",
    "data": {"essentials": {"alertId": "cred-1", "monitorCondition": "Resolved", "alertTargetIDs": []}},
}


def send(runner: Runner, method: str, route: str, headers: dict[str, str], body: Any = None) -> requests.Response:
    return requests.request(
        method,
        f"{runner.url}/api/{route}",
        json=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_action_group_token_opens_the_webhook_and_nothing_else(app: tuple[World, Runner]) -> None:
    world, runner = app
    token = world.directory.mint_action_group(ALERT_AUDIENCE)
    assert send(runner, "POST", "alerts", bearer(token), ALERT).status_code == 202
    # The same token on the other routes: the host wants a function key there.
    assert send(runner, "POST", "heal", bearer(token), {"target": CONTOSO, "dry_run": True}).status_code == 401
    assert send(runner, "GET", "targets", bearer(token)).status_code == 401
    assert requests.get(f"{runner.url}/api/targets?code={token}", timeout=10).status_code == 401
    # A function key does not open the webhook: it is not the webhook's credential.
    answer = send(runner, "POST", "alerts", {"x-functions-key": runner.key}, ALERT)
    assert answer.status_code == 401 and answer.json()["error"]["field"] == "Authorization"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("audience", [ALERT_AUDIENCE, ALERT_CLIENT_ID], ids=["identifier-uri", "client-id"])
def test_v1_and_v2_tokens_are_accepted_with_either_audience(
    app: tuple[World, Runner], version: int, audience: str
) -> None:
    """The application pins v2 tokens (`aud` its client id), yet a v1 token (`aud` the identifier
    URI asked for) must pass too: an action group does not retry a 401."""
    world, runner = app
    token = world.directory.mint_action_group(audience, version=version)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert ("appid" in claims) is (version == 1) and ("azp" in claims) is (version == 2)
    assert send(runner, "POST", "alerts", bearer(token), ALERT).status_code == 202


@pytest.mark.parametrize(
    ("version", "claims", "why"),
    [
        (2, {"aud": "5d8c7a3e-0000-4b6a-9c0d-7e1f2a3b4c5d"}, "aud"),
        (2, {"iss": "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0"}, "iss"),
        (2, {"azp": "11111111-1111-1111-1111-111111111111"}, "azp"),
        (2, {"roles": ["Something.Else"]}, "ActionGroupsSecureWebhook"),
    ],
)
def test_v2_tokens_that_are_not_the_action_groups_are_refused(
    app: tuple[World, Runner], version: int, claims: dict[str, Any], why: str
) -> None:
    world, runner = app
    token = world.directory.mint_action_group(ALERT_CLIENT_ID, version=version, **claims)
    answer = send(runner, "POST", "alerts", bearer(token), ALERT)
    assert answer.status_code == 401 and why in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "api://someone-else"}, "aud"),
        ({"iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000001/"}, "iss"),
        ({"tid": "00000000-0000-0000-0000-000000000001"}, "tid"),
        ({"appid": "11111111-1111-1111-1111-111111111111"}, "appid"),
        ({"roles": []}, "ActionGroupsSecureWebhook"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200, "nbf": int(time.time()) - 7200}, "expired"),
    ],
)
def test_tokens_that_are_not_the_action_groups_are_refused(
    app: tuple[World, Runner], claims: dict[str, Any], why: str
) -> None:
    world, runner = app
    token = world.directory.mint_action_group(ALERT_AUDIENCE, **claims)
    answer = send(runner, "POST", "alerts", bearer(token), ALERT)
    assert answer.status_code == 401
    assert why in answer.json()["error"]["message"]
    assert token not in answer.text


def test_forged_tokens_are_refused(app: tuple[World, Runner]) -> None:
    world, runner = app
    genuine = world.directory.mint_action_group(ALERT_AUDIENCE)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    other_tenant_key = Directory()  # same claims, signed by a key the tenant does not publish
    other_tenant_key.key_id = world.directory.key_id
    forged = [
        other_tenant_key.mint_action_group(ALERT_AUDIENCE),
        jwt.encode(claims, "s" * 32, algorithm="HS256", headers={"kid": world.directory.key_id}),
        jwt.encode(claims, "", algorithm="none"),
        genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB"),
        "not-a-jwt",
    ]
    for token in forged:
        assert send(runner, "POST", "alerts", bearer(token), ALERT).status_code == 401, token[:20]
    assert send(runner, "POST", "alerts", {}, ALERT).status_code == 401
    assert send(runner, "POST", "alerts", {"Authorization": f"Basic {genuine}"}, ALERT).status_code == 401


def test_an_unconfigured_webhook_refuses_everything(app: tuple[World, Runner]) -> None:
    world, runner = app
    runner.set_app_setting("HEALER_ALERT_AUDIENCE", "")
    runner.set_app_setting("HEALER_ALERT_CLIENT_ID", "")
    entrypoints.reset()
    answer = send(runner, "POST", "alerts", bearer(world.directory.mint_action_group(ALERT_AUDIENCE)), ALERT)
    assert answer.status_code == 401 and "HEALER_ALERT_AUDIENCE" in answer.json()["error"]["message"]


def test_manual_heals_keep_a_minimum_interval_per_target(app: tuple[World, Runner]) -> None:
    world, runner = app
    runner.pause_timer()
    key = {"x-functions-key": runner.key}
    world.inject("principal-removed", "contoso")
    wait_until(lambda: world.iotc.apps["contoso"].exports["export-1"]["status"] == "error", 10, "the break")
    assert send(runner, "POST", "heal", key, {"target": CONTOSO}).status_code == 202
    store = entrypoints.composition().healer.services.store
    wait_until(lambda: store.load(CONTOSO).last_outcome == "healed", 30, "healed")
    wait_until(lambda: not store.load(CONTOSO).leased(datetime.now(UTC)), 15, "the lease released")
    # Healed, cooldown 0, nothing queued: only the interval holds the second request back.
    again = send(runner, "POST", "heal", key, {"target": CONTOSO})
    assert again.status_code == 409
    assert "HEALER_MANUAL_HEAL_MIN_INTERVAL_SECONDS" in again.json()["reason"]
    assert send(runner, "POST", "heal", key, {"target": "fabrikam:export-1:adx-1"}).status_code == 202  # per target
    runner.set_app_setting("HEALER_MANUAL_HEAL_MIN_INTERVAL_SECONDS", "0")
    entrypoints.reset()
    assert send(runner, "POST", "heal", key, {"target": CONTOSO}).status_code == 202
