"""`--sandbox`: aim every setting at a running `make sandbox` (its endpoints.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click


def use_sandbox(state_dir: Path) -> None:
    """Aim every setting at a running `make sandbox` (its endpoints.json)."""
    path = state_dir / "endpoints.json"
    if not path.exists():
        raise click.UsageError(f"{path} not found: start the sandbox first (make sandbox)")
    ep = json.loads(path.read_text())
    env = {
        "IDENTITY_ENDPOINT": ep["IDENTITY_ENDPOINT"],
        "IDENTITY_HEADER": ep["IDENTITY_HEADER"],
        "AzureWebJobsStorage": ep["storage_connection_string"],
        "HEALER_IOTC_BASE_URL": ep["iotcentral_base_url"],
        "HEALER_ARM_URL": ep["arm_url"],
        "HEALER_LOG_ANALYTICS_ENDPOINT": ep["loganalytics_endpoint"],
        "HEALER_LOG_ANALYTICS_WORKSPACE_ID": ep["loganalytics_workspace_id"],
    }
    os.environ.update(env)
    if "HEALER_TARGETS" not in os.environ and "HEALER_TARGETS_FILE" not in os.environ:
        import requests

        os.environ["HEALER_TARGETS"] = json.dumps(
            requests.get(f"{ep['control_url']}/healer-targets", timeout=10).json()
        )
