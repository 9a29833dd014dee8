"""The healer's Azure credential: its managed identity in Azure (and in the sandbox, whose token
endpoint speaks the App Service protocol), a developer's login elsewhere."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


TOKEN_TIMEOUT_S = 10


def build_credential(client_id: str | None = None) -> TokenCredential:
    if os.environ.get("IDENTITY_ENDPOINT") or os.environ.get("IDENTITY_HEADER"):
        from azure.identity import ManagedIdentityCredential

        # The token endpoint gets bounded time too (azure-core's default is 300 s to read).
        if client_id:
            return ManagedIdentityCredential(
                client_id=client_id, connection_timeout=TOKEN_TIMEOUT_S, read_timeout=TOKEN_TIMEOUT_S
            )
        return ManagedIdentityCredential(connection_timeout=TOKEN_TIMEOUT_S, read_timeout=TOKEN_TIMEOUT_S)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id, exclude_interactive_browser_credential=True)
