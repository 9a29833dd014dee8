"""The doctor's webhook checks: the alert webhook's audience and tenant set together and the
tenant's signing keys published; the notification webhook configured (never posted to)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.doctor.failures import status_of
from shared.doctor.findings import APP_SETTINGS_FIX

if TYPE_CHECKING:
    from shared.config.settings import Settings
    from shared.doctor.findings import Findings


def check_alert_webhook(out: Findings, settings: Settings, timeout_s: float) -> None:
    scope = "alert webhook"
    audience, tenant = settings.alert_audience, settings.alert_tenant_id
    if not audience and not tenant:
        out.add(
            scope,
            "alert-settings",
            "not-applicable",
            "HEALER_ALERT_AUDIENCE and HEALER_ALERT_TENANT_ID are unset: /api/alerts refuses every call "
            "(the timer still detects)",
            f"{APP_SETTINGS_FIX} HEALER_ALERT_AUDIENCE=api://<webhook-app> HEALER_ALERT_TENANT_ID=<tenant-id>",
            required=False,
        )
        return
    if not (audience and tenant):
        missing = "HEALER_ALERT_TENANT_ID" if audience else "HEALER_ALERT_AUDIENCE"
        out.add(
            scope,
            "alert-settings",
            "fail",
            f"{missing} is unset while the other is set: /api/alerts refuses every action group",
            f"{APP_SETTINGS_FIX} {missing}=<value>",
        )
        return
    from shared.http.webhook_auth import jwks_url

    url = jwks_url(settings)
    try:
        keys = _get_json(url, timeout_s).get("keys")
    except Exception as exc:
        status = status_of(exc)
        if status is None or status >= 500 or status == 429:
            out.cannot_tell(scope, "alert-settings", exc)
        else:
            out.add(
                scope,
                "alert-settings",
                "fail",
                f"the tenant's signing keys ({url}) answered {status}: is HEALER_ALERT_TENANT_ID right?",
                f"{APP_SETTINGS_FIX} HEALER_ALERT_TENANT_ID=$(az account show --query tenantId -o tsv)",
            )
        return
    if not isinstance(keys, list) or not keys:
        out.add(
            scope,
            "alert-settings",
            "fail",
            f"{url} lists no signing key: no action group token could be checked",
            f"{APP_SETTINGS_FIX} HEALER_ENTRA_AUTHORITY=https://login.microsoftonline.com",
        )
        return
    out.add(
        scope,
        "alert-settings",
        "pass",
        f"tokens for {audience} from tenant {tenant} are checked against {len(keys)} published key(s)",
    )


def check_notify_webhook(out: Findings, settings: Settings) -> None:
    if settings.notify_webhook is None:
        out.add(
            "notifications",
            "notify-webhook",
            "not-applicable",
            "HEALER_NOTIFY_WEBHOOK is unset: incidents are recorded, not posted anywhere",
            f"{APP_SETTINGS_FIX} HEALER_NOTIFY_WEBHOOK=<incoming webhook URL>",
            required=False,
        )
        return
    out.add(
        "notifications",
        "notify-webhook",
        "pass",
        "HEALER_NOTIFY_WEBHOOK is an https URL (not sent to: the doctor posts nothing)",
    )


def _get_json(url: str, timeout_s: float) -> dict[str, Any]:
    import requests

    response = requests.get(url, timeout=timeout_s)
    if response.status_code >= 400:
        error = requests.HTTPError(f"{response.status_code} from {url}")
        error.status_code = response.status_code  # type: ignore[attr-defined]
        raise error
    body = response.json()
    return body if isinstance(body, dict) else {}
