"""The run graph as data: every phase a run can be in and every move between them.

`Run.transition()` refuses a move this table does not hold, the sweep has a recovery owner for
every phase that is not at rest (shared/runs/recovery.py RECOVERY; a test fails when one is
missing), and the diagram in docs/architecture.md is generated from MOVES (a test keeps them equal).
"""

from __future__ import annotations

IDLE = ""
PLANNED = "planned"
ADDING = "adding"
PREPARED = "destination-prepared"
CREATED = "destination-created"
REPOINTED = "export-repointed"
SNAPSHOTTED = "snapshotted"
DROPPED = "dropped"
READDING = "re-adding"
TOGGLING = "toggling"
VERIFYING = "verifying"
BACKFILLING = "backfilling"
DONE = "done"

# At rest: no worker is needed and nothing is owed by the phase itself (obligations are apart).
AT_REST = frozenset({IDLE, DONE})
# Where a new run may begin, and the phases of an earlier run it may begin over (no takeover of a
# run in any other phase: the new start waits, or hands the earlier run to its recovery owner).
STARTS = frozenset({PLANNED, BACKFILLING})
REPLACEABLE = frozenset({IDLE, PLANNED, DONE})

# Every move a run may make (a phase may also be written again unchanged: a twin's claim, a
# backfill's next window). Ending a run (`finish`) moves any phase to `done`.
MOVES: dict[str, frozenset[str]] = {
    IDLE: frozenset({PLANNED, BACKFILLING}),
    PLANNED: frozenset({ADDING, PREPARED, SNAPSHOTTED}),
    ADDING: frozenset({TOGGLING, VERIFYING}),
    PREPARED: frozenset({CREATED}),
    CREATED: frozenset({REPOINTED}),
    REPOINTED: frozenset({TOGGLING, VERIFYING}),
    SNAPSHOTTED: frozenset({DROPPED, READDING}),
    DROPPED: frozenset({READDING}),
    READDING: frozenset({TOGGLING, VERIFYING}),
    TOGGLING: frozenset({VERIFYING}),
    VERIFYING: frozenset({PLANNED, BACKFILLING}),
    BACKFILLING: frozenset(),
    DONE: frozenset({PLANNED, BACKFILLING}),
}
PHASES: tuple[str, ...] = tuple(MOVES)


def allowed(current: str, to: str) -> bool:
    return to == current or to in MOVES.get(current, frozenset())


def mermaid() -> str:
    """The graph as a Mermaid state diagram (docs/architecture.md shows exactly this)."""
    names = {IDLE: "idle"}
    lines = ["stateDiagram-v2", "    [*] --> idle"]
    for phase, targets in MOVES.items():
        for to in sorted(targets):
            lines.append(f"    {_id(names.get(phase, phase))} --> {_id(to)}")
    for phase in PHASES:
        if phase not in AT_REST:
            lines.append(f"    {_id(phase)} --> done: finish")
    lines.append("    done --> [*]")
    return "\n".join(lines)


def _id(phase: str) -> str:
    return phase.replace("-", "_")
