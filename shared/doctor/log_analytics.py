"""The doctor's Log Analytics check: the workspace answers the healer's queries, and the cluster's
diagnostic setting sends the two tables detection and root causes read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.doctor.failures import transient
from shared.doctor.findings import APP_SETTINGS_FIX, said

if TYPE_CHECKING:
    from shared.adapters.loganalytics import LogAnalyticsAdapter
    from shared.config.settings import Settings
    from shared.doctor.findings import Findings

LOG_LOOKBACK_DAYS = 7
SCOPE = "log analytics"


def check_log_analytics(out: Findings, settings: Settings, logs: LogAnalyticsAdapter | None) -> None:
    workspace = settings.log_analytics_workspace_id
    if not workspace or logs is None:
        out.add(
            SCOPE,
            "workspace",
            "not-applicable",
            "HEALER_LOG_ANALYTICS_WORKSPACE_ID is unset: detection reads IoT Central's status only",
            f"{APP_SETTINGS_FIX} HEALER_LOG_ANALYTICS_WORKSPACE_ID=<workspace id>",
            required=False,
        )
        return
    from shared.adapters.loganalytics_errors import LogAnalyticsError

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
                out.add(
                    SCOPE,
                    "workspace",
                    "fail",
                    f"workspace {workspace} refused the query ({said(exc)}): the healer needs Log Analytics Reader",
                    f"az role assignment create --assignee-object-id {out.oid} --assignee-principal-type "
                    f"ServicePrincipal --role 'Log Analytics Reader' --scope {ws_scope}",
                )
                return
            if transient(exc):
                if not answered:
                    out.cannot_tell(SCOPE, "workspace", exc)
                    return
                out.add(SCOPE, name, "cannot-tell", f"no answer: {said(exc)}", required=False)
                continue
            # 400: the table does not exist (yet): nothing has ever been sent to it.
            answered = answered or _workspace_pass(out, workspace)
            out.add(
                SCOPE,
                name,
                "cannot-tell",
                f"{table} does not exist in the workspace: the cluster's diagnostic setting does not send it, "
                f"or nothing was ever logged ({use} only when it does)",
                diagnostic,
                required=False,
            )
            continue
        answered = answered or _workspace_pass(out, workspace)
        count = int(rows[0]["Rows"]) if rows else 0
        if count:
            out.add(SCOPE, name, "pass", f"{table} received {count} row(s) in {LOG_LOOKBACK_DAYS} days")
        else:
            out.add(
                SCOPE,
                name,
                "cannot-tell",
                f"{table} received no row in {LOG_LOOKBACK_DAYS} days: nothing happened, or the cluster's "
                f"diagnostic setting does not send it ({use} only when it does)",
                diagnostic,
                required=False,
            )


def _workspace_pass(out: Findings, workspace: str) -> bool:
    out.add(SCOPE, "workspace", "pass", f"workspace {workspace} answers the healer's queries")
    return True
