"""The doctor: a read-only preflight of everything the healer needs before its first incident.

For every known target and app it reads (never changes) the services the healer will act on, with
the same settings and adapters the Function App uses, and says per line: pass, fail or cannot tell
(a transport fault, or a check that depends on one that did not pass), why, and the exact command
that fixes it. Only reads are sent: Kusto `.show` commands and queries, GET requests, a Log
Analytics query; no notification is posted and no storage entity, table or queue is written.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from shared.kusto import AdxError
from shared.kusto_names import quote_entity

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.runs import Services
    from shared.settings import Settings
    from shared.targets import AppConfig, Target

log = logging.getLogger(__name__)
Status = Literal["pass", "fail", "cannot-tell", "not-applicable"]
# A preflight answers in seconds: transient failures are retried briefly, then "cannot tell".
DOCTOR_RETRY_BUDGET_S = 5.0
DOCTOR_TIMEOUT_S = 15.0
LOG_LOOKBACK_DAYS = 7
ARM_SCOPE = "https://management.azure.com/.default"
APP_SETTINGS_FIX = "az functionapp config appsettings set --name <function-app> --resource-group <rg> --settings"


@dataclass(frozen=True)
class Check:
    scope: str  # what was checked: "target contoso:export-1:adx-1", "app contoso", "storage", ...
    name: str  # the check: adx-database, adx-role, table, iotc-exports, ...
    status: Status
    why: str
    fix: str = ""  # the exact command (KQL, az, or a portal step); empty when nothing needs fixing
    required: bool = True  # a failure here means a configured remedy cannot work

    @property
    def blocking(self) -> bool:
        return self.required and self.status in ("fail", "cannot-tell")


@dataclass
class DoctorReport:
    mode: str
    identity: str  # the healer's principal as ADX names it, or "" when its token could not be read
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.blocking for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "mode": self.mode,
            "identity": self.identity,
            "checks": [asdict(c) for c in self.checks],
            "counts": {s: sum(1 for c in self.checks if c.status == s) for s in _STATUSES},
        }


_STATUSES: tuple[Status, ...] = ("pass", "fail", "cannot-tell", "not-applicable")


@dataclass(frozen=True)
class Whoami:
    object_id: str
    tenant_id: str
    user: bool  # a person's `az login`, not an application or managed identity
    client_id: str = ""  # an application's (managed identity's) application id

    @property
    def fqn(self) -> str:
        """As ADX names it: an application by its application id, a person by object id."""
        if self.user or not self.client_id:
            return f"{'aaduser' if self.user else 'aadapp'}={self.object_id};{self.tenant_id}"
        return f"aadapp={self.client_id};{self.tenant_id}"


def whoami(credential: TokenCredential) -> Whoami | None:
    """Who the credential is, read from its own ARM token's claims (never logged, never verified:
    the token is ours and only its object and tenant ids are kept). None when no token comes."""
    try:
        token = credential.get_token(ARM_SCOPE).token
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except Exception as exc:  # no token, or not a JWT: the fixes then name placeholders
        log.info("the credential's identity could not be read: %s", type(exc).__name__)
        return None
    oid, tid = str(claims.get("oid") or ""), str(claims.get("tid") or "")
    if not (oid and tid):
        return None
    user = claims.get("idtyp") == "user" or "upn" in claims or ("scp" in claims and "roles" not in claims)
    return Whoami(oid, tid, user, str(claims.get("appid") or claims.get("azp") or ""))


# ---------------------------------------------------------------------- failures, classified


def _transient(exc: Exception) -> bool:
    """Could a retry later answer differently (network, throttling, 5xx)? Then: cannot tell."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    from shared.iotcentral import IotcError
    from shared.loganalytics_errors import LogAnalyticsError

    if isinstance(exc, AdxError):
        return exc.transient
    if isinstance(exc, IotcError | LogAnalyticsError):
        return exc.status is None or exc.status == 429 or exc.status >= 500
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    status = getattr(exc, "status_code", None)
    return not isinstance(status, int) or status == 429 or status >= 500


