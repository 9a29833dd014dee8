"""Typed settings, validated at start. Every error names the app setting and its value."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.targets import AppConfig, ConfigError, Target, describe_validation, load_targets, parse_apps

REMEDIES = ("recreate-destination", "refresh")


# One renewal's storage round trip (the state store's timeout): part of the lease margin.
RENEWAL_S = 10


class Settings(BaseSettings):
    """All settings are app settings (environment variables) named HEALER_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="HEALER_", extra="ignore", frozen=True, populate_by_name=True)

    mode: Literal["observe", "enforce"] = Field(
        "observe", description="`observe` plans and records only; `enforce` repairs"
    )
    targets: str | None = Field(None, description="JSON array of targets (see [A target](#a-target))")
    targets_file: str | None = Field(None, description="path of a JSON file with the same array (not both)")

    refresh_wait_seconds: int = Field(60, ge=0, le=3600, description="wait between drop and re-add")
    cooldown_seconds: int = Field(
        1800, ge=0, le=7 * 86400, description="no new remediation of a target this long after it healed"
    )
    healthy_cooldown_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="no new remediation this long after a run found the target healthy although logs or an alert "
        "said it failed",
    )
    max_attempts: int = Field(3, ge=1, le=50, description="failed attempts within the window before *escalated*")
    attempt_window_seconds: int = Field(86400, ge=60, le=30 * 86400, description="the window for counting attempts")
    max_remediations_per_cycle: int = Field(5, ge=1, le=500, description="remediations one detection cycle may start")
    verify_deadline_seconds: int = Field(900, ge=0, le=86400, description="how long verification keeps polling")
    verify_poll_seconds: int = Field(60, ge=1, le=3600, description="delay between verification polls")
    lease_seconds: int = Field(
        360,
        ge=10,
        le=86400,
        description="lease on a target, renewed before every side effect (plus the step's own delay); must exceed "
        "the worst-case step by the margin (10 s for the renewal plus twice the clock skew), or the start is "
        "refused naming both numbers",
    )
    # How far apart the clocks of two instances may be (assumed): leases and obligations allow it.
    clock_skew_seconds: int = Field(
        30,
        ge=0,
        le=600,
        description="how far apart two instances' clocks may be (assumed); leases and obligations allow for it "
        "both ways",
    )
    # How late a command the healer issued may still land after the renewal that allowed it
    # (assumed; default twice the lease): an obligation is discharged only after that.
    act_lands_within_seconds: int | None = Field(
        None,
        ge=0,
        le=7 * 86400,
        description="how late a command the healer issued may still land after the renewal that allowed it "
        "(assumed; unset: twice the lease); an obligation is discharged only after that",
    )
    sweep_grace_seconds: int = Field(
        120,
        ge=0,
        le=86400,
        description="how long past its due time a re-add may be late before the sweep does it",
    )
    # The sweep discharges obligations concurrently, and begins nothing new after its budget
    # (well inside host.json's functionTimeout of 10 min: detection must still run).
    sweep_concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description="obligations the recovery sweep discharges at once (at most 4 per cluster and per app)",
    )
    sweep_budget_seconds: int = Field(
        240,
        ge=10,
        le=3600,
        description="the sweep begins nothing new after this long (well inside `functionTimeout`); the rest waits "
        "for the next cycle",
    )
    toggle_export: bool = Field(False, description="disable and re-enable the export after a repair")
    # After a verified healing: off, plan (measure the gap and record what would be ingested) or on.
    backfill: Literal["off", "plan", "on"] = Field(
        "plan",
        description="after a verified healing: `off`; `plan` measures the gap and records what a backfill would "
        "ingest; `on` also ingests it (see [Backfill](backfill.md))",
    )
    backfill_invocation_seconds: int = Field(
        120,
        ge=5,
        le=540,
        description="time one queue invocation spends on a backfill before it hands the rest to the next message",
    )
    # IoT Central's data retention (its quotas page: 7 days): older gaps are reported unrecoverable.
    backfill_retention_days: int = Field(
        7,
        ge=1,
        le=30,
        description="IoT Central's data retention (its quotas page: 7 days): the part of a gap older than this is "
        "reported unrecoverable, with its size",
    )
    # ADX's default queued-ingestion batching time (5 min) plus a margin.
    backfill_settle_seconds: int = Field(
        360,
        ge=0,
        le=3600,
        description="a backfill chunk redone after a crash waits this long after its first send before reading the "
        "table back and sending only what is still missing (ADX's default queued-ingestion batching time, 5 min, "
        "plus a margin; raise it for a table with a longer batching policy)",
    )
    # Where rows would keep what the query API cannot give back (message properties, device
    # properties): refuse (the default), or write them marked approximate, naming what is missing.
    backfill_approximate: bool = Field(
        False,
        description="where the destination's rows keep what the query API cannot give back (message properties, "
        "device properties, enrichments from device properties), the backfill refuses; `true` writes them "
        "anyway, marked approximate (`approximate` in the gap lists what was not restored)",
    )
    # For a principal that holds the right role yet is denied: the remedies in the order tried.
    # Microsoft's documented one (re-create the destination) first, then the forum's refresh.
    # Comma-separated, e.g. "refresh" to use the forum's drop/wait/re-add only.
    remedy_order: str = Field(
        "recreate-destination,refresh",
        description="for a principal that holds its role yet is denied: the remedies tried, in order, "
        "comma-separated, each once (`recreate-destination`, `refresh`)",
    )
    # How long an identity Entra does not know yet is retried (replication takes minutes).
    unknown_identity_retry_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="how long an `.add` of an identity Entra does not know yet is retried before escalating",
    )
    kusto_retry_budget_seconds: float = Field(
        60.0,
        gt=0,
        le=600,
        description="time budget for retrying one ADX call (throttling, 5xx, network); no retry sleeps past it",
    )
    kusto_server_timeout_seconds: int = Field(
        60,
        ge=5,
        le=3600,
        description="`servertimeout` request property of every ADX call; the client waits this plus 30 s",
    )
    http_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="connect and read timeout of every IoT Central, ARM and Log Analytics request"
    )
    http_retry_budget_seconds: float = Field(
        60.0,
        gt=0,
        le=600,
        description="time budget for retrying one IoT Central, ARM or Log Analytics call (Retry-After is cut to "
        "what is left)",
    )
    retention_days: int = Field(
        90, ge=1, le=3650, description="journal, history and alert rows older than this are deleted by the timer"
    )
    azure_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING",
        description="level of the Azure SDK loggers (`azure.*`: one INFO line per HTTP request otherwise)",
    )

    queue_name: str = Field(
        "healer-remediations",
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        description="remediation queue (Azure queue naming rules: no `--`)",
    )
    table_prefix: str = Field(
        "healer",
        pattern=r"^[A-Za-z][A-Za-z0-9]{0,40}$",
        description="prefix of the state, journal and history tables",
    )
    identity_client_id: str | None = Field(None, description="client id of the user-assigned managed identity to use")
    apps: str | None = Field(
        None,
        description='JSON array of apps whose ADX destinations are discovered: `{"app", "principal" or '
        '"iotc_resource_id", "role", "clusters": [cluster URLs its destinations may point to], "databases": '
        '[optional allow-list], "cluster_resource_ids": {optional: cluster URL → its resource id, for a URL '
        "that names no cluster}}`; a destination elsewhere is reported in the cycle's `refused`, never touched",
    )
    log_analytics_workspace_id: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F-]{36}$",
        description="workspace with the ADX diagnostic logs (`FailedIngestion`); unset: IoT Central status only",
    )
    log_analytics_endpoint: str = Field("https://api.loganalytics.io/v1", description="Log Analytics query endpoint")
    lookback_minutes: int = Field(
        30,
        ge=1,
        le=10080,
        description="how far back a cycle looks for `FailedIngestion` rows, and a diagnosis for the `ADXJournal` "
        "change that caused it",
    )
    scan_concurrency: int = Field(32, ge=1, le=128, description="apps read at once in a detection cycle")
    timer_schedule: str = Field(
        "0 */5 * * * *",
        pattern=r"^(\S+\s+){5}\S+$",
        description="detection schedule (NCRONTAB, six fields, UTC; an app setting the timer binding reads)",
    )
    manual_heal_min_interval_seconds: int = Field(
        300,
        ge=0,
        le=86400,
        description="a manual heal (`POST /api/heal`, CLI `heal`) of one target is queued at most this often, "
        "whoever holds a key",
    )
    # The alert webhook's Entra token (shared/webhook_auth.py): the webhook application's
    # identifier URI and client id (a v1 token's `aud` is the one, a v2 token's the other), its
    # tenant, and where the tenant's signing keys are published.
    alert_audience: str | None = Field(
        None,
        description="identifier URI of the Entra application the action group's secure webhook gets its token "
        "for: the `aud` of a v1 token (the Bicep sets it); unset with `HEALER_ALERT_CLIENT_ID`: `/api/alerts` "
        "refuses every call",
    )
    alert_client_id: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$",
        description="that application's client id: the `aud` of a v2 token (the application asks for v2; the "
        "Bicep sets it)",
    )
    alert_tenant_id: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$",
        description="the tenant that issues the webhook's token",
    )
    entra_authority: str = Field(
        "https://login.microsoftonline.com",
        description="where the tenant's signing keys are published (`/{tenant}/discovery/v2.0/keys`)",
    )
    iotc_base_url: str = Field(
        "https://{subdomain}.azureiotcentral.com", description="IoT Central data-plane URL template"
    )
    arm_url: str = Field("https://management.azure.com", description="ARM endpoint (reads an app's identity)")
    # An incoming webhook (Teams/Slack style) told of every incident; a secret, never logged.
    notify_webhook: SecretStr | None = Field(
        None,
        description="optional incoming webhook (Teams/Slack style) told of every incident, once; a secret: never "
        "logged or echoed",
    )
    # Storage: the Functions host's own account. A connection string (Azurite, keys) or, with
    # identity-based connections, the account name.
    storage_connection_string: str | None = Field(
        None,
        validation_alias=AliasChoices("HEALER_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage"),
        description="storage connection string",
    )
    storage_account_name: str | None = Field(
        None,
        validation_alias=AliasChoices("HEALER_STORAGE_ACCOUNT_NAME", "AzureWebJobsStorage__accountName"),
        pattern=r"^[a-z0-9]{3,24}$",
        description="or: the account, used with the managed identity (the Bicep sets `HEALER_STORAGE_ACCOUNT_NAME`; "
        "the host itself uses `AzureWebJobsStorage__blobServiceUri`, `__queueServiceUri`, `__tableServiceUri`)",
    )

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if "--" in value:
            raise ValueError("queue names may not contain '--'")
        return value

    @field_validator("alert_tenant_id", "alert_audience", "alert_client_id", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The Bicep sets these to '' when alerts are off: that means "not configured".
        return None if value == "" else value

    @field_validator("entra_authority")
    @classmethod
    def _authority(cls, value: str) -> str:
        if not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("must be an https URL")
        return value.rstrip("/")

    @field_validator("remedy_order")
    @classmethod
    def _remedies(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in REMEDIES]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(f"must list remedies from {', '.join(REMEDIES)}, each once, comma-separated")
        return ",".join(names)

    @property
    def remedies(self) -> tuple[str, ...]:
        return tuple(self.remedy_order.split(","))

    @field_validator("iotc_base_url")
    @classmethod
    def _has_subdomain(cls, value: str) -> str:
        if "{subdomain}" not in value or not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("must be an https URL template containing {subdomain}")
        return value.rstrip("/")

    @property
    def worst_case_step_seconds(self) -> float:
        """The longest one side effect can take: its retry budget, then one last attempt that runs
        to its timeouts (a role change is a read and a command, each up to the server timeout plus
        the Kusto client's margin; an HTTP call connects and reads), plus one token request when
        the cached token has expired (connect and read). The storage round trip that renews the
        lease is not in it: the run checks what is left of the lease after renewing instead."""
        from shared.credentials import TOKEN_TIMEOUT_S
        from shared.timeouts import KUSTO_CLIENT_MARGIN_S

        kusto = self.kusto_retry_budget_seconds + 2 * (self.kusto_server_timeout_seconds + KUSTO_CLIENT_MARGIN_S)
        http = self.http_retry_budget_seconds + 2 * self.http_timeout_seconds
        return max(kusto, http) + 2 * TOKEN_TIMEOUT_S

    @property
    def lease_margin_seconds(self) -> float:
        """What the lease must hold beyond the worst-case step: the renewal's own storage round trip
        (RENEWAL_S) and the skew between the clock that set the lease and the clock that judges it,
        both ways."""
        return RENEWAL_S + 2 * self.clock_skew_seconds

    @property
    def act_window_seconds(self) -> float:
        """After the renewal that allowed it, how long an act may still land, seen from any clock."""
        late = self.act_lands_within_seconds
        return (2 * self.lease_seconds if late is None else late) + 2 * self.clock_skew_seconds

    @model_validator(mode="after")
    def _lease_outlasts_a_step(self) -> Settings:
        worst, margin = self.worst_case_step_seconds, self.lease_margin_seconds
        if self.lease_seconds < worst + margin:
            raise ValueError(
                f"HEALER_LEASE_SECONDS={self.lease_seconds} must exceed the worst-case step of {worst:.0f} s "
                f"by the margin of {margin:.0f} s ({RENEWAL_S} s for the renewal plus twice "
                f"HEALER_CLOCK_SKEW_SECONDS={self.clock_skew_seconds}): at least {worst + margin:.0f} s. "
                "The worst-case step is HEALER_KUSTO_RETRY_BUDGET_SECONDS plus twice "
                "HEALER_KUSTO_SERVER_TIMEOUT_SECONDS plus 60 s, or "
                "HEALER_HTTP_RETRY_BUDGET_SECONDS plus twice HEALER_HTTP_TIMEOUT_SECONDS, plus 20 s for a token; "
                "with less, every run would find less than a step of lease left and never act"
            )
        return self

    @field_validator("notify_webhook")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        url = value.get_secret_value().strip()
        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("must be an https URL (the value is not shown: it is a secret)")
        return SecretStr(url)

    @cached_property
    def target_list(self) -> list[Target]:
        return load_targets(self.targets, self.targets_file)

    @cached_property
    def app_list(self) -> list[AppConfig]:
        return parse_apps(self.apps) if self.apps else []

    @property
    def observe_only(self) -> bool:
        return self.mode == "observe"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (plus overrides), with targets parsed; ConfigError if bad."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_env_names(describe_validation(exc, "HEALER_"))) from exc
    _ = settings.target_list  # parse now: a bad target must stop the start, not the first run
    _ = settings.app_list
    return settings


def _env_names(text: str) -> str:
    # describe_validation says "HEALER_ mode: …"; app settings are spelled HEALER_MODE.
    parts = []
    for part in text.split("; "):
        head, _, rest = part.partition(": ")
        prefix, _, field = head.partition(" ")
        parts.append(f"{prefix}{field.upper()}: {rest}" if field else rest if head == prefix else part)
    return "; ".join(parts)
