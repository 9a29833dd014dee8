"""Operator CLI: `python -m shared <command>`. The group, its options and the exit codes are in
`group`; the commands in `operator` (diagnose, plan, heal, status, history, backfill, resume),
`doctor` and `iotc_access` register on it when imported here; `sandbox` points the settings at the
local sandbox."""

from __future__ import annotations

from shared.cli import doctor, iotc_access, operator
from shared.cli.group import main, run

__all__ = ["doctor", "iotc_access", "main", "operator", "run"]
