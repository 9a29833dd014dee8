"""The doctor's run: every check, each guarded so one that fails unforeseen is a line that cannot
tell, never a crash of the whole report; with retries and timeouts short enough for a preflight."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from shared.doctor.adx import AdxChecks
from shared.doctor.findings import APP_SETTINGS_FIX, DoctorReport, Findings, Whoami, said, whoami
from shared.doctor.iotc import IotcChecks
from shared.doctor.log_analytics import check_log_analytics
from shared.doctor.storage import check_storage
from shared.doctor.webhooks import check_alert_webhook, check_notify_webhook

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.config.settings import Settings
    from shared.domain.targets import AppConfig, Target
    from shared.runs import Services

log = logging.getLogger(__name__)
# A preflight answers in seconds: transient failures are retried briefly, then "cannot tell".
DOCTOR_RETRY_BUDGET_S = 5.0
DOCTOR_TIMEOUT_S = 15.0


class Doctor:
    def __init__(self, services: Services, me: Whoami | None) -> None:
        self.services = services
        self.out = Findings(services.settings.mode, me)
        self.report = self.out.report
        self.adx = AdxChecks(self.out, services)
        self.iotc = IotcChecks(self.out, services)

    def run(self) -> DoctorReport:
        from shared.reporting.status import known_targets

        settings = self.services.settings
        self._settings_line(settings)
        states_ok = self._safely("storage", partial(check_storage, self.out, self.services))
        targets = dict(self.services.targets)
        if states_ok:
            self._safely("storage", lambda: targets.update(known_targets(self.services)))
        for target in targets.values():
            self._safely(f"target {target.key}", partial(self._target, target))
        for app in settings.app_list:
            self._safely(f"app {app.app}", partial(self._app, app))
        self._safely("log analytics", lambda: check_log_analytics(self.out, settings, self.services.logs))
        self._safely("alert webhook", lambda: check_alert_webhook(self.out, settings, DOCTOR_TIMEOUT_S))
        check_notify_webhook(self.out, settings)
        return self.report

    def _safely(self, scope: str, check: Callable[[], Any]) -> Any:
        """A check that fails in a way no branch foresaw is a line that cannot tell, never a crash
        of the whole report."""
        try:
            return check()
        except Exception as exc:
            log.exception("doctor: a check of %s failed", scope)
            self.out.add(scope, "check", "cannot-tell", f"the check itself failed: {type(exc).__name__}: {said(exc)}")
            return None

    def _settings_line(self, settings: Settings) -> None:
        count = len(settings.target_list) + len(settings.app_list)
        self.out.add(
            "settings",
            "mode",
            "pass" if count else "fail",
            f"HEALER_MODE={settings.mode}, remedies {', '.join(settings.remedies)}, "
            f"{len(settings.target_list)} target(s), {len(settings.app_list)} app(s)"
            + (" (observe: the healer plans and changes nothing)" if settings.observe_only else ""),
            f"{APP_SETTINGS_FIX} HEALER_TARGETS='[...]'  (or HEALER_APPS; see the README's Configuration)",
        )

    def _target(self, target: Target) -> None:
        scope = f"target {target.key}"
        self.adx.database(scope, target.cluster_url, target.database, target.table, f"'database' of {target.key}")
        self.iotc.export_and_destination(scope, target)
        if target.iotc_resource_id:
            self.iotc.arm_identity(scope, target.iotc_resource_id)

    def _app(self, app: AppConfig) -> None:
        access, _, destinations = self.iotc.app_access(app.app)
        if access.status == "pass":
            self.adx.app_destinations(app, destinations)
        if app.iotc_resource_id:
            self.iotc.arm_identity(f"app {app.app}", app.iotc_resource_id)


def doctor_settings(settings: Settings) -> Settings:
    """The same settings, with retries and timeouts short enough for a preflight."""
    return settings.model_copy(
        update={
            "kusto_retry_budget_seconds": min(settings.kusto_retry_budget_seconds, DOCTOR_RETRY_BUDGET_S),
            "http_retry_budget_seconds": min(settings.http_retry_budget_seconds, DOCTOR_RETRY_BUDGET_S),
            "http_timeout_seconds": min(settings.http_timeout_seconds, DOCTOR_TIMEOUT_S),
            "kusto_server_timeout_seconds": min(settings.kusto_server_timeout_seconds, int(DOCTOR_TIMEOUT_S)),
        }
    )


def run_doctor(
    settings: Settings,
    credential: TokenCredential | None = None,
    build: Callable[[Settings, Any], Services] | None = None,
) -> DoctorReport:
    """Every check, for the settings given. Builds its own clients (short retry budgets)."""
    from shared.config.credentials import build_credential
    from shared.services import build_services

    credential = credential or build_credential(settings.identity_client_id)
    services = (build or build_services)(doctor_settings(settings), credential)
    return Doctor(services, whoami(credential)).run()
