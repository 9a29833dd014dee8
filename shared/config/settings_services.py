"""Settings of where the healer's services are and what it reads from them: housekeeping and
storage names, detection's inputs and schedule, the webhooks and endpoints. A group of
`shared.config.settings.Settings`."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator


class ServiceSettings(BaseModel):
    """Storage, detection, webhooks and endpoints."""

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

    # The alert webhook's Entra token (shared/http/webhook_auth.py): the webhook application's
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

    @field_validator("iotc_base_url")
    @classmethod
    def _has_subdomain(cls, value: str) -> str:
        if "{subdomain}" not in value or not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("must be an https URL template containing {subdomain}")
        return value.rstrip("/")

    @field_validator("notify_webhook")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        url = value.get_secret_value().strip()
        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("must be an https URL (the value is not shown: it is a secret)")
        return SecretStr(url)
