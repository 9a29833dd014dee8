"""The phase after a verified healing: measure the export's gap and backfill it.

Gap: from the last row ingested before the repair (the last good export; with none, the lookback
before the repair) to the first row ingested after it, widened by GAP_MARGIN on both sides for
the export's delivery latency. It is recorded in the target's state (`/api/targets`, `status`)
and in the run's history.

`HEALER_BACKFILL`: `off` ends the run at verification; `plan` (the default, and always in observe
mode) runs the queries and the comparison and records what would be ingested; `on` ingests it.
The run stays in phase `backfilling`, holding the target's lease, one bounded invocation per
queue message (`HEALER_BACKFILL_INVOCATION_SECONDS`), until the whole window is done.

A backfill can also be asked for by hand (CLI, `/api/heal` with `backfill`): it is a run of its
own that starts in this phase.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, ClassVar

from shared.adapters.kusto_errors import AdxError
from shared.domain.messages import RemediationMessage
from shared.domain.state import TargetState
from shared.runs.base import VERIFYING, LeaseLost, Outcome, PhaseConflict
from shared.runs.outcome import Status
from shared.runs.remedy import Step

log = logging.getLogger(__name__)
BACKFILLING = "backfilling"
# The export delivers in batches: widen the gap by this much on both sides (rows already in the
# table are skipped, so a wider window costs queries, never duplicates).
GAP_MARGIN = timedelta(seconds=120)


def backfill_mode(settings: Any, asked: str | None = None) -> str:
    if settings.observe_only:
        return "plan"  # observe mode never changes a table
    return asked or ("on" if settings.backfill == "on" else "plan")


class Backfill:
    phases: ClassVar[tuple[str, ...]] = (BACKFILLING,)
    steps: ClassVar[tuple[str, ...]] = ("backfill",)

    # ---------------------------------------------------------------- after verification

    def after_healed(self, step: Step, state: TargetState) -> Outcome | None:
        """The run moves on to `backfilling`; the gap is measured by the backfill's first
        invocation, so the healing itself costs no extra request."""
        s = step.healer.services
        if s.settings.backfill == "off" or step.target is None:
            return None
        now = s.clock()
        mode = backfill_mode(s.settings)
        gap: dict[str, Any] = {"run_id": step.msg.run_id, "backfill": mode, "status": "queued"}
        cooldown = now + timedelta(seconds=s.settings.cooldown_seconds)

        def healed(st: TargetState) -> None:
            st.gap, st.last_outcome, st.cooldown_until, st.healed_at = gap, "healed", cooldown, now

        step.run.transition({VERIFYING}, BACKFILLING, healed, hold_s=s.settings.backfill_invocation_seconds)
        action_at = step.msg.action_at or now
        s.queue.send(step.msg.next("backfill", action_at=action_at, backfill_mode=mode).to_json())
        s.checkpoint("enqueue:backfill")
        verified = next(
            (
                str(r["Data"].get("detail", ""))
                for r in s.store.read_journal(step.key, step.msg.run_id)
                if r["Step"] == "verify" and r["Status"] == "done"
            ),
            "verified",
        )
        return step.healer.history(step, Outcome(Status.HEALED, f"{verified}; gap backfill ({mode}) queued"))

    @staticmethod
    def measure(step: Step) -> tuple[datetime, datetime, dict[str, Any]]:
        """The gap of a healed run: last row before the repair → first row after it (+ margins).

        Both are read around the moment the run planned (its journal's `plan` entry), not the action
        time a remedy records after acting: rows the export delivered right after the repair must
        not pass for the last good ones."""
        s, target = step.healer.services, step.target
        assert target is not None
        now = s.clock()
        action_at = step.msg.action_at or now
        planned = [
            datetime.fromisoformat(str(r["At"]))
            for r in s.store.read_journal(target.key, step.msg.run_id)
            if r["Step"] == "plan" and r.get("At")
        ]
        pivot = min([*planned, action_at])
        kusto = s.kusto(target.cluster_url)
        try:
            last_good = kusto.last_ingestion_before(target.database, target.table, pivot)
            first_new = kusto.first_ingestion_since(target.database, target.table, pivot)
        except AdxError as exc:
            log.warning("gap of %s not measured: %s", target.key, exc)
            last_good = first_new = None
        from shared.backfill.engine import gap_window

        fallback = pivot - timedelta(minutes=s.settings.lookback_minutes)
        start, end = gap_window(last_good, first_new, fallback, now, GAP_MARGIN)
        gap = {
            "last_good": last_good.isoformat() if last_good else None,
            "first_new": first_new.isoformat() if first_new else None,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "seconds": round((end - start).total_seconds()),
        }
        return start, end, gap

    # ---------------------------------------------------------------- a backfill asked for by hand

    def begin(self, step: Step, state: TargetState, budget_s: float | None = None) -> Outcome:
        """A `backfill` message of a run that is not in progress: a backfill-only run."""
        msg, s = step.msg, step.healer.services
        if state.last_run_id == msg.run_id:
            return Outcome(Status.SKIPPED, f"run {msg.run_id} already ended")
        if msg.window_start is None or msg.window_end is None:
            return Outcome(Status.SKIPPED, "a backfill needs window_start and window_end")
        if step.run.acquire(extra_s=s.settings.backfill_invocation_seconds) is None:
            return step.healer.history(step, Outcome(Status.SKIPPED, "another remediation holds this target"))
        gap = {
            "run_id": msg.run_id,
            "start": msg.window_start.isoformat(),
            "end": msg.window_end.isoformat(),
            "backfill": backfill_mode(s.settings, msg.backfill_mode),
            "status": "queued",
        }
        step.run.transition(None, BACKFILLING, lambda st: setattr(st, "gap", gap))
        return self.resume(step, s.store.load(step.key), budget_s)

    # ---------------------------------------------------------------- one invocation

    def resume(self, step: Step, state: TargetState, budget_s: float | None = None) -> Outcome:
        msg, s, target = step.msg, step.healer.services, step.target
        if msg.step != "backfill" or target is None:
            return Outcome(Status.SKIPPED, f"run {msg.run_id} is backfilling; {msg.step} is not its step")
        if msg.window_start is None or msg.window_end is None:  # right after verification: measure first
            start, end, measured = self.measure(step)
            step.run.transition(
                {BACKFILLING}, BACKFILLING, lambda st: setattr(st, "gap", {**(st.gap or {}), **measured})
            )
            msg = msg.model_copy(update={"window_start": start, "window_end": end})
        else:
            start, end = msg.window_start, msg.window_end
        from shared.backfill.engine import BackfillEngine

        if s.ingestor is None:
            raise RuntimeError("no ingestion client configured")
        budget = float(s.settings.backfill_invocation_seconds) if budget_s is None else budget_s
        self.claim(step, budget)
        mode = backfill_mode(s.settings, msg.backfill_mode)
        engine = BackfillEngine(s, s.ingestor, guard=lambda: step.run.renew(extra_s=budget, during=BACKFILLING))
        progress = engine.begin(target, msg.run_id, start, end, mode)
        progress = engine.run(target, progress, budget)
        status = "refused" if progress.refused else ("done" if progress.done else "running")

        def record(st: TargetState) -> None:
            gap = dict(st.gap or {})
            gap.update(
                {
                    "run_id": msg.run_id,
                    "start": progress.start,
                    "end": progress.end,
                    "backfill": progress.mode,
                    "status": status,
                    "rows_expected": progress.rows_found,
                    "rows_present": progress.rows_present,
                    "rows_missing": progress.rows_missing,
                    "rows_ingested": progress.rows_sent,
                    "queries": progress.queries,
                    "ingestion": progress.ingestion,
                    "unrecoverable": progress.unrecoverable,
                    "unrecoverable_s": progress.unrecoverable_s,
                    "approximate": progress.approximate,
                }
            )
            if progress.refused:
                gap["refused"] = progress.refused
            st.gap = gap

        if not progress.done:
            step.run.transition({BACKFILLING}, BACKFILLING, record, hold_s=budget + progress.wait_s)
            s.queue.send(msg.to_json(), delay_s=progress.wait_s)
            s.checkpoint("enqueue:backfill-continue")
            return Outcome(Status.WAITING, f"backfill at {progress.cursor} of {progress.end}; continuing")
        step.run.renew(during=BACKFILLING)  # a twin that claimed the run since ends it, not this one
        step.run.finish(record)
        summary = (
            f"{progress.rows_found} rows the export would have written in {progress.start}..{progress.end}: "
            f"{progress.rows_present} present"
        )
        if progress.unrecoverable_s:
            summary = f"{progress.unrecoverable_s} s of the gap unrecoverable (older than the retention); {summary}"
        if progress.approximate:
            summary += f"; written approximate, not restored: {', '.join(progress.approximate)}"
        if progress.refused:
            outcome = Outcome(Status.BACKFILL_REFUSED, progress.refused)
        elif mode == "on":
            outcome = Outcome(
                Status.BACKFILLED,
                f"{summary}, {progress.rows_sent} ingested in {progress.chunks} chunk(s) ({progress.queries} queries)",
            )
        else:
            outcome = Outcome(
                Status.BACKFILL_PLANNED,
                f"{summary}, {progress.rows_missing} would be ingested ({progress.queries} queries)",
            )
        step.healer.history(step, outcome, gap=progress.to_dict())
        return outcome

    @staticmethod
    def claim(step: Step, budget_s: float) -> None:
        """One invocation per run at a time: a delivery claims the backfill (the lease is the run's,
        so a twin delivery of the same message holds it too); every later write and ingestion of
        this invocation is fenced by the claim, so the twin that claimed last is the only one that
        acts and an earlier one stands back at its next step."""
        token = uuid.uuid4().hex
        until = step.healer.services.clock() + timedelta(seconds=step.healer.services.settings.lease_seconds + budget_s)

        def claimed(state: TargetState) -> None:
            if state.lease_owner != step.run.holder:
                raise LeaseLost(f"run {step.msg.run_id} no longer holds {step.key}")
            if state.run_id != step.msg.run_id or state.phase != BACKFILLING:
                raise PhaseConflict(f"run {step.msg.run_id} on {step.key}: phase is {state.phase!r}, not backfilling")
            state.run_data = state.run_data.model_copy(update={"claim": token})
            state.lease_until = until

        step.healer.services.store.update(step.key, claimed)
        step.run.claim = token


def backfill_message(
    target_key: str, start: datetime, end: datetime, mode: str | None, trigger: str, reason: str
) -> RemediationMessage:
    from shared.domain.messages import new_run

    run = new_run(target_key, trigger, reason=reason)  # type: ignore[arg-type]
    return run.next("backfill", window_start=start, window_end=end, backfill_mode=mode)


class BadWindow(ValueError):
    """A backfill window that cannot be used; the text names the field and the value."""


def _when(field: str, value: object) -> datetime:
    if not isinstance(value, str):
        raise BadWindow(f"{field}={value!r} must be an ISO 8601 time with a time zone")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadWindow(f"{field}={value!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise BadWindow(f"{field}={value!r} must carry a time zone (e.g. Z)")
    return parsed


def resolve_window(
    start: object, end: object, state: TargetState, now: datetime, field: str = "backfill"
) -> tuple[datetime, datetime]:
    """The window asked for, or the target's last measured gap when none is given."""
    gap = state.gap or {}
    if start is None and end is None:
        if not gap.get("start") or not gap.get("end"):
            raise BadWindow(f"{field}: no gap has been measured for {state.key}; give from and to")
        return _when(f"{field}.from", gap["start"]), _when(f"{field}.to", gap["end"])
    if start is None or end is None:
        raise BadWindow(f"{field}: give both from and to (or neither, for the last measured gap)")
    first, last = _when(f"{field}.from", start), _when(f"{field}.to", end)
    if last <= first:
        raise BadWindow(f"{field}.to={end!r} must be after {field}.from={start!r}")
    if first > now:
        raise BadWindow(f"{field}.from={start!r} is in the future")
    return first, min(last, now)


def request_backfill(
    services: Any, target_key: str, start: datetime, end: datetime, mode: str, trigger: str
) -> tuple[bool, str, str]:
    """Queue a backfill-only run: (queued, run id, reason)."""
    state = services.store.load(target_key)
    busy = state.why_busy(services.clock(), manual=True)
    if busy:
        return False, "", busy
    msg = backfill_message(target_key, start, end, mode, trigger, f"backfill asked by {trigger}")
    services.queue.send(msg.to_json())
    return True, msg.run_id, "queued"
