"""The doctor's storage check: the state table and the remediation queue answer, read only (one
line for the account: a wrong key or a missing role shows in both services alike)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.doctor.failures import transient
from shared.doctor.findings import said

if TYPE_CHECKING:
    from shared.doctor.findings import Findings
    from shared.runs import Services


def check_storage(out: Findings, services: Services) -> bool:
    """True when the state table answered (then the targets it knows can be checked too)."""
    settings = services.settings
    account = settings.storage_account_name or "<storage-account>"
    storage_scope = (
        "$(az storage account show --name " + account + " --query id -o tsv)"
        if settings.storage_account_name
        else "<storage account id>"
    )

    def fix(role: str) -> str:
        if settings.storage_connection_string:
            return "check the account key in AzureWebJobsStorage (the connection string)"
        return (
            f"az role assignment create --assignee-object-id {out.oid} --assignee-principal-type "
            f"ServicePrincipal --role '{role}' --scope {storage_scope}"
        )

    from azure.core.exceptions import ResourceNotFoundError

    queue = services.queue
    try:
        states = services.store.all_states()
    except Exception as exc:
        _failed(out, "the state table", exc, fix("Storage Table Data Contributor"))
        return False
    try:
        queue.client.get_queue_properties()
        queued = f"queue {queue.name} exists"
    except ResourceNotFoundError:
        queued = f"queue {queue.name} is not created yet (its first message creates it)"
    except Exception as exc:
        _failed(out, f"queue {queue.name}", exc, fix("Storage Queue Data Contributor"))
        return True
    out.add(
        "storage",
        "tables-and-queue",
        "pass",
        f"the state table answers ({len(states)} target state(s); tables are created by the first write); {queued}",
    )
    return True


def _failed(out: Findings, what: str, exc: Exception, fix: str) -> None:
    if transient(exc):
        out.cannot_tell("storage", "tables-and-queue", exc)
    else:
        out.add("storage", "tables-and-queue", "fail", f"{what} could not be read ({said(exc)})", fix)
