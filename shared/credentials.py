"""The healer's Azure credential: its managed identity in Azure (and in the sandbox, whose token
endpoint speaks the App Service protocol), a developer's login elsewhere."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def build_credential(client_id: str | None = None) -> TokenCredential:
    if os.environ.get("IDENTITY_ENDPOINT") or os.environ.get("IDENTITY_HEADER"):
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id, exclude_interactive_browser_credential=True)
