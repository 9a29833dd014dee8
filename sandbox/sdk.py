"""The real Azure SDK clients, pointed at the sandbox. Used by the demo, the tests and docs/sandbox.md."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core import PipelineClient
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.query import LogsQueryClient

    from sandbox.stage import Stage

IOTC_API_VERSION = "2022-10-31-preview"
IOTC_SCOPE = "https://apps.azureiotcentral.com/.default"


def use_sandbox_identity(world: Stage) -> None:
    """Point azure-identity's managed-identity support at the sandbox token endpoint."""
    os.environ.update(world.identity_env())


def credential(client_id: str | None = None) -> ManagedIdentityCredential:
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def kusto_client(cluster_url: str, cred: Any) -> Any:
    from azure.kusto.data import KustoClient, KustoConnectionStringBuilder

    return KustoClient(KustoConnectionStringBuilder.with_azure_token_credential(cluster_url, cred))


def logs_client(endpoint: str, cred: Any) -> LogsQueryClient:
    from azure.monitor.query import LogsQueryClient

    return LogsQueryClient(cred, endpoint=endpoint, audience="https://api.loganalytics.io")


def iotc_client(base_url: str, cred: Any) -> PipelineClient[Any, Any]:
    """An azure-core pipeline for one IoT Central app: bearer token + retry policies."""
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import (
        BearerTokenCredentialPolicy,
        HeadersPolicy,
        RetryPolicy,
        UserAgentPolicy,
    )

    policies = [
        HeadersPolicy(),
        UserAgentPolicy("iotc-adx-healer-sandbox"),
        RetryPolicy(retry_total=3, retry_backoff_factor=0.2),
        BearerTokenCredentialPolicy(cred, IOTC_SCOPE),
    ]
    return PipelineClient(base_url=base_url, policies=policies)


def iotc_get(client: PipelineClient[Any, Any], path: str, **params: str) -> Any:
    from azure.core.rest import HttpRequest

    request = HttpRequest("GET", client.format_url(path), params={"api-version": IOTC_API_VERSION, **params})
    # The sandbox listens on plain http; Azure is always https.
    response = client.send_request(request, enforce_https=False)
    response.raise_for_status()
    return response.json()


def iotc_pages(client: PipelineClient[Any, Any], path: str) -> Iterator[dict[str, Any]]:
    from azure.core.rest import HttpRequest

    page = iotc_get(client, path)
    while True:
        yield from page.get("value", [])
        next_link = page.get("nextLink")
        if not next_link:
            return
        response = client.send_request(HttpRequest("GET", next_link), enforce_https=False)
        response.raise_for_status()
        page = response.json()


ARM_SCOPE = "https://management.azure.com/.default"
IOTC_ARM_API_VERSION = "2021-06-01"


def arm_client(base_url: str, cred: Any) -> PipelineClient[Any, Any]:
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy

    return PipelineClient(
        base_url=base_url, policies=[RetryPolicy(retry_total=3), BearerTokenCredentialPolicy(cred, ARM_SCOPE)]
    )


def arm_get(client: PipelineClient[Any, Any], resource_id: str) -> Any:
    from azure.core.rest import HttpRequest

    request = HttpRequest("GET", client.format_url(resource_id), params={"api-version": IOTC_ARM_API_VERSION})
    response = client.send_request(request, enforce_https=False)
    response.raise_for_status()
    return response.json()
