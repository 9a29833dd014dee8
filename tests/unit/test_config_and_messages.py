"""Settings, targets and queue messages: bad input gets an error naming the field and the value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.config.settings import load_settings
from shared.domain.messages import MalformedMessage, new_run, parse_message
from shared.domain.targets import ConfigError, parse_targets

GUID = "0b4f8e1a-0000-4000-8000-000000000001"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def target(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "app": "contoso",
        "export_id": "export-1",
        "destination_id": "adx-1",
        "cluster_url": "https://mycluster.westeurope.kusto.windows.net",
        "database": "devicedata",
        "table": "DeviceTelemetry",
        "principal": {"object_id": GUID, "tenant_id": TENANT},
    }
    base.update(changes)
    return base


def test_a_valid_target_and_its_defaults() -> None:
    (parsed,) = parse_targets(json.dumps([target()]))
    assert parsed.key == "contoso:export-1:adx-1" and parsed.role == "admins"  # IoT Central's docs
    assert parsed.principal.ref().fqn() == f"aadapp={GUID};{TENANT}"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"app": "Contoso!"}, "app='Contoso!'"),
        ({"role": "viewers"}, "role: Input should be 'ingestors' or 'admins' (got 'viewers')"),
        ({"cluster_url": "ftp://x"}, "cluster_url='ftp://x'"),
        ({"cluster_url": "http://mycluster.westeurope.kusto.windows.net"}, "cluster_url='http://mycluster"),
        ({"principal": {"tenant_id": TENANT}}, "principal needs object_id or client_id"),
        ({"principal": {"object_id": "nope", "tenant_id": TENANT}}, "principal.object_id='nope' is refused"),
        ({"export_id": "a/b"}, "export_id='a/b'"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"iotc_resource_id": "/subscriptions/x"}, "iotc_resource_id='/subscriptions/x'"),
    ],
)
def test_bad_targets_name_the_field_and_value(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_targets(json.dumps([target(**changes)]))
    assert fragment in str(info.value)
    assert str(info.value).startswith("HEALER_TARGETS [0]")


def test_targets_text_errors() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_targets("[{")
    with pytest.raises(ConfigError, match="must be a JSON array"):
        parse_targets("{}")
    with pytest.raises(ConfigError, match="names the same target twice: contoso:export-1:adx-1"):
        parse_targets(json.dumps([target(), target()]))


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALER_MODE", "enforce")
    monkeypatch.setenv("HEALER_TARGETS", json.dumps([target()]))
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    settings = load_settings()
    assert settings.mode == "enforce" and not settings.observe_only
    assert settings.storage_connection_string == "UseDevelopmentStorage=true"
    assert [t.key for t in settings.target_list] == ["contoso:export-1:adx-1"]


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("HEALER_MODE", "fix-everything", "HEALER_MODE: Input should be 'observe' or 'enforce' (got 'fix-everything')"),
        (
            "HEALER_REFRESH_WAIT_SECONDS",
            "-5",
            "HEALER_REFRESH_WAIT_SECONDS: Input should be greater than or equal to 0",
        ),
        ("HEALER_MAX_ATTEMPTS", "many", "HEALER_MAX_ATTEMPTS: Input should be a valid integer"),
        ("HEALER_QUEUE_NAME", "Bad_Queue", "HEALER_QUEUE_NAME: String should match pattern"),
        ("HEALER_IOTC_BASE_URL", "https://example.com", "HEALER_IOTC_BASE_URL: must be an https URL template"),
        ("HEALER_TARGETS", "[1]", "HEALER_TARGETS [0]: Input should be a valid dictionary"),
    ],
)
def test_settings_errors_name_the_variable_and_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert fragment in str(info.value)


def test_targets_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps([target()]))
    monkeypatch.setenv("HEALER_TARGETS_FILE", str(path))
    assert len(load_settings().target_list) == 1
    monkeypatch.setenv("HEALER_TARGETS_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=r"HEALER_TARGETS_FILE='.*missing\.json' cannot be read"):
        load_settings()


def test_message_round_trip() -> None:
    msg = new_run("contoso:export-1:adx-1", "alert", "alert-123", "Fired")
    assert parse_message(msg.to_json()) == msg
    assert parse_message(msg.to_json().encode()) == msg


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("not json", "message is not JSON"),
        ("[]", "must be a JSON object, not list"),
        ('{"target": "contoso:e:d"}', "message run_id: Field required"),
        (
            '{"target": "x", "run_id": "0123456789abcdef0123456789abcdef", "correlation_id": "c"}',
            "String should have at least 5 characters",
        ),
        (
            '{"target": "contoso:e:d/x", "run_id": "0123456789abcdef0123456789abcdef", "correlation_id": "c"}',
            "target='contoso:e:d/x' is not <app>:<export id>:<destination id>",
        ),
        (
            '{"target": "contoso:e:d", "run_id": "0123456789abcdef0123456789abcdef", "correlation_id": "c", '
            '"step": "drop-everything"}',
            "message step: Input should be 'start', 'readd', 'verify' or 'backfill'",
        ),
        (
            '{"target": "contoso:e:d", "run_id": "0123456789abcdef0123456789abcdef", "correlation_id": "c", '
            '"version": 2}',
            "message version: Input should be 1",
        ),
        (
            '{"target": "contoso:e:d", "run_id": "0123456789abcdef0123456789abcdef", "correlation_id": "c", '
            '"action_at": "2026-11-27T10:00:00"}',
            "must carry a time zone",
        ),
        ("x" * 20000, "at most 16384"),
    ],
)
def test_malformed_messages_say_why(body: str, fragment: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_message(body)
    assert fragment in str(info.value)
    with pytest.raises(MalformedMessage):
        parse_message(b"\xff\xfe")


def test_every_setting_is_in_the_configuration_reference() -> None:
    from shared.config.settings import Settings
    from tests.support.helpers import ROOT

    reference = (ROOT / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"HEALER_{name.upper()}" in reference, f"HEALER_{name.upper()} is not documented"


def test_the_local_settings_example_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.helpers import ROOT

    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.observe_only and len(settings.target_list) == 1


def test_discovery_acts_only_where_the_app_allows() -> None:
    from shared.detection.detector import _discover
    from shared.domain.targets import parse_apps

    allowed = "https://ok.westeurope.kusto.windows.net"
    (app,) = parse_apps(
        json.dumps(
            [
                {
                    "app": "contoso",
                    "principal": {"object_id": GUID, "tenant_id": TENANT},
                    "clusters": [allowed + "/"],
                    "databases": ["devicedata"],
                }
            ]
        )
    )
    dests = {
        d["id"]: {"type": "dataexplorer@v1", "table": "T", **d}
        for d in [
            {"id": "good", "clusterUrl": "https://OK.westeurope.kusto.windows.net:443", "database": "devicedata"},
            {
                "id": "other-cluster",
                "clusterUrl": "https://theirs.westeurope.kusto.windows.net",
                "database": "devicedata",
            },
            {"id": "other-db", "clusterUrl": allowed, "database": "payroll"},
            {"id": "plain-http", "clusterUrl": "http://ok.westeurope.kusto.windows.net", "database": "devicedata"},
        ]
    }
    exports = [{"id": "e1", "destinations": [{"id": d} for d in dests]}]
    refused: dict[str, str] = {}
    found = _discover(app, exports, dests, app.principal, refused)
    assert [t.destination_id for t in found] == ["good"]
    assert set(refused) == {"contoso:e1:other-cluster", "contoso:e1:other-db", "contoso:e1:plain-http"}
    assert "allowed clusters" in refused["contoso:e1:other-cluster"]
    assert "allowed databases" in refused["contoso:e1:other-db"]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"app": "contoso", "principal": {"object_id": GUID, "tenant_id": TENANT}}, "clusters: Field required"),
        (
            {"app": "contoso", "principal": {"object_id": GUID, "tenant_id": TENANT}, "clusters": ["http://x.net"]},
            "clusters[0]='http://x.net'",
        ),
    ],
)
def test_an_app_must_name_where_its_destinations_may_point(entry: dict[str, Any], fragment: str) -> None:
    from shared.domain.targets import parse_apps

    with pytest.raises(ConfigError) as info:
        parse_apps(json.dumps([entry]))
    assert fragment in str(info.value)


def test_a_lease_shorter_than_the_worst_case_step_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(lease_seconds=60)
    # 60 + 2 x (60 + 30) for Kusto, and a token request of 2 x 10
    assert str(info.value).startswith("HEALER_LEASE_SECONDS=60 must exceed the worst-case step of 260 s")
    kusto = {"kusto_retry_budget_seconds": 5, "kusto_server_timeout_seconds": 5}  # 5 + 2 x (5 + 30) = 75
    with pytest.raises(ConfigError):  # the HTTP side is now the longest: 60 + 2 x 30 (+ 20) = 140
        load_settings(lease_seconds=120, **kusto)
    assert load_settings(lease_seconds=210, **kusto).worst_case_step_seconds == 140


def test_a_lease_equal_to_the_worst_case_step_is_refused_naming_both_numbers() -> None:
    """Case 10: a lease equal to the worst-case step passed validation, and then every run found
    "less than a whole step left" and ended skipped: the healer silently never acted."""
    with pytest.raises(ConfigError) as info:
        load_settings(lease_seconds=260)
    text = str(info.value)
    assert "HEALER_LEASE_SECONDS=260" in text and "worst-case step of 260 s" in text
    assert "margin of 70 s" in text and "at least 330 s" in text
    assert load_settings(lease_seconds=330).lease_seconds == 330
    # Without clock skew the margin is the renewal alone.
    assert load_settings(lease_seconds=270, clock_skew_seconds=0).lease_margin_seconds == 10


def test_azure_sdk_loggers_stay_at_warning_unless_asked() -> None:
    import logging

    from shared.services import quiet_sdk_loggers

    sdk = logging.getLogger("azure")
    before = sdk.level
    try:
        quiet_sdk_loggers(load_settings())
        assert sdk.level == logging.WARNING  # one INFO line per request and response otherwise
        quiet_sdk_loggers(load_settings(azure_log_level="DEBUG"))
        assert sdk.level == logging.DEBUG
    finally:
        sdk.setLevel(before)
