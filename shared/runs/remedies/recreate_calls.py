"""Re-create an export's ADX destination: Microsoft's documented repair for a managed-identity
export that ADX denies although its identity holds the right role (IoT Central's troubleshooting
page, "Data export managed identity issues": "If the permissions weren't set correctly before you
created the destination in your IoT Central application, try removing the destination and then
adding it again").

Make-before-break, so the export is never without a destination:

  1. prepare  GET the destination and the export: the destination's body and the export's
              reference to it (with its jq `transform`) go to the journal;
  2. create   PUT a copy under a new id, derived from the run (a retry PUTs the same one);
  3. point    PATCH the export's `destinations`: the old reference becomes the new id, its
              transform and every other destination kept;
  4. delete   DELETE the old destination (already gone counts as done).

Each step is idempotent and reads before it acts where the API allows; the caller journals the
intent and the result around each one and resumes from the journal after a crash. Only for
managed-identity destinations: a service principal's `clientSecret` comes back as `*****`, so a
copy could not authenticate (a person must re-create such a destination).
"""

from __future__ import annotations

from typing import Any

from shared.adapters.iotcentral import IoTCentralAdapter
from shared.adapters.iotcentral_model import IotcError
from shared.domain.destination_copy import (
    READ_ONLY,
    DestinationCopy,
    NotRecreatable,
    new_destination_id,
    recreatable,
    repointed,
)


def prepare(iotc: IoTCentralAdapter, app: str, export_id: str, destination_id: str, run_id: str) -> DestinationCopy:
    destination = iotc.destination(app, destination_id)
    why = recreatable(destination)
    if why:
        raise NotRecreatable(why)
    export = iotc.export(app, export_id)
    refs = [r for r in export.get("destinations") or [] if isinstance(r, dict)]
    reference = next((r for r in refs if r.get("id") == destination_id), None)
    if reference is None:
        raise NotRecreatable(f"export {export_id} no longer sends to destination {destination_id}")
    body = {k: v for k, v in destination.items() if k not in READ_ONLY}
    return DestinationCopy(app, export_id, destination_id, new_destination_id(destination_id, run_id), body, reference)


def create(iotc: IoTCentralAdapter, copy: DestinationCopy) -> dict[str, Any]:
    """PUT is create-or-replace: a retry after a crash creates nothing twice."""
    return iotc.put_destination(copy.app, copy.new_id, copy.body)


def point(iotc: IoTCentralAdapter, copy: DestinationCopy) -> bool:
    """Replace the old reference by the new id (transform kept). False if it was already done."""
    export = iotc.export(copy.app, copy.export_id)
    refs = [dict(r) for r in export.get("destinations") or [] if isinstance(r, dict)]
    ids = [r.get("id") for r in refs]
    if copy.new_id in ids and copy.old_id not in ids:
        return False
    if copy.old_id not in ids:
        raise NotRecreatable(f"export {copy.export_id} no longer sends to destination {copy.old_id}")
    current = next(r for r in refs if r.get("id") == copy.old_id)
    if current != copy.reference:  # edited since the copy was planned: a person's change wins
        raise NotRecreatable(
            f"export {copy.export_id}: its reference to {copy.old_id} changed since the copy was planned "
            f"({copy.reference} -> {current}); not overwritten"
        )
    updated = repointed(refs, copy.old_id, copy.new_id, base=copy.reference)
    try:
        iotc.set_destinations(copy.app, copy.export_id, updated, based_on=export.get("destinations") or [])
    except IotcError as exc:
        if exc.code == "ConcurrentEdit":
            raise NotRecreatable(str(exc)) from exc
        raise
    return True


def delete_old(iotc: IoTCentralAdapter, copy: DestinationCopy) -> bool:
    """True if the old destination was deleted now, False if it was already gone."""
    return iotc.delete_destination(copy.app, copy.old_id)
