"""Remediation runs: the state machine (machine), fenced transitions and journaled effects
(fencing), one module per remedy (add_role, refresh), reading and planning (reading) and the
recovery sweep (sweep)."""

from shared.runs.base import Outcome, Services, Status, UnknownTarget
from shared.runs.machine import Healer

__all__ = ["Healer", "Outcome", "Services", "Status", "UnknownTarget"]
