"""What the Functions triggers call. `function_app.py` only wires triggers to these functions.

Everything heavy (settings, SDK clients) is built on first use and cached for the process.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.http.api import ApiError, ApiResponse, Handler, dispatch, error

if TYPE_CHECKING:  # imported when first used: the cold start stays cheap
    from shared.detection.detector import Detector
    from shared.domain.targets import Target
    from shared.runs import Healer

log = logging.getLogger("iotc_adx_healer")
_lock = threading.Lock()
_cache: dict[str, Composition] = {}


@dataclass
class Composition:
    """The app's healer and detector, built once per process from the settings."""

    healer: Healer
    detector: Detector


def composition() -> Composition:
    with _lock:
        if "composition" not in _cache:
            from shared.config.settings import load_settings
            from shared.detection.detector import Detector
            from shared.services import build_healer

            settings = load_settings()
            healer = build_healer(settings)  # tables and queues are created by their first write
            _cache["composition"] = Composition(healer, Detector(healer, healer.services.logs))
        return _cache["composition"]


def reset() -> None:
    """Forget the cached composition and the tenant's signing keys (settings changed, as when a
    host restarts with new app settings: tests, the drill)."""
    from shared.http.webhook_auth import forget_signing_keys

    with _lock:
        _cache.clear()
    forget_signing_keys()


# ---------------------------------------------------------------------- timer


def timer_tick(past_due: bool = False) -> dict[str, Any]:
    from shared.domain.targets import ConfigError
    from shared.reporting import telemetry

    try:
        with telemetry.span("detection.cycle", **{"healer.past_due": past_due}):
            report = composition().detector.run_cycle()
    except ConfigError as exc:
        log.error("detection skipped: configuration error: %s", exc)
        return {"error": str(exc)}
    if telemetry.enabled():  # what is escalated right now, for the workbook (one state read per cycle)
        from shared.reporting.observers import record_escalated

        record_escalated(composition().healer.services)
    result: dict[str, Any] = report.to_dict()
    result["past_due"] = past_due
    return result


# ---------------------------------------------------------------------- queue


def queue_message(body: bytes | str, dequeue_count: int = 1) -> str:
    """Handle one remediation message. Malformed ones are dead-lettered with a reason, never acted
    on; other failures raise, so the host retries and finally moves the message to the poison queue."""
    from shared.domain.messages import MalformedMessage, parse_message
    from shared.reporting import telemetry
    from shared.runs import UnknownTarget

    ctx = composition()
    now = ctx.healer.services.clock()
    try:
        msg = parse_message(body)
        # One span per remediation step, carrying the run's correlation id.
        with telemetry.span(
            f"remediation.{msg.step}",
            **{
                "healer.correlation_id": msg.correlation_id,
                "healer.run_id": msg.run_id,
                "healer.target": msg.target,
                "healer.step": msg.step,
                "healer.trigger": msg.trigger,
                "messaging.message.delivery_count": dequeue_count,
            },
        ) as current:
            try:
                outcome = ctx.healer.handle(msg)
            except Exception as exc:
                from shared.runs.poison import escalate_poisoned, last_delivery

                if last_delivery(dequeue_count):  # the host moves it to the poison queue next
                    try:
                        escalate_poisoned(ctx.healer.services, msg, exc)
                    except Exception:
                        log.exception("could not escalate the poisoned run %s", msg.run_id)
                raise
            if current is not None:
                current.set_attribute("healer.outcome", str(outcome.status))
    except (MalformedMessage, UnknownTarget) as exc:
        log.warning("dead-lettered a queue message: %s", exc)
        ctx.healer.services.queue.dead_letter(body, str(exc), now)
        return "dead-lettered"
    log.info("target %s run %s step %s: %s (try %d)", msg.target, msg.run_id, msg.step, outcome.status, dequeue_count)
    return str(outcome.status)


# ---------------------------------------------------------------------- HTTP


def _targets_known(ctx: Composition) -> dict[str, Target]:
    from shared.reporting.status import known_targets

    return known_targets(ctx.healer.services)


