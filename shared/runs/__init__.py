"""Remediation runs, read top-down: the run graph (phases), outcomes and escalation (outcome),
obligations and their rule (obligations), fenced transitions and journaled effects (fencing), the
engine that decides every message from the run's phase (engine), one module per remedy
(remedies/: add_role, recreate, refresh), reading and planning (reading), poison (poison) and
the recovery sweep with a recovery owner for every phase (sweep)."""

from shared.runs.base import Outcome, Services, Status, UnknownTarget
from shared.runs.engine import Healer

__all__ = ["Healer", "Outcome", "Services", "Status", "UnknownTarget"]
