"""The doctor's ADX checks: each database reachable, the healer's Database Admin role on it, the
table present. Each (cluster, database, table) is checked once, however many targets share it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.adapters.kusto_errors import AdxError
from shared.doctor.failures import transient
from shared.doctor.findings import said
from shared.domain.kusto_names import quote_entity

if TYPE_CHECKING:
    from shared.adapters.kusto import KustoAdapter
    from shared.doctor.findings import Findings
    from shared.domain.targets import AppConfig
    from shared.runs import Services


class AdxChecks:
    def __init__(self, out: Findings, services: Services) -> None:
        self.out = out
        self.services = services
        self._done: set[tuple[str, str, str]] = set()

    def app_destinations(self, app: AppConfig, destinations: dict[str, Any]) -> None:
        """HEALER_APPS: the app's ADX destinations that point where it allows, checked in ADX now
        (detection would discover them as targets; before its first cycle none is known)."""
        for dest_id, dest in sorted(destinations.items()):
            if dest.get("type") != "dataexplorer@v1":
                continue
            cluster, db, table = (str(dest.get(k) or "") for k in ("clusterUrl", "database", "table"))
            if app.allows(cluster, db) or not (cluster and db and table):
                continue  # detection reports those and never touches them
            self.database(
                f"app {app.app} destination {dest_id}", cluster, db, table, f"destination {dest_id}'s database"
            )

    def database(self, scope: str, cluster_url: str, db: str, table: str, setting: str) -> None:
        """The database reachable, the healer's Database Admin role on it, the table present."""
        if (cluster_url.rstrip("/").lower(), db, table) in self._done:
            return
        self._done.add((cluster_url.rstrip("/").lower(), db, table))
        out = self.out
        kusto = self.services.kusto(cluster_url)
        admin_fix = f".add database {quote_entity('database', db)} admins ('{out.fqn}') 'iotc-adx-healer'"
        reachable = False
        try:
            roles = kusto.own_roles(db)
            reachable = True
        except Exception as exc:
            if transient(exc):
                out.cannot_tell(scope, "adx-role", exc)
            elif isinstance(exc, AdxError) and exc.not_found:
                out.add(
                    scope,
                    "adx-role",
                    "fail",
                    f"{cluster_url} has no database {db!r} (names are case-sensitive)",
                    f"correct {setting} (HEALER_TARGETS or IoT Central), or create it: "
                    f"az kusto database create --cluster-name <cluster> --resource-group <rg> --database-name {db} "
                    "--read-write-database location=<region>",
                )
            else:
                out.add(
                    scope,
                    "adx-role",
                    "fail",
                    f"ADX refused to say the healer's roles on {db} ({said(exc)}): it holds no role there",
                    f"as a Database Admin of {db}: {admin_fix}",
                )
        else:
            if roles & {"admins", "AllDatabasesAdmin"}:
                out.add(scope, "adx-role", "pass", f"the healer is Database Admin of {db} on {cluster_url}")
            else:
                held = ", ".join(sorted(roles)) or "no role it can name"
                out.add(
                    scope,
                    "adx-role",
                    "fail",
                    f"the healer holds {held} on {db}: adding and dropping principals needs Database Admin",
                    f"as a Database Admin of {db}: {admin_fix}",
                )
        if not reachable:
            out.add(scope, "adx-table", "cannot-tell", f"not checked: {db} could not be read")
        else:
            self._table(scope, kusto, db, table)

    def _table(self, scope: str, kusto: KustoAdapter, db: str, table: str) -> None:
        out = self.out
        try:
            tables = kusto.tables(db)
        except Exception as exc:
            out.cannot_tell(scope, "adx-table", exc)
            return
        if table in tables:
            out.add(scope, "adx-table", "pass", f"table {db}.{table} exists")
            return
        near = next((t for t in tables if t.lower() == table.lower()), None)
        out.add(
            scope,
            "adx-table",
            "fail",
            f"no table {table!r} in {db}" + (f" (but {near!r}: names are case-sensitive)" if near else ""),
            f"correct the table name to {near!r} (HEALER_TARGETS or the IoT Central destination)"
            if near
            else f".create table {quote_entity('table', table)} (<the columns your export writes>) "
            f"in {db}, or correct the table name (HEALER_TARGETS or the IoT Central destination)",
        )
