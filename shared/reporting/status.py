"""One target's state as people read it (the /api/targets route and `python -m shared status`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.domain.state import TargetState
from shared.domain.targets import Target

if TYPE_CHECKING:
    from shared.runs import Services


def target_row(target: Target, state: TargetState | None, now: datetime) -> dict[str, Any]:
    return {
        "target": target.key,
        "app": target.app,
        "cluster_url": target.cluster_url,
        "database": target.database,
        "table": target.table,
        "role": target.role,
        "last_outcome": state.last_outcome if state else "",
        "last_diagnosis": state.last_diagnosis if state else "",
        "in_progress": bool(state and state.leased(now)),
        "cooldown_until": state.cooldown_until.isoformat() if state and state.cooldown_until else None,
        "escalated": bool(state and state.escalated),
        "escalation_reason": state.escalation_reason if state else "",
        "pending_readd": bool(state and state.pending_readd),
        "phase": state.phase if state else "",
        "gap": state.gap if state and state.gap else None,
        "root_cause": state.last_root_cause if state else None,
    }


def known_targets(services: Services, states: list[TargetState] | None = None) -> dict[str, Target]:
    """Configured targets, plus those detection discovered (remembered in the state table)."""
    targets = dict(services.targets)
    for state in services.store.all_states() if states is None else states:
        if state.discovered and state.key not in targets:
            targets[state.key] = Target.model_validate(state.discovered)
    return targets


def target_rows(services: Services, now: datetime) -> list[dict[str, Any]]:
    """A row per known target, from one read of the state table."""
    states = services.store.all_states()
    by_key = {s.key: s for s in states}
    return [target_row(t, by_key.get(key), now) for key, t in sorted(known_targets(services, states).items())]
