"""The `<prefix>notifications` table as incident claims: a row per incident id, created once (the
claim), replaced only if unchanged since read (a resend after a stalled one), merged when settled."""

from __future__ import annotations

from typing import Any


class IncidentClaims:
    def __init__(self, table: Any) -> None:
        self.table = table  # azure-data-tables TableClient

    def create(self, entity: dict[str, Any]) -> bool:
        """True if this call created the row; False if it existed."""
        from azure.core.exceptions import ResourceExistsError

        from shared.adapters.storage import creating

        try:
            creating(self.table, lambda: self.table.create_entity(entity))  # the table's first write creates it
        except ResourceExistsError:
            return False
        return True

    def get(self, partition_key: str, row_key: str) -> Any:
        return self.table.get_entity(partition_key, row_key)

    def replace_if_unchanged(self, entity: dict[str, Any], read: Any) -> bool:
        """False if another writer changed the row since it was read."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError
        from azure.data.tables import UpdateMode

        try:
            self.table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=read.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return False
        return True

    def merge(self, entity: dict[str, Any]) -> None:
        from azure.data.tables import UpdateMode

        self.table.update_entity(entity, mode=UpdateMode.MERGE)
