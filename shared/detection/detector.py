"""One detection cycle: find failing exports, merge the evidence into one finding per target, and
ask for at most N remediations. Runs from the timer (and the CLI)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.iotcentral_model import IotcError, service_principal_of
from shared.adapters.loganalytics import FailureGroup, LogAnalyticsAdapter
from shared.adapters.loganalytics_errors import LogAnalyticsError
from shared.detection.dispatch import request_remediation
from shared.domain.diagnosis import Evidence
from shared.domain.state import TargetState
from shared.domain.targets import AppConfig, PrincipalConfig, Target
from shared.runs import Healer
from shared.runs.sweep import sweep

log = logging.getLogger(__name__)
HEALTHY_OR_YOUNG = {"healthy", "starting", "notstarted", "waiting"}


@dataclass
class Finding:
    """Evidence that one target is failing, merged from every signal of this cycle."""

    target: str
    evidence: list[Evidence] = field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    count: int = 0

    @property
    def permission(self) -> bool:
        return any(e.permission for e in self.evidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "permission": self.permission,
            "signals": sorted({e.source for e in self.evidence}),
            "evidence": [f"{e.source}: {e.code}: {e.message}" for e in self.evidence],
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
            "count": self.count,
        }


@dataclass
class CycleReport:
    targets: int = 0
    findings: list[Finding] = field(default_factory=list)
    enqueued: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    swept: list[str] = field(default_factory=list)
    sweep_deferred: list[str] = field(default_factory=list)  # the sweep's budget ran out before these
    pruned: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # discovered destinations not allowed
    errors: list[str] = field(default_factory=list)
    # Apps this cycle could not look at (unexpected answers, timeouts, bugs), with why: each
    # failure is contained to its app, the others are looked at as usual.
    failed_apps: dict[str, str] = field(default_factory=dict)
    # Log evidence older than the target's last verified healing: it starts nothing.
    stale_evidence: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "findings": [f.to_dict() for f in self.findings],
            "enqueued": self.enqueued,
            "skipped": self.skipped,
            "swept": self.swept,
            "sweep_deferred": self.sweep_deferred,
            "pruned": self.pruned,
            "refused": self.refused,
            "errors": self.errors,
            "failed_apps": self.failed_apps,
            "stale_evidence": self.stale_evidence,
            "seconds": round(self.seconds, 3),
        }


def evidence_from_status(export: dict[str, Any] | None, dest: dict[str, Any] | None) -> list[Evidence]:
    """IoT Central's `status` is a free string: `errors[]` drives the classification. A target is
    judged by its destination; the export's own status and errors count only when the export has
    no other destination (it reports the worst of them), and statuses compare case-insensitively."""
    found: list[Evidence] = []
    refs = (export or {}).get("destinations") or []
    shared_export = dest is not None and any(isinstance(r, dict) and r.get("id") != dest.get("id") for r in refs)
    for body in (dest, None if shared_export else export):
        if not body:
            continue
        for error in body.get("errors") or []:
            item = Evidence("iotcentral", str(error.get("code", "")), str(error.get("message", "")))
            if item not in found:
                found.append(item)
        status = str(body.get("status", ""))
        if status and status.lower() not in HEALTHY_OR_YOUNG and not body.get("errors"):
            found.append(Evidence("iotcentral", "status", f"{body.get('id')} reports status '{status}'"))
    return found


def _discover(
    app: AppConfig,
    exports: list[dict[str, Any]],
    dests: dict[str, dict[str, Any]],
    principal: PrincipalConfig | None,
    refused: dict[str, str],
) -> list[Target]:
    """Targets from the app's ADX destinations that point where HEALER_APPS allows; the others
    land in `refused` with the reason (reported, never touched)."""
    found: list[Target] = []
    for export in exports:
        for ref in export.get("destinations") or []:
            dest = dests.get(str(ref.get("id")))
            if not dest or dest.get("type") != "dataexplorer@v1":
                continue
            key = f"{app.app}:{export.get('id')}:{dest.get('id')}"
            why = app.allows(str(dest.get("clusterUrl", "")), str(dest.get("database", "")))
            if why:
                refused[key] = why
                log.warning("not acting on discovered destination %s: %s", key, why)
                continue
            # A destination that authorizes as a service principal writes as that app, not as
            # IoT Central's managed identity: that app is the principal ADX must know.
            writer = service_principal_of(dest)
            who = PrincipalConfig(tenant_id=writer.tenant_id, client_id=writer.client_id) if writer else principal
            if who is None:
                continue
            try:
                found.append(
                    Target(
                        app=app.app,
                        export_id=str(export["id"]),
                        destination_id=str(dest["id"]),
                        cluster_url=str(dest["clusterUrl"]),
                        database=str(dest["database"]),
                        table=str(dest["table"]),
                        principal=who,
                        role=app.role,
                        iotc_resource_id=app.iotc_resource_id,
                        cluster_resource_id=app.resource_id_of(str(dest["clusterUrl"])),
                    )
                )
            except ValueError as exc:  # a destination the healer cannot safely act on
                refused[key] = str(exc).splitlines()[0][:300]
                log.warning("not acting on discovered destination %s: %s", key, exc)
    return found


class Detector:
    def __init__(self, healer: Healer, logs: LogAnalyticsAdapter | None) -> None:
        self.healer = healer
        self.logs = logs

    def _scan_app(
        self, app: str, targets: list[Target], config: AppConfig | None, refused: dict[str, str]
    ) -> tuple[list[Target], dict[str, list[Evidence]], str | None]:
        """List exports and destinations of one app (two paged calls), discover and read status."""
        iotc = self.healer.services.iotc
        try:
            exports = iotc.exports(app)
            dests = {str(d["id"]): d for d in iotc.destinations(app)}
        except IotcError as exc:
            return [], {}, f"{app}: IoT Central unavailable: {exc}"
        discovered: list[Target] = []
        if config is not None:
            principal = config.principal
            if principal is None and config.iotc_resource_id:
                try:
                    now = iotc.current_identity(config.iotc_resource_id)
                    principal = PrincipalConfig(tenant_id=now.tenant_id, object_id=now.object_id) if now else None
                except IotcError as exc:
                    return [], {}, f"{app}: identity unavailable from ARM: {exc}"
            discovered = _discover(config, exports, dests, principal, refused)
        by_id = {str(e["id"]): e for e in exports}
        evidence = {}
        for target in {t.key: t for t in discovered + targets}.values():
            found = evidence_from_status(by_id.get(target.export_id), dests.get(target.destination_id))
            if found:
                evidence[target.key] = found
        return discovered, evidence, None

    def run_cycle(self) -> CycleReport:
        started = time.monotonic()
        services = self.healer.services
        settings = services.settings
        report = CycleReport()
        configured = list(services.targets.values())
        apps: dict[str, AppConfig | None] = {t.app: None for t in configured}
        for config in settings.app_list:
            apps[config.app] = config

        # One read of the state table serves the sweep, discovery and the skip checks; the enqueue
        # itself re-checks under an ETag, so a lease taken meanwhile is still honoured.
        state_list = services.store.all_states()
        states = {s.key: s for s in state_list}
        # The sweep comes first: nothing later in the cycle may keep a dropped principal dropped.
        swept = sweep(self.healer, state_list)
        report.swept, report.errors, report.sweep_deferred = swept.done, list(swept.errors), swept.deferred
        try:
            keep = timedelta(days=settings.retention_days)
            report.pruned = services.store.prune(services.clock(), keep)
        except Exception as exc:  # retention never stops detection
            log.exception("retention failed")
            report.errors.append(f"retention: {type(exc).__name__}: {exc}"[:500])
        configured = [t.at_destination(states[t.key].destination_id) if t.key in states else t for t in configured]
        by_app: dict[str, list[Target]] = {}
        for t in configured:
            by_app.setdefault(t.app, []).append(t)
        # Destinations the healer re-created stay known under their first key, not as new targets.
        replaced = {(k.split(":")[0], s.destination_id) for k, s in states.items() if s.destination_id}
        findings: dict[str, Finding] = {}
        all_targets: dict[str, Target] = {t.key: t for t in configured}

        def scan(app: str) -> tuple[list[Target], dict[str, list[Evidence]], str | None]:
            try:
                return self._scan_app(app, by_app.get(app, []), apps[app], report.refused)
            except Exception as exc:  # an unexpected answer or a bug: contained to this app
                log.exception("detection of app %s failed", app)
                reason = f"{type(exc).__name__}: {exc}"[:300]
                report.failed_apps[app] = reason
                return [], {}, f"{app}: {reason}"

        with ThreadPoolExecutor(max_workers=settings.scan_concurrency) as pool:
            scans = pool.map(scan, list(apps))
            for discovered, evidence, error in scans:
                if error:
                    report.errors.append(error)
                for target in discovered:
                    if (target.app, target.destination_id) in replaced:
                        continue
                    if target.key not in all_targets:
                        all_targets[target.key] = target
                        try:
                            self._remember(target, states.get(target.key))
                        except Exception as exc:  # remembering is for the queue side; detection goes on
                            log.exception("could not remember discovered target %s", target.key)
                            report.errors.append(f"{target.key}: {type(exc).__name__}: {exc}"[:500])
                for key, items in evidence.items():
                    if key not in all_targets:  # a re-created destination's new id: known by its first key
                        continue
                    findings.setdefault(key, Finding(key)).evidence.extend(items)
                    findings[key].count += len(items)
        report.targets = len(all_targets)
        self._merge_logs(all_targets, findings, report, states)

        now = services.clock()
        ordered = sorted(findings.values(), key=lambda f: (not f.permission, -f.count, f.target))
        report.findings = ordered
        budget = settings.max_remediations_per_cycle
        for finding in ordered:
            state = states.get(finding.target)
            if state is not None and (reason := state.why_busy(now)):
                report.skipped[finding.target] = reason
                continue
            if len(report.enqueued) >= budget:
                report.skipped[finding.target] = f"cap of {budget} remediations per cycle reached"
                continue
            summary = "; ".join(f"{e.source}: {e.code}" for e in finding.evidence)[:400]
            try:
                request = request_remediation(
                    services, all_targets[finding.target], "timer", reason=summary, evidence=finding.evidence
                )
            except Exception as exc:  # contained to this target: the others are still asked for
                log.exception("could not request a remediation of %s", finding.target)
                report.errors.append(f"{finding.target}: {type(exc).__name__}: {exc}"[:500])
                continue
            if request.queued:
                report.enqueued.append(finding.target)
            else:
                report.skipped[finding.target] = request.reason
        report.seconds = time.monotonic() - started
        _LAST[0] = report
        log.info(
            "detection cycle: %d targets, %d findings, %d enqueued, %d skipped in %.2fs",
            report.targets,
            len(report.findings),
            len(report.enqueued),
            len(report.skipped),
            report.seconds,
        )
        return report

    def _remember(self, target: Target, state: TargetState | None) -> None:
        data = target.model_dump()

        def keep(current: TargetState) -> None:
            current.discovered = data

        if state is None or state.discovered != data:
            self.healer.services.store.update(target.key, keep)

    def _merge_logs(
        self,
        targets: dict[str, Target],
        findings: dict[str, Finding],
        report: CycleReport,
        states: dict[str, TargetState] | None = None,
    ) -> None:
        workspace = self.healer.services.settings.log_analytics_workspace_id
        if self.logs is None or not workspace:
            return
        try:
            groups = self.logs.failed_ingestion(workspace, self.healer.services.settings.lookback_minutes)
        except LogAnalyticsError as exc:
            report.errors.append(str(exc))
            return
        for group in groups:
            for target in targets.values():
                if not _same_table(target, group):
                    continue
                state = (states or {}).get(target.key)
                healed = state.healed_at if state is not None else None
                if healed is not None and (group.last_seen is None or group.last_seen <= healed):
                    # The outage's rows keep arriving within the lookback: a healed target is
                    # not remediated again on evidence older than its last verified healing.
                    report.stale_evidence[target.key] = f"{group.error_code} last seen before the healing at {healed}"
                    continue
                finding = findings.setdefault(target.key, Finding(target.key))
                finding.evidence.append(Evidence("loganalytics", group.error_code, group.message))
                finding.count += group.failures
                finding.first_seen = min(filter(None, [finding.first_seen, group.first_seen]), default=None)
                finding.last_seen = max(filter(None, [finding.last_seen, group.last_seen]), default=None)


_LAST: list[CycleReport | None] = [None]


def last_cycle() -> CycleReport | None:
    """This instance's last detection cycle (for /api/health)."""
    return _LAST[0]


def _same_table(target: Target, group: FailureGroup) -> bool:
    """Same cluster, database and table. The cluster is the row's `_ResourceId` (two clusters may
    share a workspace and hold tables of the same names); a row naming no cluster matches nothing."""
    if (target.database, target.table) != (group.database, group.table):
        return False
    return target.on_cluster(group.resource_id)
