"""The verifying phase: toggle the export when asked (two effects that stay paired), schedule the
verification ingestion query, judge it, and fall back to the plan's next remedy in the same run
while the principal is still listed yet denied; a healed run hands over to its follow-ups."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from shared.domain.messages import new_run
from shared.domain.state import PendingEnable, RunData, TargetState
from shared.runs import obligations
from shared.runs.base import PLANNED, TOGGLING, VERIFYING, Outcome
from shared.runs.outcome import Status, ended, escalate
from shared.runs.remedy import Machine, Step
from shared.runs.verification import verify


def to_verify(
    healer: Machine,
    step: Step,
    expect: Collection[str],
    action_at: datetime,
    mutate: Callable[[TargetState], None] | None = None,
) -> Outcome:
    """After a remedy: toggle the export when asked, then schedule verification."""
    if healer.services.settings.toggle_export and not healer.services.settings.observe_only:
        target = step.target
        assert target is not None
        since = healer.services.clock()

        # The toggle is two effects that must stay paired (a twin delivery of this run that
        # disabled after this one enabled would leave the export off): each toggle claims the
        # phase, and only the latest claim may act or end it.
        claim = uuid.uuid4().hex

        def disabling(state: TargetState) -> None:
            if mutate is not None:
                mutate(state)
            if state.pending_enable is None:  # the obligation is recorded before the disable
                state.pending_enable = PendingEnable(
                    run_id=step.run.run_id, app=target.app, export_id=target.export_id, since=since
                )
            state.run_data = state.run_data.model_copy(update={"claim": claim})

        step.run.transition(expect, TOGGLING, disabling)
        step.run.claim = claim
        iotc = healer.services.iotc
        step.run.effect(
            "disable-export",
            TOGGLING,
            lambda: iotc.set_enabled(target.app, target.export_id, False),
            obligation="enable",
        )
        step.run.effect("enable-export", TOGGLING, lambda: iotc.set_enabled(target.app, target.export_id, True))
        enabled_at = healer.services.clock()
        expect, mutate = {TOGGLING}, lambda st: obligations.enabled(st, enabled_at)
    last = mutate

    def verifying(state: TargetState) -> None:
        if last is not None:
            last(state)
        state.run_data = state.run_data.model_copy(update={"claim": ""})
        # Whoever stood in for the run (the sweep, another run's message) keeps the lease
        # through the toggle and hands it back here: the run's own verification comes next.
        state.lease_owner = step.run.run_id

    step.run.transition(expect, VERIFYING, verifying, hold_s=healer.services.settings.verify_poll_seconds)
    step.run.claim = None
    return send_verify(healer, step, action_at)


def send_verify(healer: Machine, step: Step, action_at: datetime) -> Outcome:
    settings = healer.services.settings
    until = healer.services.clock() + timedelta(seconds=settings.verify_deadline_seconds)
    healer.services.queue.send(
        step.msg.next("verify", action_at=action_at, verify_until=until).to_json(),
        delay_s=settings.verify_poll_seconds,
    )
    healer.services.checkpoint("enqueue:verify")
    return Outcome(Status.WAITING, f"verification scheduled until {until:%H:%M:%S}Z")


def verify_step(healer: Machine, step: Step) -> Outcome:
    settings, now, msg, target = healer.services.settings, healer.services.clock(), step.msg, step.target
    assert target is not None
    journal = healer.services.store.read_journal(target.key, msg.run_id)
    changes = [
        r
        for r in journal
        if r["Status"] == "done" and (r["Step"] in ("add", "repoint-export") or r["Step"].startswith("readd-"))
    ]
    # A fallback's re-add supersedes what an earlier remedy of the run saw.
    latest = [r for r in changes if r["Step"].startswith("readd-")] or changes
    listed = bool(latest) and all(r["Data"].get("listed") for r in latest)
    action_at = msg.action_at or now
    result = verify(target, healer.services.kusto(target.cluster_url), healer.services.iotc, action_at, listed)
    step.run.journal("verify", "done", healed=result.healed, detail=result.detail)
    observe = settings.observe_only  # observe mode starts no change: no next remedy, no retry
    if not result.healed and result.still_denied and not observe:
        following = _next_remedy(healer, journal)
        taken = _fall_back(healer, step, following, result.detail) if following is not None else None
        if taken is not None:
            return taken
    if result.healed:
        state = healer.services.store.load(target.key)
        for follow_up in healer.follow_ups:
            taken = follow_up.after_healed(step, state)
            if taken is not None:
                return taken
        cooldown = now + timedelta(seconds=settings.cooldown_seconds)
        step.run.finish(lambda st: ended(st, Status.HEALED, cooldown_until=cooldown, healed_at=now))
        return healer.history(step, Outcome(Status.HEALED, result.detail))
    if msg.verify_until and now < msg.verify_until:
        step.run.renew(extra_s=settings.verify_poll_seconds, during=VERIFYING)
        healer.services.queue.send(msg.to_json(), delay_s=settings.verify_poll_seconds)
        healer.services.checkpoint("enqueue:verify-again")
        return Outcome(Status.WAITING, f"not yet: {result.detail}")
    window = now - timedelta(seconds=settings.attempt_window_seconds)

    def failed(state: TargetState) -> None:
        state.attempts = [a for a in state.attempts if a > window] + [now]
        state.last_outcome = Status.NOT_HEALED.value
        if len(state.attempts) >= settings.max_attempts:
            escalate(state, f"not healed after {len(state.attempts)} attempts: {result.detail}")

    state = step.run.finish(failed)
    if state.escalated:
        return healer.history(step, Outcome(Status.ESCALATED, state.escalation_reason))
    if observe:
        return healer.history(step, Outcome(Status.NOT_HEALED, f"{result.detail}; observe mode: no retry"))
    retry = new_run(target.key, "retry", msg.correlation_id, f"retry after: {result.detail}"[:500])
    healer.services.queue.send(retry.to_json(), delay_s=settings.verify_poll_seconds)
    return healer.history(step, Outcome(Status.NOT_HEALED, f"{result.detail}; retry scheduled"))


def _next_remedy(healer: Machine, journal: list[dict[str, Any]]) -> str | None:
    """The plan's next remedy after those this run already began (None if none is left)."""
    plans = [r for r in journal if r["Step"] == "plan"]
    if not plans:
        return None
    data = plans[0]["Data"]
    actions = data.get("plan", {}).get("actions", []) if isinstance(data, dict) else []
    remedies = [str(a["action"]) for a in actions if str(a.get("action")) in healer.remedies]
    tried = remedies[:1] + [
        str(r["Data"].get("action")) for r in journal if r["Step"] == "next-remedy" and isinstance(r["Data"], dict)
    ]
    return next((a for a in remedies if a not in tried), None)


def _fall_back(healer: Machine, step: Step, action_kind: str, seen: str) -> Outcome | None:
    """The remedy done left ingestion denied: read afresh and, if the principal is still listed
    yet denied, carry out the plan's next remedy in this same run."""
    target = step.target
    assert target is not None
    fresh, plan = healer.plan(target, step.msg.correlation_id)
    action = next((a for a in plan.actions if a.kind == action_kind), None)
    step.run.journal("next-remedy", "done", action=action_kind, seen=seen[:500], diagnosis=str(fresh.diagnosis.kind))
    if action is None:
        return None  # not applicable now (the diagnosis changed): verification goes on
    step.run.transition({VERIFYING}, PLANNED, _fresh_run_data)
    return healer.remedies[action_kind].begin(step, fresh, action, plan)


def _fresh_run_data(state: TargetState) -> None:
    state.run_data = RunData()
