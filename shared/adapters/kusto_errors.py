"""The ADX adapter's error in the healer's terms, apart from the adapter so that the modules which
catch it (diagnosis reading, remedies, backfill, doctor) need not import the adapter and its SDK.
Pure: what an answer means (forbidden, not found, an unknown principal) is read from its code,
status and text."""

from __future__ import annotations

import re


class AdxError(Exception):
    """An ADX failure in the healer's terms: code, message, and whether a retry may help."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transient = transient
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def forbidden(self) -> bool:
        return self.code == "Forbidden" or self.status == 403

    @property
    def unknown_principal(self) -> bool:
        """`.add` of an identity Entra does not know (yet): ARM words it "Entity ID … of type 'AAD
        Application Id' was not found"; Kusto's own wording is unverified, so match loosely."""
        return bool(_UNKNOWN_PRINCIPAL.search(self.message))

    @property
    def not_found(self) -> bool:
        """A database or table the cluster does not have. A missing database answers HTTP 404
        (`NotFound`, `EntityNameDoesNotExistException`); older answers and missing tables come as
        400 with one of the BadRequest_… codes. An unknown principal is not a missing entity."""
        if self.unknown_principal:
            return False
        return self.code in _NOT_FOUND_CODES or self.status == 404 or bool(_NOT_FOUND_TEXT.search(self.message))

    @property
    def missing(self) -> str | None:
        """What is missing ("database", "table"), when this is a not-found answer; a 404 that names
        no kind is a database (tables are named in 400 answers)."""
        if not self.not_found:
            return None
        kind = _ENTITY_KIND.search(self.message)
        if kind:
            return kind.group(1).lower()
        if self.code in ("BadRequest_TableNotExist",):
            return "table"
        if self.status == 404 or self.code in ("BadRequest_DatabaseNotExist",):
            return "database"
        return "entity"


_UNKNOWN_PRINCIPAL = re.compile(
    r"AAD Application Id|not found in (?:the )?(?:AAD|Entra|directory|tenant)|"
    r"does not exist in the directory|could not be (?:resolved|found) in",
    re.IGNORECASE,
)


_NOT_FOUND_CODES = frozenset(
    {
        "NotFound",
        "BadRequest_EntityNotFound",
        "BadRequest_EntityNameNotFound",
        "BadRequest_DatabaseNotExist",
        "BadRequest_TableNotExist",
    }
)
_NOT_FOUND_TEXT = re.compile(r"EntityNameDoesNotExist|EntityNotFoundException|DatabaseNotFoundException")
_ENTITY_KIND = re.compile(r"of kind '(Database|Table)'", re.IGNORECASE)
