"""Validation and quoting of everything that reaches a Kusto command.

The healer never interpolates a raw value: entity names are checked against a strict subset of
ADX's naming rules and bracket-quoted, principals must be well-formed Entra FQNs, and notes are
escaped string literals. Anything else raises `UnsafeKustoValue` before a request is built.
"""

from __future__ import annotations

import re

MAX_ENTITY_NAME = 256
MAX_NOTES = 512
# ADX allows letters, digits, underscores, spaces, dots and dashes in entity names. We accept the
# ASCII subset only: look-alike Unicode letters are how a hostile name passes a human review.
_ENTITY = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_ .\-]*[A-Za-z0-9_])?")
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
_FQN = re.compile(rf"(?i:aadapp)=({_GUID});({_GUID}|{_DOMAIN})")
GUID = re.compile(_GUID)
DB_ROLES = ("admins", "users", "viewers", "unrestrictedviewers", "ingestors", "monitors")
TABLE_ROLES = ("admins", "ingestors")


class UnsafeKustoValue(ValueError):
    """A value that must not reach a Kusto command; the message names the field and the value."""

    def __init__(self, field: str, value: object, why: str) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}={shown} is refused: {why}")
        self.field = field


def entity_name(field: str, value: object) -> str:
    """A database or table name that may be bracket-quoted safely."""
    if not isinstance(value, str):
        raise UnsafeKustoValue(field, value, "must be a string")
    if not value:
        raise UnsafeKustoValue(field, value, "must not be empty")
    if len(value) > MAX_ENTITY_NAME:
        raise UnsafeKustoValue(field, value, f"longer than {MAX_ENTITY_NAME} characters")
    if not _ENTITY.fullmatch(value):
        raise UnsafeKustoValue(
            field,
            value,
            "only ASCII letters, digits, '_', ' ', '.', '-' are allowed, starting and ending with a "
            "letter, digit or '_'",
        )
    return value


def quote_entity(field: str, value: object) -> str:
    """`['name']`: always bracketed, so keywords and dashes are names, never syntax."""
    return f"['{entity_name(field, value)}']"


def principal_fqn(field: str, value: object) -> str:
    """An application principal `aadapp=<guid>;<tenant guid or domain>`, normalised to lower case."""
    if not isinstance(value, str):
        raise UnsafeKustoValue(field, value, "must be a string")
    match = _FQN.fullmatch(value)
    if not match:
        raise UnsafeKustoValue(field, value, "must be aadapp=<application or object id>;<tenant id>")
    return f"aadapp={match.group(1).lower()};{match.group(2).lower()}"


def guid(field: str, value: object) -> str:
    if not isinstance(value, str) or not GUID.fullmatch(value):
        raise UnsafeKustoValue(field, value, "must be a GUID")
    return value.lower()


def notes(field: str, value: object) -> str:
    """Free text for a role assignment's notes: printable, bounded; quotes are escaped later."""
    if not isinstance(value, str):
        raise UnsafeKustoValue(field, value, "must be a string")
    if len(value) > MAX_NOTES:
        raise UnsafeKustoValue(field, value, f"longer than {MAX_NOTES} characters")
    if any(not ch.isprintable() for ch in value):
        raise UnsafeKustoValue(field, value, "contains control or non-printable characters")
    return value


def quote_string(value: str) -> str:
    """A single-quoted Kusto string literal with backslash escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def db_role(field: str, value: object) -> str:
    if value not in DB_ROLES:
        raise UnsafeKustoValue(field, value, f"must be one of {', '.join(DB_ROLES)}")
    return str(value)


def table_role(field: str, value: object) -> str:
    if value not in TABLE_ROLES:
        raise UnsafeKustoValue(field, value, f"must be one of {', '.join(TABLE_ROLES)}")
    return str(value)