def _status_of(exc: Exception) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _said(exc: Exception) -> str:
    return str(exc).splitlines()[0][:240] if str(exc) else type(exc).__name__


# ---------------------------------------------------------------------- the doctor


class Doctor:
    def __init__(self, services: Services, me: Whoami | None) -> None:
        self.s = services
        self.me = me
        self.report = DoctorReport(services.settings.mode, me.fqn if me else "")
        self._iotc_apps: dict[str, tuple[Check, dict[str, Any], dict[str, Any]]] = {}
        self._arm: set[str] = set()
        self._adx_done: set[tuple[str, str, str]] = set()

    def add(self, scope: str, name: str, status: Status, why: str, fix: str = "", required: bool = True) -> Check:
        check = Check(scope, name, status, why, fix if status != "pass" else "", required)
        self.report.checks.append(check)
        return check

    def cannot_tell(self, scope: str, name: str, exc: Exception, fix: str = "run the doctor again") -> Check:
        return self.add(scope, name, "cannot-tell", f"no answer: {_said(exc)}", fix)

    @property
    def oid(self) -> str:
        return self.me.object_id if self.me else "<healer-object-id>"

    @property
    def fqn(self) -> str:
        return self.me.fqn if self.me else "aadapp=<healer-object-id>;<tenant-id>"

    # ------------------------------------------------------------------ the run

    def run(self) -> DoctorReport:
        from shared.status import known_targets

        settings = self.s.settings
        self._settings_line(settings)
        states_ok = self._safely("storage", self._storage)
        targets = dict(self.s.targets)
        if states_ok:
            self._safely("storage", lambda: targets.update(known_targets(self.s)))
        for target in targets.values():
            self._safely(f"target {target.key}", partial(self._target, target))
        for app in settings.app_list:
            self._safely(f"app {app.app}", partial(self._app, app))
        self._safely("log analytics", lambda: self._log_analytics(settings))
        self._safely("alert webhook", lambda: self._alert_webhook(settings))
        self._notify_webhook(settings)
        return self.report

    def _safely(self, scope: str, check: Callable[[], Any]) -> Any:
        """A check that fails in a way no branch foresaw is a line that cannot tell, never a crash
        of the whole report."""
        try:
            return check()
        except Exception as exc:
            log.exception("doctor: a check of %s failed", scope)
            self.add(scope, "check", "cannot-tell", f"the check itself failed: {type(exc).__name__}: {_said(exc)}")
            return None

    def _app(self, app: AppConfig) -> None:
        access, _, destinations = self._app_access(app.app)
        if access.status == "pass":
            self._app_destinations(app, destinations)
        if app.iotc_resource_id:
            self._arm_identity(f"app {app.app}", app.iotc_resource_id)

    def _settings_line(self, settings: Settings) -> None:
        count = len(settings.target_list) + len(settings.app_list)
        self.add(
            "settings",
            "mode",
            "pass" if count else "fail",
            f"HEALER_MODE={settings.mode}, remedies {', '.join(settings.remedies)}, "
            f"{len(settings.target_list)} target(s), {len(settings.app_list)} app(s)"
            + (" (observe: the healer plans and changes nothing)" if settings.observe_only else ""),
            f"{APP_SETTINGS_FIX} HEALER_TARGETS='[...]'  (or HEALER_APPS; see the README's Configuration)",
        )

    # ------------------------------------------------------------------ ADX

    def _target(self, target: Target) -> None:
        scope = f"target {target.key}"
        self._adx(scope, target.cluster_url, target.database, target.table, f"'database' of {target.key}")
        self._export_and_destination(scope, target)
        if target.iotc_resource_id:
            self._arm_identity(scope, target.iotc_resource_id)

    def _app_destinations(self, app: AppConfig, destinations: dict[str, Any]) -> None:
        """HEALER_APPS: the app's ADX destinations that point where it allows, checked in ADX now
        (detection would discover them as targets; before its first cycle none is known)."""
        for dest_id, dest in sorted(destinations.items()):
            if dest.get("type") != "dataexplorer@v1":
                continue
            cluster, db, table = (str(dest.get(k) or "") for k in ("clusterUrl", "database", "table"))
            if app.allows(cluster, db) or not (cluster and db and table):
                continue  # detection reports those and never touches them
            self._adx(f"app {app.app} destination {dest_id}", cluster, db, table, f"destination {dest_id}'s database")

    def _adx(self, scope: str, cluster_url: str, db: str, table: str, setting: str) -> None:
        """The database reachable, the healer's Database Admin role on it, the table present."""
        if (cluster_url.rstrip("/").lower(), db, table) in self._adx_done:
            return
        self._adx_done.add((cluster_url.rstrip("/").lower(), db, table))
        kusto = self.s.kusto(cluster_url)
        admin_fix = f".add database {quote_entity('database', db)} admins ('{self.fqn}') 'iotc-adx-healer'"
        reachable = False
        try:
            roles = kusto.own_roles(db)
            reachable = True
        except Exception as exc:
            if _transient(exc):
                self.cannot_tell(scope, "adx-role", exc)
            elif isinstance(exc, AdxError) and exc.not_found:
                self.add(
                    scope,
                    "adx-role",
                    "fail",
                    f"{cluster_url} has no database {db!r} (names are case-sensitive)",
                    f"correct {setting} (HEALER_TARGETS or IoT Central), or create it: "
                    f"az kusto database create --cluster-name <cluster> --resource-group <rg> --database-name {db} "
                    "--read-write-database location=<region>",
                )
            else:
                self.add(
                    scope,
                    "adx-role",
                    "fail",
                    f"ADX refused to say the healer's roles on {db} ({_said(exc)}): it holds no role there",
                    f"as a Database Admin of {db}: {admin_fix}",
                )
        else:
            if roles & {"admins", "AllDatabasesAdmin"}:
                self.add(scope, "adx-role", "pass", f"the healer is Database Admin of {db} on {cluster_url}")
            else:
                held = ", ".join(sorted(roles)) or "no role it can name"
                self.add(
                    scope,
                    "adx-role",
                    "fail",
                    f"the healer holds {held} on {db}: adding and dropping principals needs Database Admin",
                    f"as a Database Admin of {db}: {admin_fix}",
                )
        if not reachable:
            self.add(scope, "adx-table", "cannot-tell", f"not checked: {db} could not be read")
        else:
            try:
                tables = kusto.tables(db)
            except Exception as exc:
                self.cannot_tell(scope, "adx-table", exc)
            else:
                if table in tables:
                    self.add(scope, "adx-table", "pass", f"table {db}.{table} exists")
                else:
                    near = next((t for t in tables if t.lower() == table.lower()), None)
                    self.add(
                        scope,
                        "adx-table",
                        "fail",
                        f"no table {table!r} in {db}" + (f" (but {near!r}: names are case-sensitive)" if near else ""),
                        f"correct the table name to {near!r} (HEALER_TARGETS or the IoT Central destination)"
                        if near
                        else f".create table {quote_entity('table', table)} (<the columns your export writes>) "
                        f"in {db}, or correct the table name (HEALER_TARGETS or the IoT Central destination)",
                    )

    # ------------------------------------------------------------------ IoT Central

    def _iotc_fix(self, app: str) -> str:
        tenant = self.me.tenant_id if self.me else "<tenant-id>"
        return f"python -m shared iotc-access --app {app} --object-id {self.oid} --tenant-id {tenant} --yes"

    def _app_access(self, app: str) -> tuple[Check, dict[str, Any], dict[str, Any]]:
        """One read of an app's exports and destinations, shared by its targets."""
        if app in self._iotc_apps:
            return self._iotc_apps[app]
        scope = f"app {app}"
        exports: dict[str, Any] = {}
        destinations: dict[str, Any] = {}
        try:
            exports = {str(e.get("id")): e for e in self.s.iotc.exports(app)}
            destinations = {str(d.get("id")): d for d in self.s.iotc.destinations(app)}
        except Exception as exc:
            status = _status_of(exc)
            if _transient(exc):
                check = self.cannot_tell(scope, "iotc-access", exc)
            elif status == 404:
                check = self.add(
                    scope,
                    "iotc-access",
                    "fail",
                    f"IoT Central answered 404 for app {app!r}: no such application ({_said(exc)})",
                    "correct 'app' (the application's subdomain, as in https://<subdomain>.azureiotcentral.com) "
                    "in HEALER_TARGETS or HEALER_APPS",
                )
            else:
                check = self.add(
                    scope,
                    "iotc-access",
                    "fail",
                    f"IoT Central refused to list {app}'s data exports ({_said(exc)}): the healer is not an "
                    "app user whose role manages data export",
                    self._iotc_fix(app),
                )
        else:
            check = self.add(
                scope,
                "iotc-access",
                "pass",
                f"the healer reads {app}'s {len(exports)} export(s) and {len(destinations)} destination(s) "
                "(that its role may also change them is not tested: the doctor changes nothing)",
            )
        self._iotc_apps[app] = (check, exports, destinations)
        return self._iotc_apps[app]

    def _export_and_destination(self, scope: str, target: Target) -> None:
        access, exports, destinations = self._app_access(target.app)
        if access.status != "pass":
            self.add(scope, "iotc-export", "cannot-tell", f"not checked: app {target.app} could not be read")
            return
        export = exports.get(target.export_id)
        if export is None:
            self.add(
                scope,
                "iotc-export",
                "fail",
                f"app {target.app} has no export {target.export_id!r} (it has {', '.join(sorted(exports)) or 'none'})",
                f"correct 'export_id' of {target.key} in HEALER_TARGETS "
                "(IoT Central: Data export → the export → its ID)",
            )
            return
        refs = [str(r.get("id")) for r in export.get("destinations") or [] if isinstance(r, dict)]
        if target.destination_id not in destinations or target.destination_id not in refs:
            self.add(
                scope,
                "iotc-export",
                "fail",
                f"export {target.export_id} does not send to a destination {target.destination_id!r} "
                f"(it sends to {', '.join(refs) or 'none'})",
                f"correct 'destination_id' of {target.key} in HEALER_TARGETS "
                "(IoT Central: Data export → Destinations → its ID)",
            )
            return
        self.add(
            scope,
            "iotc-export",
            "pass",
            f"export {target.export_id} sends to destination {target.destination_id} "
            f"(enabled: {bool(export.get('enabled'))}, status: {export.get('status', '?')})",
        )

    def _arm_identity(self, scope: str, resource_id: str) -> None:
        if resource_id in self._arm:
            return
        self._arm.add(resource_id)
        try:
            identity = self.s.iotc.current_identity(resource_id)
        except Exception as exc:
            status = _status_of(exc)
            if _transient(exc):
                self.cannot_tell(scope, "arm-identity", exc)
            elif status == 404:
                self.add(
                    scope,
                    "arm-identity",
                    "fail",
                    f"ARM knows no {resource_id}",
                    "correct iotc_resource_id: az iot central app show --name <app> --resource-group <rg> --query id",
                )
            else:
                self.add(
                    scope,
                    "arm-identity",
                    "fail",
                    f"ARM refused to read the app ({_said(exc)}): the healer needs Reader on it",
                    f"az role assignment create --assignee-object-id {self.oid} --assignee-principal-type "
                    f"ServicePrincipal --role Reader --scope {resource_id}",
                )
            return
        if identity is None:
            name = resource_id.rstrip("/").rsplit("/", 1)[-1]
            group = resource_id.split("/")[4]
            self.add(
                scope,
                "arm-identity",
                "fail",
                "ARM reports no system-assigned identity on the app: its exports cannot use one",
                f"az iot central app identity assign --name {name} --resource-group {group} --system-assigned",
            )
            return
        self.add(scope, "arm-identity", "pass", f"ARM names the app's identity: object id {identity.object_id}")

    # ------------------------------------------------------------------ storage

    def _storage(self) -> bool:
        settings = self.s.settings
        account = settings.storage_account_name or "<storage-account>"
        storage_scope = (
            "$(az storage account show --name " + account + " --query id -o tsv)"
            if settings.storage_account_name
            else "<storage account id>"
        )

        def fix(role: str) -> str:
            if settings.storage_connection_string:
                return "check the account key in AzureWebJobsStorage (the connection string)"
            return (
                f"az role assignment create --assignee-object-id {self.oid} --assignee-principal-type "
                f"ServicePrincipal --role '{role}' --scope {storage_scope}"
            )

        # One line for the account: a wrong key or a missing role shows in both services alike.
        from azure.core.exceptions import ResourceNotFoundError

        queue = self.s.queue
        try:
            states = self.s.store.all_states()
        except Exception as exc:
            self._storage_failed("the state table", exc, fix("Storage Table Data Contributor"))
            return False
        try:
            queue.client.get_queue_properties()
            queued = f"queue {queue.name} exists"
        except ResourceNotFoundError:
            queued = f"queue {queue.name} is not created yet (its first message creates it)"
        except Exception as exc:
            self._storage_failed(f"queue {queue.name}", exc, fix("Storage Queue Data Contributor"))
            return True
        self.add(
            "storage",
            "tables-and-queue",
            "pass",
            f"the state table answers ({len(states)} target state(s); tables are created by the first write); {queued}",
        )
        return True

    def _storage_failed(self, what: str, exc: Exception, fix: str) -> None:
        if _transient(exc):
            self.cannot_tell("storage", "tables-and-queue", exc)
        else:
            self.add("storage", "tables-and-queue", "fail", f"{what} could not be read ({_said(exc)})", fix)

    # ------------------------------------------------------------------ Log Analytics

    def _log_analytics(self, settings: Settings) -> None:
        workspace = settings.log_analytics_workspace_id
        scope = "log analytics"
        if not workspace or self.s.logs is None:
            self.add(
                scope,
                "workspace",
                "not-applicable",
                "HEALER_LOG_ANALYTICS_WORKSPACE_ID is unset: detection reads IoT Central's status only",
                f"{APP_SETTINGS_FIX} HEALER_LOG_ANALYTICS_WORKSPACE_ID=<workspace id>",
                required=False,
            )
            return
        from shared.loganalytics_errors import LogAnalyticsError

        logs = self.s.logs
        ws_scope = f"$(az monitor log-analytics workspace list --query \"[?customerId=='{workspace}'].id\" -o tsv)"
        diagnostic = (
            "az monitor diagnostic-settings create --name adx-to-logs --resource <ADX cluster resource id> "
            f"--workspace {ws_scope} "
            '--logs \'[{"category":"FailedIngestion","enabled":true},{"category":"Journal","enabled":true}]\''
        )
        answered = False
        for table, name, use in (
            ("FailedIngestion", "failed-ingestion-rows", "detection sees queued-ingestion failures"),
            ("ADXJournal", "journal-rows", "root causes name who changed a principal"),
        ):
            query = f"{table} | summarize Rows=count()"
            try:
                rows = logs.query(workspace, query, LOG_LOOKBACK_DAYS * 1440)
            except LogAnalyticsError as exc:
                if exc.status in (401, 403, 404) and not answered:
                    self.add(
                        scope,
                        "workspace",
                        "fail",
                        f"workspace {workspace} refused the query ({_said(exc)}): "
                        "the healer needs Log Analytics Reader",
                        f"az role assignment create --assignee-object-id {self.oid} --assignee-principal-type "
                        f"ServicePrincipal --role 'Log Analytics Reader' --scope {ws_scope}",
                    )
                    return
                if _transient(exc):
                    if not answered:
                        self.cannot_tell(scope, "workspace", exc)
                        return
                    self.add(scope, name, "cannot-tell", f"no answer: {_said(exc)}", required=False)
                    continue
                # 400: the table does not exist (yet): nothing has ever been sent to it.
                answered = answered or self._workspace_pass(workspace)
                self.add(
                    scope,
                    name,
                    "cannot-tell",
                    f"{table} does not exist in the workspace: the cluster's diagnostic setting does not send it, "
                    f"or nothing was ever logged ({use} only when it does)",
                    diagnostic,
                    required=False,
                )
                continue
            answered = answered or self._workspace_pass(workspace)
            count = int(rows[0]["Rows"]) if rows else 0
            if count:
                self.add(scope, name, "pass", f"{table} received {count} row(s) in {LOG_LOOKBACK_DAYS} days")
            else:
                self.add(
                    scope,
                    name,
                    "cannot-tell",
                    f"{table} received no row in {LOG_LOOKBACK_DAYS} days: nothing happened, or the cluster's "
                    f"diagnostic setting does not send it ({use} only when it does)",
                    diagnostic,
                    required=False,
                )

    def _workspace_pass(self, workspace: str) -> bool:
        self.add("log analytics", "workspace", "pass", f"workspace {workspace} answers the healer's queries")
        return True

    # ------------------------------------------------------------------ webhooks

    def _alert_webhook(self, settings: Settings) -> None:
        scope = "alert webhook"
        audience, tenant = settings.alert_audience, settings.alert_tenant_id
        if not audience and not tenant:
            self.add(
                scope,
                "alert-settings",
                "not-applicable",
                "HEALER_ALERT_AUDIENCE and HEALER_ALERT_TENANT_ID are unset: /api/alerts refuses every call "
                "(the timer still detects)",
                f"{APP_SETTINGS_FIX} HEALER_ALERT_AUDIENCE=api://<webhook-app> HEALER_ALERT_TENANT_ID=<tenant-id>",
                required=False,
            )
            return
        if not (audience and tenant):
            missing = "HEALER_ALERT_TENANT_ID" if audience else "HEALER_ALERT_AUDIENCE"
            self.add(
                scope,
                "alert-settings",
                "fail",
                f"{missing} is unset while the other is set: /api/alerts refuses every action group",
                f"{APP_SETTINGS_FIX} {missing}=<value>",
            )
            return
        from shared.webhook_auth import jwks_url

        url = jwks_url(settings)
        try:
            keys = _get_json(url, DOCTOR_TIMEOUT_S).get("keys")
        except Exception as exc:
            status = _status_of(exc)
            if status is None or status >= 500 or status == 429:
                self.cannot_tell(scope, "alert-settings", exc)
            else:
                self.add(
                    scope,
                    "alert-settings",
                    "fail",
                    f"the tenant's signing keys ({url}) answered {status}: is HEALER_ALERT_TENANT_ID right?",
                    f"{APP_SETTINGS_FIX} HEALER_ALERT_TENANT_ID=$(az account show --query tenantId -o tsv)",
                )
            return
        if not isinstance(keys, list) or not keys:
            self.add(
                scope,
                "alert-settings",
                "fail",
                f"{url} lists no signing key: no action group token could be checked",
                f"{APP_SETTINGS_FIX} HEALER_ENTRA_AUTHORITY=https://login.microsoftonline.com",
            )
            return
        self.add(
            scope,
            "alert-settings",
            "pass",
            f"tokens for {audience} from tenant {tenant} are checked against {len(keys)} published key(s)",
        )

    def _notify_webhook(self, settings: Settings) -> None:
        if settings.notify_webhook is None:
            self.add(
                "notifications",
                "notify-webhook",
                "not-applicable",
                "HEALER_NOTIFY_WEBHOOK is unset: incidents are recorded, not posted anywhere",
                f"{APP_SETTINGS_FIX} HEALER_NOTIFY_WEBHOOK=<incoming webhook URL>",
                required=False,
            )
            return
        self.add(
            "notifications",
            "notify-webhook",
            "pass",
            "HEALER_NOTIFY_WEBHOOK is an https URL (not sent to: the doctor posts nothing)",
        )


def _get_json(url: str, timeout_s: float) -> dict[str, Any]:
    import requests

    response = requests.get(url, timeout=timeout_s)
    if response.status_code >= 400:
        error = requests.HTTPError(f"{response.status_code} from {url}")
        error.status_code = response.status_code  # type: ignore[attr-defined]
        raise error
    body = response.json()
    return body if isinstance(body, dict) else {}


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
    from shared.credentials import build_credential
    from shared.services import build_services

    credential = credential or build_credential(settings.identity_client_id)
    services = (build or build_services)(doctor_settings(settings), credential)
    return Doctor(services, whoami(credential)).run()
