"""The doctor's IoT Central checks: the healer may read each app's exports and destinations, each
target's export sends to its destination, and ARM names the app's system-assigned identity. Each
app is read once and each resource id asked once, however many targets share them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.doctor.failures import status_of, transient
from shared.doctor.findings import said

if TYPE_CHECKING:
    from shared.doctor.findings import Check, Findings
    from shared.domain.targets import Target
    from shared.runs import Services


class IotcChecks:
    def __init__(self, out: Findings, services: Services) -> None:
        self.out = out
        self.services = services
        self._apps: dict[str, tuple[Check, dict[str, Any], dict[str, Any]]] = {}
        self._arm: set[str] = set()

    def _fix(self, app: str) -> str:
        out = self.out
        return f"python -m shared iotc-access --app {app} --object-id {out.oid} --tenant-id {out.tenant} --yes"

    def app_access(self, app: str) -> tuple[Check, dict[str, Any], dict[str, Any]]:
        """One read of an app's exports and destinations, shared by its targets."""
        if app in self._apps:
            return self._apps[app]
        out = self.out
        scope = f"app {app}"
        exports: dict[str, Any] = {}
        destinations: dict[str, Any] = {}
        try:
            exports = {str(e.get("id")): e for e in self.services.iotc.exports(app)}
            destinations = {str(d.get("id")): d for d in self.services.iotc.destinations(app)}
        except Exception as exc:
            status = status_of(exc)
            if transient(exc):
                check = out.cannot_tell(scope, "iotc-access", exc)
            elif status == 404:
                check = out.add(
                    scope,
                    "iotc-access",
                    "fail",
                    f"IoT Central answered 404 for app {app!r}: no such application ({said(exc)})",
                    "correct 'app' (the application's subdomain, as in https://<subdomain>.azureiotcentral.com) "
                    "in HEALER_TARGETS or HEALER_APPS",
                )
            else:
                check = out.add(
                    scope,
                    "iotc-access",
                    "fail",
                    f"IoT Central refused to list {app}'s data exports ({said(exc)}): the healer is not an "
                    "app user whose role manages data export",
                    self._fix(app),
                )
        else:
            check = out.add(
                scope,
                "iotc-access",
                "pass",
                f"the healer reads {app}'s {len(exports)} export(s) and {len(destinations)} destination(s) "
                "(that its role may also change them is not tested: the doctor changes nothing)",
            )
        self._apps[app] = (check, exports, destinations)
        return self._apps[app]

    def export_and_destination(self, scope: str, target: Target) -> None:
        out = self.out
        access, exports, destinations = self.app_access(target.app)
        if access.status != "pass":
            out.add(scope, "iotc-export", "cannot-tell", f"not checked: app {target.app} could not be read")
            return
        export = exports.get(target.export_id)
        if export is None:
            out.add(
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
            out.add(
                scope,
                "iotc-export",
                "fail",
                f"export {target.export_id} does not send to a destination {target.destination_id!r} "
                f"(it sends to {', '.join(refs) or 'none'})",
                f"correct 'destination_id' of {target.key} in HEALER_TARGETS "
                "(IoT Central: Data export → Destinations → its ID)",
            )
            return
        out.add(
            scope,
            "iotc-export",
            "pass",
            f"export {target.export_id} sends to destination {target.destination_id} "
            f"(enabled: {bool(export.get('enabled'))}, status: {export.get('status', '?')})",
        )

    def arm_identity(self, scope: str, resource_id: str) -> None:
        if resource_id in self._arm:
            return
        self._arm.add(resource_id)
        out = self.out
        try:
            identity = self.services.iotc.current_identity(resource_id)
        except Exception as exc:
            status = status_of(exc)
            if transient(exc):
                out.cannot_tell(scope, "arm-identity", exc)
            elif status == 404:
                out.add(
                    scope,
                    "arm-identity",
                    "fail",
                    f"ARM knows no {resource_id}",
                    "correct iotc_resource_id: az iot central app show --name <app> --resource-group <rg> --query id",
                )
            else:
                out.add(
                    scope,
                    "arm-identity",
                    "fail",
                    f"ARM refused to read the app ({said(exc)}): the healer needs Reader on it",
                    f"az role assignment create --assignee-object-id {out.oid} --assignee-principal-type "
                    f"ServicePrincipal --role Reader --scope {resource_id}",
                )
            return
        if identity is None:
            name = resource_id.rstrip("/").rsplit("/", 1)[-1]
            group = resource_id.split("/")[4]
            out.add(
                scope,
                "arm-identity",
                "fail",
                "ARM reports no system-assigned identity on the app: its exports cannot use one",
                f"az iot central app identity assign --name {name} --resource-group {group} --system-assigned",
            )
            return
        out.add(scope, "arm-identity", "pass", f"ARM names the app's identity: object id {identity.object_id}")
