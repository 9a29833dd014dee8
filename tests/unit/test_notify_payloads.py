"""What an incident looks like on the wire: Slack-style text for incoming webhooks, an Adaptive
Card message for Teams Workflows URLs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared.reporting.notify import Incident, workflows_url

INCIDENT = Incident(
    "escalated",
    "contoso:export-1:adx-1",
    "a" * 32,
    "corr-1",
    "healer-not-admin: a person must grant Database Admin",
    datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
    {"root_cause": {"found": True, "summary": "ops-admin@contoso.com ran .drop database ['d'] admins (...)"}},
)


def test_slack_style_text_names_target_kind_and_root_cause() -> None:
    body = INCIDENT.payload()
    assert body["text"].startswith("iotc-adx-healer: contoso:export-1:adx-1: escalated: healer-not-admin")
    assert body["text"].endswith("Root cause: ops-admin@contoso.com ran .drop database ['d'] admins (...)")
    assert body["incident"]["incident_id"] == f"escalated:{'a' * 32}"
    json.dumps(body)


def test_teams_workflows_get_an_adaptive_card() -> None:
    card = INCIDENT.card()
    assert card["type"] == "message"
    [attachment] = card["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content = attachment["content"]
    assert content["type"] == "AdaptiveCard" and content["body"][0]["text"] == "iotc-adx-healer: escalated"
    assert {"title": "target", "value": "contoso:export-1:adx-1"} in content["body"][2]["facts"]
    assert workflows_url("https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke")
    assert not workflows_url("https://hooks.slack.com/services/T0/B0/X")
    assert not workflows_url("https://evil.example/logic.azure.com")
