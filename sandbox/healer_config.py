"""App settings that point the healer at a running sandbox (used by the runner, drill and tests)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sandbox.arm_ids import ADX_RESOURCE_ID
from sandbox.azurite import Azurite
from sandbox.entra import TENANT_ID

if TYPE_CHECKING:
    # Only for annotations: the control API (which the world serves) imports this module.
    from sandbox.stage import Stage

# The identifier URI of the alert webhook's Entra application (the Bicep creates it as api://…).
ALERT_AUDIENCE = "api://iotc-adx-healer-webhook"
# Its client id: the `aud` of a v2 token (the Bicep pins requestedAccessTokenVersion 2).
ALERT_CLIENT_ID = "5d8c7a3e-2f41-4b6a-9c0d-7e1f2a3b4c5d"


def targets_for(world: Stage) -> list[dict[str, Any]]:
    """HEALER_TARGETS for every export the sandbox set up."""
    out = []
    for t in world.targets:
        identity = world.iotc.identity_of(t.subdomain)
        out.append(
            {
                "app": t.subdomain,
                "export_id": t.export_id,
                "destination_id": t.destination_id,
                "cluster_url": world.cluster.url,
                "database": t.database,
                "table": t.table,
                "principal": {
                    **({"object_id": identity.object_id} if t.configured_ids in ("both", "object") else {}),
                    **({"client_id": identity.client_id} if t.configured_ids in ("both", "client") else {}),
                    "tenant_id": identity.tenant_id,
                },
                "role": t.role,
                "iotc_resource_id": world.iotc.apps[t.subdomain].arm_id,
                "cluster_resource_id": ADX_RESOURCE_ID,
            }
        )
    return out


def app_settings(world: Stage, azurite: Azurite, **overrides: Any) -> dict[str, str]:
    """Every app setting the Function App needs (as in the Bicep), aimed at the sandbox: the runner
    takes these and nothing from its own environment."""
    endpoints = world.endpoints()
    values: dict[str, Any] = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "HEALER_MODE": "enforce",
        "HEALER_TARGETS": json.dumps(targets_for(world)),
        "HEALER_IOTC_BASE_URL": endpoints["iotcentral_base_url"],
        "HEALER_ARM_URL": endpoints["arm_url"],
        "HEALER_LOG_ANALYTICS_ENDPOINT": endpoints["loganalytics_endpoint"],
        "HEALER_LOG_ANALYTICS_WORKSPACE_ID": endpoints["loganalytics_workspace_id"],
        "HEALER_TIMER_SCHEDULE": "*/5 * * * * *",
        "HEALER_QUEUE_NAME": "healer-remediations",
        "HEALER_ALERT_AUDIENCE": ALERT_AUDIENCE,
        "HEALER_ALERT_CLIENT_ID": ALERT_CLIENT_ID,
        "HEALER_ALERT_TENANT_ID": TENANT_ID,
        "HEALER_ENTRA_AUTHORITY": endpoints["entra_authority"],
        # One machine, one clock, and the sandbox has answered every command when the call
        # returns: no skew to allow for, and no command lands after its answer.
        "HEALER_CLOCK_SKEW_SECONDS": 0,
        "HEALER_ACT_LANDS_WITHIN_SECONDS": 0,
        "AzureWebJobsStorage": azurite.connection_string,
        **world.identity_env(),
    }
    values.update({k: v for k, v in overrides.items()})
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}