def _heal(params: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> ApiResponse:
    from shared.detection.dispatch import request_remediation
    from shared.http.models import HealRequest, parse_body

    request = parse_body(HealRequest, body, headers)
    key, dry_run, backfill = request.target, request.dry_run, request.backfill
    ctx = composition()
    target = _targets_known(ctx).get(key)
    if target is None:
        raise ApiError(404, "UnknownTarget", f"target={key!r} is not configured or discovered", "target")
    settings = ctx.healer.services.settings
    if backfill is not None:
        return _backfill(ctx, key, backfill, dry_run)
    if dry_run:
        _, plan = ctx.healer.plan(target, f"dry-run-{uuid.uuid4().hex[:8]}")
        return ApiResponse(
            200,
            {"target": key, "dry_run": True, "mode": settings.mode, "plan": plan.to_dict(), "steps": plan.describe()},
        )
    queued = request_remediation(ctx.healer.services, target, "http", reason="manual heal", manual=True)
    if not queued.queued:
        return ApiResponse(409, {"target": key, "queued": False, "reason": queued.reason})
    return ApiResponse(202, {"target": key, "queued": True, "run_id": queued.run_id, "mode": settings.mode})


def _backfill(ctx: Composition, key: str, backfill: object, dry_run: bool) -> ApiResponse:
    """`backfill: true` (the last measured gap) or `{"from", "to"}`: a backfill-only run, queued."""
    from shared.runs.backfill import BadWindow, backfill_mode, request_backfill, resolve_window

    services = ctx.healer.services
    window = backfill if isinstance(backfill, dict) else {}
    extra = sorted(set(window) - {"from", "to"})
    if extra:
        raise ApiError(400, "InvalidBody", f"backfill: unknown field(s): {', '.join(extra)}", f"backfill.{extra[0]}")
    try:
        start, end = resolve_window(window.get("from"), window.get("to"), services.store.load(key), services.clock())
    except BadWindow as exc:
        raise ApiError(400, "InvalidBody", str(exc), "backfill") from exc
    mode = "plan" if dry_run else backfill_mode(services.settings)
    queued, run_id, reason = request_backfill(services, key, start, end, mode, "http")
    if not queued:
        return ApiResponse(409, {"target": key, "queued": False, "reason": reason})
    body = {"target": key, "queued": True, "run_id": run_id, "mode": services.settings.mode, "backfill": mode}
    body["window"] = {"from": start.isoformat(), "to": end.isoformat()}
    return ApiResponse(202, body)


def _targets(params: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> ApiResponse:
    from shared.reporting.status import target_rows

    ctx = composition()
    rows = target_rows(ctx.healer.services, ctx.healer.services.clock())
    return ApiResponse(200, {"mode": ctx.healer.services.settings.mode, "targets": rows})


def _alerts(params: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> ApiResponse:
    from shared.adapters.storage import alert_recorded, record_alert
    from shared.detection.dispatch import request_remediation
    from shared.domain.alerts import AlertError, alert_evidence, match_targets, parse_alert
    from shared.http.webhook_auth import check_action_group_token

    # Anonymous to the host: the action group's Entra token is the only credential accepted here.
    check_action_group_token(headers, composition().healer.services.settings)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    try:
        alert = parse_alert(body, content_type)
    except AlertError as exc:
        return error(exc.status, "InvalidAlert", str(exc), exc.field)
    ctx = composition()
    services = ctx.healer.services
    matched = match_targets(alert, list(_targets_known(ctx).values()))
    answer: dict[str, Any] = {
        "alert_id": alert.alert_id,
        "condition": alert.condition,
        "targets": [t.key for t in matched],
        "queued": [],
        "skipped": {},
    }
    if alert_recorded(services.store, alert.key):
        answer["duplicate"] = True
        return ApiResponse(202, answer)
    if alert.condition == "Resolved":
        answer["note"] = "recorded; a resolved alert starts nothing"
    elif not matched:
        answer["note"] = "no configured or discovered target matches the alert's dimensions or resource"
    evidence = [alert_evidence(alert)]
    for target in matched if alert.condition == "Fired" else []:
        request = request_remediation(services, target, "alert", reason=f"alert {alert.rule}"[:500], evidence=evidence)
        if request.queued:
            answer["queued"].append(target.key)
        else:
            answer["skipped"][target.key] = request.reason
    # Recorded only now: had queueing failed (a 503), the action group's retry must not be a "duplicate".
    record_alert(
        services.store,
        alert.key,
        {"AlertId": alert.alert_id, "Condition": alert.condition, "Rule": alert.rule, "Targets": answer["targets"]},
        services.clock(),
    )
    return ApiResponse(202, answer)


def _health(params: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> ApiResponse:
    from shared.domain.targets import ConfigError

    try:
        ctx = composition()
    except ConfigError as exc:
        return error(503, "ConfigurationError", str(exc))
    if params.get("deep", "").lower() in ("true", "1"):
        return _deep_health(ctx)
    from shared.runs.sweep import overdue_readds

    settings = ctx.healer.services.settings
    overdue = overdue_readds(ctx.healer.services)
    try:
        poisoned: int | None = ctx.healer.services.queue.poisoned()
    except Exception as exc:  # the count is a report, never a reason to fail the probe
        log.warning("poison queue unreadable: %s", exc)
        poisoned = None
    from shared.detection.detector import last_cycle

    cycle = last_cycle()
    failed_apps = dict(cycle.failed_apps) if cycle is not None else {}
    return ApiResponse(
        200,
        {
            "status": "degraded" if overdue or poisoned or failed_apps else "ok",
            # Messages that failed every delivery (their runs were escalated once each).
            "poisoned_messages": poisoned,
            # Apps the last detection cycle could not look at, with why (the others were looked at).
            "failed_apps": failed_apps,
            "mode": settings.mode,
            "targets": len(settings.target_list),
            "apps": len(settings.app_list),
            # Dropped principals past their re-add time plus the grace: the sweep is retrying them.
            "overdue_readds": len(overdue),
            "overdue_targets": overdue[:50],
        },
    )


def _deep_health(ctx: Composition) -> ApiResponse:
    """`?deep=true`: the doctor (shared/doctor/) run by the deployed app, as its own identity."""
    from shared.doctor.preflight import run_doctor

    report = run_doctor(ctx.healer.services.settings, ctx.healer.services.credential)
    return ApiResponse(200, {"status": "ok" if report.ok else "not-ready", **report.to_dict()})


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "heal"): _heal,
    ("GET", "targets"): _targets,
    ("POST", "alerts"): _alerts,
    ("GET", "health"): _health,
}


def http(method: str, route: str, params: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> ApiResponse:
    from shared.domain.targets import ConfigError

    try:
        return dispatch(ROUTES, method, route, params, headers, body)
    except ConfigError as exc:
        return error(503, "ConfigurationError", str(exc))
