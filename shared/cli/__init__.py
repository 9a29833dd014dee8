"""Operator CLI: `python -m shared <command>`. The group, its options and the exit codes are in
`group`; the commands register on it when imported here: `diagnose` (diagnose, checklist, plan),
`heal` (heal, backfill, resume), `history` (status, history, report), `doctor` and `iotc_access`;
`sandbox` points the settings at the local sandbox."""

from __future__ import annotations

from shared.cli import diagnose, doctor, heal, history, iotc_access
from shared.cli.group import main, run

__all__ = ["diagnose", "doctor", "heal", "history", "iotc_access", "main", "run"]
