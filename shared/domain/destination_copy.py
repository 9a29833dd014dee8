"""What a destination copy is, before any call: the record a re-creation keeps (journaled before
the first change), the copy's id, and whether the healer may re-create a destination at all
(managed identity only: a service principal's `clientSecret` comes back as `*****`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MANAGED_IDENTITY = "systemAssignedManagedIdentity"
READ_ONLY = ("id", "status", "errors")
_SUFFIX = re.compile(r"-r[0-9a-f]{8}$")
MAX_ID = 128


class NotRecreatable(Exception):
    """The destination cannot be re-created by the healer; the message says why."""


@dataclass(frozen=True)
class DestinationCopy:
    """Everything the re-creation needs, journaled before the first change."""

    app: str
    export_id: str
    old_id: str
    new_id: str
    body: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)  # the export's {id, transform?}

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "export_id": self.export_id,
            "old_id": self.old_id,
            "new_id": self.new_id,
            "body": self.body,
            "reference": self.reference,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> DestinationCopy:
        return DestinationCopy(
            app=str(data["app"]),
            export_id=str(data["export_id"]),
            old_id=str(data["old_id"]),
            new_id=str(data["new_id"]),
            body=dict(data.get("body") or {}),
            reference=dict(data.get("reference") or {}),
        )


def new_destination_id(old_id: str, run_id: str) -> str:
    """`<old id>-r<8 hex of the run>`; an earlier suffix is replaced so ids do not grow."""
    base = _SUFFIX.sub("", old_id)
    suffix = f"-r{run_id[:8].lower()}"
    return base[: MAX_ID - len(suffix)] + suffix


def recreatable(destination: dict[str, Any]) -> str:
    """ "" if the healer may re-create this destination, else the reason it may not."""
    if destination.get("type") != "dataexplorer@v1":
        return f"destination type {destination.get('type')!r} is not dataexplorer@v1"
    auth = destination.get("authorization") or {}
    kind = auth.get("type") if isinstance(auth, dict) else None
    if kind != MANAGED_IDENTITY:
        return (
            f"the destination authorizes as {kind!r}: its secret comes back masked, so a copy could not "
            "authenticate; a person must re-create it"
        )
    return ""


def repointed(
    refs: list[dict[str, Any]], from_id: str, to_id: str, base: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """An export's references with `from_id` replaced by `to_id`, its transform kept (over `base`,
    the reference as planned, when given), never naming one destination twice."""
    out: list[dict[str, Any]] = []
    for ref in refs:
        moved = {**(base or {}), **ref, "id": to_id} if ref.get("id") == from_id else ref
        if moved.get("id") == to_id and any(r.get("id") == to_id for r in out):
            continue
        out.append(moved)
    return out
