"""Incidents people must hear about: escalations, principals that could not be re-added, data that
could not be recovered. One notification per incident, however often the step that found it is
retried or redelivered: the incident id is claimed in the `<prefix>notifications` table first.

Two channels:
- the `healer.incidents` metric (shared/telemetry.py), which the Bicep's log alert rule watches and
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
from typing import Any

from shared import telemetry

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


class _Redact(logging.Filter):
    """urllib3 logs every request line (method and path) at DEBUG: the webhook's path is its secret."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.secret in text:
            record.msg, record.args = text.replace(self.secret, "<webhook secret redacted>"), ()
        return True


_redacting: set[str] = set()


def _redact_in_transport_logs(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    for secret in (parts.path, parts.query):  # Teams workflow URLs carry their signature in the query
        if len(secret) > 1 and secret not in _redacting:
            _redacting.add(secret)
            logging.getLogger("urllib3.connectionpool").addFilter(_Redact(secret))


class Notifier:
    def __init__(self, table: Any, webhook_url: str | None = None, timeout_s: float = 10) -> None:
        self.table = table  # azure-data-tables TableClient of <prefix>notifications
        self._url = webhook_url or None
        self._timeout_s = timeout_s
        self._client: Any = None
        if self._url:
            _redact_in_transport_logs(self._url)

    def __repr__(self) -> str:  # never show the URL
        return f"Notifier(webhook={'set' if self._url else 'unset'})"

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
        sent = self._send(incident) if self._url else None
        self._settle(incident, "sent" if sent else ("recorded" if sent is None else "failed"))
        return True

    # ---------------------------------------------------------------- idempotence

    def _claim(self, incident: Incident) -> bool | None:
        """True: newly claimed; False: claimed before but its send failed or stalled (send again);
        None: already notified."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

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
        from shared.storage import _creating

        try:
            _creating(self.table, lambda: self.table.create_entity(entity))  # the table's first write creates it
            return True
        except ResourceExistsError:
            pass
        existing = self.table.get_entity(incident.target, incident.incident_id)
        status = existing.get("Status")
        claimed = datetime.fromisoformat(str(existing.get("ClaimedAt") or existing.get("At")))
        if status in ("sent", "recorded") or (status == "claimed" and incident.at - claimed < _RESEND_AFTER):
            return None
        if not self._url:
            return None
        entity["ClaimedAt"] = incident.at.isoformat()
        try:
            self.table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=existing.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:  # another instance took it
            return None
        return False

    def _settle(self, incident: Incident, status: str) -> None:
        from azure.data.tables import UpdateMode

        self.table.update_entity(
            {"PartitionKey": incident.target, "RowKey": incident.incident_id, "Status": status},
            mode=UpdateMode.MERGE,
        )

    # ---------------------------------------------------------------- webhook

    def _send(self, incident: Incident) -> bool:
        from azure.core import PipelineClient
        from azure.core.exceptions import AzureError
        from azure.core.pipeline.policies import RetryPolicy
        from azure.core.rest import HttpRequest

        if self._client is None:
            self._client = PipelineClient(base_url="", policies=[RetryPolicy(retry_total=3, timeout=30)])
        request = HttpRequest(
            "POST",
            str(self._url),
            json=incident.card() if workflows_url(str(self._url)) else incident.payload(),
            headers={"Content-Type": "application/json"},
        )
        try:
            response = self._client.send_request(
                request, connection_timeout=self._timeout_s, read_timeout=self._timeout_s
            )
        except AzureError as exc:  # the message may hold the URL: log the type only
            log.warning("webhook notification for %s failed: %s", incident.incident_id, type(exc).__name__)
            return False
        if response.status_code >= 300:
            log.warning("webhook notification for %s answered %d", incident.incident_id, response.status_code)
            return False
        return True


# Hosts of Teams Workflows (Power Automate) webhook URLs; unverified list, from the URLs such
# workflows hand out. Anything else gets the Slack-style {"text": ...} body.
_WORKFLOW_HOSTS = (".logic.azure.com", ".powerautomate.com", ".powerplatform.com", "flow.microsoft.com")


def workflows_url(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return any(host == h.lstrip(".") or host.endswith(h) for h in _WORKFLOW_HOSTS)


def notifier_for(store: Any, webhook_url: str | None) -> Notifier:
    return Notifier(store.notifications, webhook_url)
