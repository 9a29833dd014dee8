"""The webhook's settings: empty means unset (the Bicep writes '' with alerts off), bad values
are refused naming the setting, and the JWKS address is the tenant's."""

from __future__ import annotations

import pytest

from shared.config.settings import load_settings
from shared.domain.targets import ConfigError
from shared.http.webhook_auth import jwks_url

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_empty_means_unset() -> None:
    settings = load_settings(alert_audience="", alert_tenant_id="")
    assert settings.alert_audience is None and settings.alert_tenant_id is None


def test_the_keys_are_fetched_from_the_tenant() -> None:
    settings = load_settings(alert_audience="api://x", alert_tenant_id=TENANT)
    assert jwks_url(settings) == f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"


@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("alert_tenant_id", "contoso.onmicrosoft.com", "HEALER_ALERT_TENANT_ID"),
        ("entra_authority", "http://login.example.com", "HEALER_ENTRA_AUTHORITY"),
        ("manual_heal_min_interval_seconds", -1, "HEALER_MANUAL_HEAL_MIN_INTERVAL_SECONDS"),
    ],
)
def test_bad_values_name_the_setting(field: str, value: object, setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        load_settings(**{field: value})
