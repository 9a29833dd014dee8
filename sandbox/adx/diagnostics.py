"""ADX's diagnostic settings: the `Journal` and `FailedIngestion` logs, sent to a Log Analytics
workspace as the `ADXJournal` and `FailedIngestion` tables."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime

from sandbox.adx.model import Cluster, KustoFault
from sandbox.adx.server import error_body
from sandbox.arm_ids import ADX_RESOURCE_ID
from sandbox.entra import Identity
from sandbox.monitor import LogAnalytics


class Diagnostics:
    def __init__(self, cluster: Cluster, la: LogAnalytics, workspace_id: str) -> None:
        self.cluster = cluster
        self.la = la
        self.workspace_id = workspace_id
        self._versions = itertools.count(2)  # the databases' metadata versions (EntityVersion)
        cluster.on_principal_change.append(self.principal_changed)

    def principal_changed(self, caller: Identity | None, verb: str, entity: str, change: str) -> None:
        """A principal change made by a command: journaled as sent, with the caller as actor."""
        database, _, table = entity.partition("/")
        command = self.cluster.command_text or role_command(verb, database, table or None, change)
        principal = f"Microsoft Entra app id={caller.client_id}" if caller else ""
        self.journal(database, table or database, command, principal, caller.name if caller else "")

    def journal(self, database: str, entity: str, command: str, principal: str, user: str) -> dict[str, str]:
        """One `ADXJournal` row. Principal follows the `.show journal` documentation's examples
        (`imike@fabrikam.com` for a user, `Microsoft Entra app id=<id>` for an app); what ADX
        writes in `User` and `Event` for a principal change is undocumented (Event left empty)."""
        now = datetime.now(UTC)
        # Its own counter, not the world's lock: commands journal while holding the cluster's lock.
        version = next(self._versions)
        self.la.append(
            self.workspace_id,
            "ADXJournal",
            {
                "TenantId": self.workspace_id,
                "TimeGenerated": now,
                "OperationTimestamp": now,
                "DatabaseName": database,
                "EntityName": entity,
                "UpdatedEntityName": entity,
                "EntityContainerName": database,
                "EntityVersion": f"v{version}.0",
                "OriginalEntityVersion": f"v{version - 1}.0",
                "ChangeCommand": command,
                "Principal": principal,
                "User": user,
                "CorrelationId": f"KD2RunCommand;{uuid.uuid4()}",
                "RootActivityId": str(uuid.uuid4()),
                "_ResourceId": ADX_RESOURCE_ID,
                "_SubscriptionId": ADX_RESOURCE_ID.split("/")[2],
            },
        )
        return {"command": command, "actor": user or principal}

    def failed_ingestion(self, database: str, table: str, fault: KustoFault, source: str) -> None:
        operation = str(uuid.uuid4())
        details = error_body(
            fault.status,
            fault.code,
            fault.error_type,
            fault.message,
            fault.permanent,
            f"DM.IngestionExecutor;{operation}",
        )
        self.la.append(
            self.workspace_id,
            "FailedIngestion",
            {
                "TenantId": self.workspace_id,
                "OperationId": operation,
                "Database": database,
                "Table": table,
                "FailedOn": datetime.now(UTC),
                "IngestionSourceId": str(uuid.uuid4()),
                "IngestionSourcePath": source,
                "RootActivityId": str(uuid.uuid4()),
                "ErrorCode": fault.code,
                "FailureStatus": "Permanent" if fault.permanent else "Transient",
                "Details": json.dumps(details),
                "OriginatesFromUpdatePolicy": False,
                "ShouldRetry": not fault.permanent,
                "_ResourceId": ADX_RESOURCE_ID,
            },
        )


def role_command(verb: str, database: str, table: str | None, change: str) -> str:
    """`.drop database ['db'] ingestors ('aadapp=…;…')`: a command as a person would type it."""
    scope = f"table ['{table}']" if table else f"database ['{database}']"
    role, _, rest = change.partition(" ")
    principals = rest if rest == "none" else "(" + ", ".join(f"'{p}'" for p in rest.strip("()").split(", ")) + ")"
    return f".{verb} {scope} {role} {principals}"
