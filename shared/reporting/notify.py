"""Incidents people must hear about: escalations, principals that could not be re-added, data that
could not be recovered. One notification per incident, however often the step that found it is
retried or redelivered: the incident id is claimed in the `<prefix>notifications` table first.

Two channels:
- the `healer.incidents` metric (shared/reporting/telemetry.py), which the Bicep's log alert rule watches and
  routes through the action group the infra creates (email, Teams, ... as configured there);
- optionally `HEALER_NOTIFY_WEBHOOK`, an incoming webhook: Slack's (`{"text": ...}`, Slack's
  "Sending messages using incoming webhooks"; the retired Office 365 connectors of Teams took the
  same `text` field), or a Teams Workflows URL, which gets an Adaptive Card message instead. The
  URL is a secret: it is never logged, and errors are logged without it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.reporting import telemetry

if TYPE_CHECKING:  # the composition root hands the notifier its claims table and webhook
    from shared.adapters.incident_claims import IncidentClaims
    from shared.adapters.webhook import Webhook

log = logging.getLogger(__name__)
KINDS = ("escalated", "readd-failed", "data-not-recovered", "poisoned")
_RESEND_AFTER = timedelta(minutes=10)  # a claim whose send never finished may be sent again


@dataclass
class Incident:
    kind: str  # one of KINDS
    target: str
    run_id: str
    correlation_id: str
    summary: str
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def incident_id(self) -> str:
        return f"{self.kind}:{self.run_id}"

    def card(self) -> dict[str, Any]:
        """The Teams *Workflows* shape ("Send webhook alerts to a channel"): a message whose
        attachment is an Adaptive Card (the retired Office 365 connectors took `text` instead)."""
        facts = [
            {"title": "target", "value": self.target},
            {"title": "kind", "value": self.kind},
            {"title": "run", "value": self.run_id},
            {"title": "correlation id", "value": self.correlation_id},
            {"title": "at", "value": self.at.isoformat()},
        ]
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": f"iotc-adx-healer: {self.kind}", "weight": "Bolder", "size": "Medium"},
            {"type": "TextBlock", "text": self.payload()["text"], "wrap": True},
            {"type": "FactSet", "facts": facts},
        ]
        content = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": body,
        }
        return {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": content}
            ],
        }

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["incident_id"] = self.incident_id
        text = f"iotc-adx-healer: {self.target}: {self.kind}: {self.summary}"
        cause = self.detail.get("root_cause")
        if isinstance(cause, dict) and cause.get("found"):
            text += f" Root cause: {cause.get('summary')}"
        return {"text": text[:3000], "incident": data}


class Notifier:
    def __init__(self, claims: IncidentClaims, webhook: Webhook | None = None) -> None:
        self.claims = claims
        self._webhook = webhook

    def __repr__(self) -> str:  # never show the URL
        return f"Notifier(webhook={'set' if self._webhook else 'unset'})"

    def raise_incident(self, incident: Incident) -> bool:
        """True if this call notified (the first for this incident id); False for a repeat."""
        if incident.kind not in KINDS:
            raise ValueError(f"kind={incident.kind!r} must be one of {', '.join(KINDS)}")
        first = self._claim(incident)
        if first is None:
            return False
        if first:
            telemetry.count("healer.incidents", kind=incident.kind, target=incident.target)
            log.warning("incident %s for %s: %s", incident.kind, incident.target, incident.summary)
        sent = self._send(incident) if self._webhook else None
        self._settle(incident, "sent" if sent else ("recorded" if sent is None else "failed"))
        return True

    # ---------------------------------------------------------------- idempotence

    def _claim(self, incident: Incident) -> bool | None:
        """True: newly claimed; False: claimed before but its send failed or stalled (send again);
        None: already notified."""
        entity = {
            "PartitionKey": incident.target,
            "RowKey": incident.incident_id,
            "Kind": incident.kind,
            "RunId": incident.run_id,
            "CorrelationId": incident.correlation_id,
            "Summary": incident.summary[:2000],
            "At": incident.at.isoformat(),
            "ClaimedAt": incident.at.isoformat(),
            "Status": "claimed",
            "Detail": json.dumps(incident.detail, default=str)[:30000],
        }
        if self.claims.create(entity):
            return True
        existing = self.claims.get(incident.target, incident.incident_id)
        status = existing.get("Status")
        claimed = datetime.fromisoformat(str(existing.get("ClaimedAt") or existing.get("At")))
        if status in ("sent", "recorded") or (status == "claimed" and incident.at - claimed < _RESEND_AFTER):
            return None
        if self._webhook is None:
            return None
        entity["ClaimedAt"] = incident.at.isoformat()
        return False if self.claims.replace_if_unchanged(entity, existing) else None  # else another instance took it

    def _settle(self, incident: Incident, status: str) -> None:
        self.claims.merge({"PartitionKey": incident.target, "RowKey": incident.incident_id, "Status": status})

    def _send(self, incident: Incident) -> bool:
        assert self._webhook is not None
        body = incident.card() if workflows_url(self._webhook.url) else incident.payload()
        return self._webhook.post(body, incident.incident_id)


# Hosts of Teams Workflows (Power Automate) webhook URLs; unverified list, from the URLs such
# workflows hand out. Anything else gets the Slack-style {"text": ...} body.
_WORKFLOW_HOSTS = (".logic.azure.com", ".powerautomate.com", ".powerplatform.com", "flow.microsoft.com")


def workflows_url(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return any(host == h.lstrip(".") or host.endswith(h) for h in _WORKFLOW_HOSTS)
