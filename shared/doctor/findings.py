"""What the doctor found: one line per check, the report that gathers them, and who was asking.
Pure: no service is called here (the credential's token is read through its protocol)."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)
Status = Literal["pass", "fail", "cannot-tell", "not-applicable"]
ARM_SCOPE = "https://management.azure.com/.default"
APP_SETTINGS_FIX = "az functionapp config appsettings set --name <function-app> --resource-group <rg> --settings"


@dataclass(frozen=True)
class Check:
    scope: str  # what was checked: "target contoso:export-1:adx-1", "app contoso", "storage", ...
    name: str  # the check: adx-database, adx-role, table, iotc-exports, ...
    status: Status
    why: str
    fix: str = ""  # the exact command (KQL, az, or a portal step); empty when nothing needs fixing
    required: bool = True  # a failure here means a configured remedy cannot work

    @property
    def blocking(self) -> bool:
        return self.required and self.status in ("fail", "cannot-tell")


@dataclass
class DoctorReport:
    mode: str
    identity: str  # the healer's principal as ADX names it, or "" when its token could not be read
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.blocking for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "mode": self.mode,
            "identity": self.identity,
            "checks": [asdict(c) for c in self.checks],
            "counts": {s: sum(1 for c in self.checks if c.status == s) for s in _STATUSES},
        }


_STATUSES: tuple[Status, ...] = ("pass", "fail", "cannot-tell", "not-applicable")


@dataclass(frozen=True)
class Whoami:
    object_id: str
    tenant_id: str
    user: bool  # a person's `az login`, not an application or managed identity
    client_id: str = ""  # an application's (managed identity's) application id

    @property
    def fqn(self) -> str:
        """As ADX names it: an application by its application id, a person by object id."""
        if self.user or not self.client_id:
            return f"{'aaduser' if self.user else 'aadapp'}={self.object_id};{self.tenant_id}"
        return f"aadapp={self.client_id};{self.tenant_id}"


def whoami(credential: TokenCredential) -> Whoami | None:
    """Who the credential is, read from its own ARM token's claims (never logged, never verified:
    the token is ours and only its object and tenant ids are kept). None when no token comes."""
    try:
        token = credential.get_token(ARM_SCOPE).token
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except Exception as exc:  # no token, or not a JWT: the fixes then name placeholders
        log.info("the credential's identity could not be read: %s", type(exc).__name__)
        return None
    oid, tid = str(claims.get("oid") or ""), str(claims.get("tid") or "")
    if not (oid and tid):
        return None
    user = claims.get("idtyp") == "user" or "upn" in claims or ("scp" in claims and "roles" not in claims)
    return Whoami(oid, tid, user, str(claims.get("appid") or claims.get("azp") or ""))


def said(exc: Exception) -> str:
    """The first line of what a failure said, short enough for one line of the report."""
    return str(exc).splitlines()[0][:240] if str(exc) else type(exc).__name__


class Findings:
    """The report being written, and the placeholders its fixes name when the identity is unknown."""

    def __init__(self, mode: str, me: Whoami | None) -> None:
        self.me = me
        self.report = DoctorReport(mode, me.fqn if me else "")

    def add(self, scope: str, name: str, status: Status, why: str, fix: str = "", required: bool = True) -> Check:
        check = Check(scope, name, status, why, fix if status != "pass" else "", required)
        self.report.checks.append(check)
        return check

    def cannot_tell(self, scope: str, name: str, exc: Exception, fix: str = "run the doctor again") -> Check:
        return self.add(scope, name, "cannot-tell", f"no answer: {said(exc)}", fix)

    @property
    def oid(self) -> str:
        return self.me.object_id if self.me else "<healer-object-id>"

    @property
    def fqn(self) -> str:
        return self.me.fqn if self.me else "aadapp=<healer-object-id>;<tenant-id>"

    @property
    def tenant(self) -> str:
        return self.me.tenant_id if self.me else "<tenant-id>"
