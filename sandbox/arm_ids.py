"""Azure resource ids of the sandbox's services, apart from the world so that modules the world
uses (healer_config, adx/diagnostics) can name them without importing it."""

from __future__ import annotations

# The sandbox's cluster as Azure names it (Log Analytics lower-cases `_ResourceId`). Its URL is
# loopback and names nothing, so the healer's configuration carries this id (cluster_resource_id).
ADX_RESOURCE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-adx"
    "/providers/microsoft.kusto/clusters/adxsandbox"
)
