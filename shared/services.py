"""Builds the healer's collaborators from settings. One place, so triggers, CLI and tests agree."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from shared.adapters.iotcentral import IoTCentralAdapter
from shared.adapters.kusto import KustoAdapter
from shared.adapters.loganalytics import LogAnalyticsAdapter
from shared.adapters.storage import RemediationQueue, StateStore
from shared.config.credentials import build_credential
from shared.config.settings import Settings
from shared.domain.targets import ConfigError
from shared.runs import Healer, Services

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.adapters.kusto_ingest import Ingestor


def storage_urls(settings: Settings) -> tuple[str | None, str | None, str | None]:
    """(connection string, table URL, queue URL): identity-based when only an account is named."""
    if settings.storage_connection_string:
        return settings.storage_connection_string, None, None
    if settings.storage_account_name:
        name = settings.storage_account_name
        return None, f"https://{name}.table.core.windows.net", f"https://{name}.queue.core.windows.net"
    raise ConfigError("storage is not configured: set AzureWebJobsStorage or AzureWebJobsStorage__accountName")


def quiet_sdk_loggers(settings: Settings) -> None:
    """The Azure SDKs log every request and response header at INFO: kept at WARNING unless asked."""
    import logging

    logging.getLogger("azure").setLevel(settings.azure_log_level)


def build_services(settings: Settings, credential: TokenCredential | None = None) -> Services:
    quiet_sdk_loggers(settings)
    credential = credential or build_credential(settings.identity_client_id)
    connection, table_url, queue_url = storage_urls(settings)
    store = StateStore(connection, table_url, credential, settings.table_prefix)
    queue = RemediationQueue(settings.queue_name, connection, queue_url, credential)
    adapters: dict[str, KustoAdapter] = {}
    lock = threading.Lock()

    def kusto(cluster_url: str) -> KustoAdapter:
        with lock:
            if cluster_url not in adapters:
                adapters[cluster_url] = KustoAdapter(
                    cluster_url,
                    credential,
                    settings.kusto_retry_budget_seconds,
                    server_timeout_s=settings.kusto_server_timeout_seconds,
                )
            return adapters[cluster_url]

    ingestors: dict[str, Ingestor] = {}

    def ingestor(cluster_url: str) -> Ingestor:
        from shared.adapters.kusto_ingest import Ingestor

        with lock:
            if cluster_url not in ingestors:
                ingestors[cluster_url] = Ingestor(cluster_url, credential)
            return ingestors[cluster_url]

    iotc = IoTCentralAdapter(
        settings.iotc_base_url,
        credential,
        settings.arm_url,
        timeout_s=settings.http_timeout_seconds,
        retry_budget_s=settings.http_retry_budget_seconds,
    )
    logs = LogAnalyticsAdapter(
        settings.log_analytics_endpoint,
        credential,
        settings.http_timeout_seconds,
        settings.http_retry_budget_seconds,
    )
    services = Services(
        settings,
        {t.key: t for t in settings.target_list},
        store,
        queue,
        kusto,
        iotc,
        credential=credential,
        ingestor=ingestor,
        logs=logs,
    )
    install_observers(services)
    return services


def install_observers(services: Services) -> None:
    """Telemetry, root causes and notifications after every history record; the notifier claims
    each incident in the notifications table and posts to HEALER_NOTIFY_WEBHOOK when set."""
    from shared.adapters.incident_claims import IncidentClaims
    from shared.adapters.webhook import Webhook
    from shared.reporting.notify import Notifier
    from shared.reporting.observers import install

    secret = services.settings.notify_webhook
    url = secret.get_secret_value() if secret is not None else None
    install(services, Notifier(IncidentClaims(services.store.notifications), Webhook(url) if url else None))


def build_healer(settings: Settings, credential: TokenCredential | None = None) -> Healer:
    return Healer(build_services(settings, credential))
