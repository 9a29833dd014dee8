"""The checkpoints of each remedy at which the resilience and real-kill tests crash the healer."""

from __future__ import annotations

REFRESH_POINTS = [
    "journal:plan:done",
    "phase:planned",
    "journal:snapshot:done",
    "phase:snapshotted",
    "journal:drop-admins:intent",
    "effect:drop-admins",
    "journal:drop-admins:done",
    "phase:dropped",
    "enqueue:readd",
    "phase:re-adding",
    "journal:readd-admins:intent",
    "effect:readd-admins",
    "journal:readd-admins:done",
    "phase:verifying",
    "enqueue:verify",
    "journal:verify:done",
]


ADD_TOGGLE_POINTS = [
    "journal:plan:done",
    "phase:planned",
    "phase:adding",
    "journal:add:intent",
    "effect:add",
    "journal:add:done",
    "phase:toggling",
    "journal:disable-export:intent",
    "effect:disable-export",
    "journal:disable-export:done",
    "journal:enable-export:intent",
    "effect:enable-export",
    "journal:enable-export:done",
    "phase:verifying",
    "enqueue:verify",
    "journal:verify:done",
]


RECREATE_POINTS = [
    "journal:plan:done",
    "phase:planned",
    "journal:destination-copy:done",
    "phase:destination-prepared",
    "journal:create-destination:intent",
    "effect:create-destination",
    "journal:create-destination:done",
    "phase:destination-created",
    "journal:repoint-export:intent",
    "effect:repoint-export",
    "journal:repoint-export:done",
    "phase:export-repointed",
    "journal:delete-destination:intent",
    "effect:delete-destination",
    "journal:delete-destination:done",
    "phase:verifying",
    "enqueue:verify",
    "journal:verify:done",
]
