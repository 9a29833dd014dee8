"""The export's filter, evaluated on rebuilt messages: `SELECT * FROM devices|<template id>
[WHERE c AND c …]` with comparisons on system fields and telemetry. What it cannot evaluate as the
export did is refused (FilterUnsupported), never guessed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.backfill.records import Message
from shared.backfill.templates import TemplateInfo


class FilterUnsupported(ValueError):
    """An export filter this healer cannot evaluate: the backfill refuses rather than guess."""


_FILTER = re.compile(r"\s*SELECT\s+\*\s+FROM\s+(?P<source>\S+)(?:\s+WHERE\s+(?P<where>.+?))?\s*", re.I | re.S)
_CONDITION = re.compile(
    r"\s*(?P<field>\$?[A-Za-z_][\w.]*)\s*(?P<op>!=|<>|>=|<=|=|>|<)\s*(?P<value>\"[^\"]*\"|'[^']*'|-?\d+(?:\.\d+)?|true|false)\s*",
    re.I,
)
_OPS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


FILTER_SYSTEM_FIELDS = ("$id", "$displayName", "$template", "$simulated")


@dataclass(frozen=True)
class ExportFilter:
    """`SELECT * FROM devices|<template id> [WHERE c AND c …]` with comparisons on `$id`,
    `$displayName`, `$template`, `$simulated` and telemetry. Anything else is FilterUnsupported,
    and so is a condition on a field that is neither (a device or message property: the query API
    cannot say what it was when the message was sent)."""

    source: str
    conditions: tuple[tuple[str, str, Any], ...]

    @staticmethod
    def parse(text: str | None) -> ExportFilter:
        if not text or not text.strip():
            return ExportFilter("devices", ())
        match = _FILTER.fullmatch(text)
        if not match:
            understood = "SELECT * FROM devices|<template> [WHERE …]"
            raise FilterUnsupported(f"filter={text!r}: only '{understood}' is understood")
        conditions = []
        where = match.group("where") or ""
        if re.search(r"\bOR\b|\bIN\b|\(", where, re.I):
            raise FilterUnsupported(f"filter={text!r}: OR, IN and functions are not understood")
        for part in re.split(r"\s+AND\s+", where, flags=re.I) if where else []:
            cond = _CONDITION.fullmatch(part)
            if not cond:
                raise FilterUnsupported(f"filter={text!r}: condition {part.strip()!r} is not understood")
            raw = cond.group("value")
            value: Any
            if raw[0] in "\"'":
                value = raw[1:-1]
            elif raw.lower() in ("true", "false"):
                value = raw.lower() == "true"
            else:
                value = float(raw)
            conditions.append((cond.group("field"), cond.group("op"), value))
        return ExportFilter(match.group("source"), tuple(conditions))

    def covers(self, template_id: str) -> bool:
        return self.source in ("devices", template_id)

    def check_fields(self, templates: list[TemplateInfo]) -> None:
        """Refuse a filter that reads what query results cannot give back."""
        telemetry = {c.path for info in templates for c in info.telemetry}
        for name, _, _ in self.conditions:
            if name not in FILTER_SYSTEM_FIELDS and name not in telemetry:
                raise FilterUnsupported(
                    f"the export's filter reads {name!r}, which is not telemetry of its templates but a device or "
                    "message property: the query API cannot say what it was when each message was sent, so the "
                    "messages the export kept cannot be told from those it dropped"
                )

    def matches(self, message: Message, device: dict[str, Any] | None) -> bool:
        if not self.covers(message.template_id):
            return False
        device = device or {}
        facts: dict[str, Any] = {
            "$id": message.device_id,
            "$displayName": device.get("displayName", message.device_id),
            "$template": message.template_id,
            "$simulated": device.get("simulated", False),
        }
        for name, value in message.telemetry.items():
            facts[f"{message.component}.{name}" if message.component else name] = value
        for name, op, value in self.conditions:
            actual = facts.get(name)
            if actual is None:
                return False
            try:
                if not _OPS[op](actual, value):
                    return False
            except TypeError:
                return False
        return True
