"""Targets: one IoT Central export destination into ADX, and the principal IoT Central writes as.

Configured as a JSON array in the app setting HEALER_TARGETS (or a file named by
HEALER_TARGETS_FILE). Schema of one element:

    {
      "app": "contoso",                      # IoT Central app subdomain
      "export_id": "export-1",
      "destination_id": "adx-1",
      "cluster_url": "https://mycluster.westeurope.kusto.windows.net",
      "database": "devicedata",
      "table": "DeviceTelemetry",
      "principal": {"object_id": "<guid>", "client_id": "<guid>", "tenant_id": "<guid>"},
      "role": "admins",                      # IoT Central's docs prescribe Admin; or "ingestors"
      "iotc_resource_id": "/subscriptions/…/providers/Microsoft.IoTCentral/iotApps/contoso",  # optional
      "cluster_resource_id": "/subscriptions/…/providers/Microsoft.Kusto/clusters/mycluster"  # optional
    }

At least one of principal.object_id / principal.client_id is required. An alert or a log row
names its cluster by resource id; a target's cluster is its `cluster_resource_id` or else the
first label of its https `cluster_url`. A cluster URL that names no cluster (plain http on
loopback) matches no alert or log row that names a cluster unless `cluster_resource_id` is set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.domain import kusto_names
from shared.domain.principals import PrincipalRef

_SUBDOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
_ARM_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[\w.()\-]{1,90}/providers/Microsoft\.IoTCentral/iotApps/[a-z0-9-]{1,63}",
    re.IGNORECASE,
)


_KUSTO_ARM_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[\w.()\-]{1,90}/providers/Microsoft\.Kusto/clusters/"
    r"([a-z][a-z0-9]{3,21})",
    re.IGNORECASE,
)


class ConfigError(ValueError):
    """Bad configuration; the message names the setting, the field and the value."""


_LOOPBACK = re.compile(r"http://(?:127(?:\.\d{1,3}){3}|localhost)(?::\d{1,5})?/?")


def cluster_url(field_name: str, value: str) -> str:
    """https only; plain http only on loopback (the local sandbox)."""
    if not (re.fullmatch(r"https://[A-Za-z0-9.\-]+(?::\d{1,5})?/?", value) or _LOOPBACK.fullmatch(value)):
        raise ValueError(f"{field_name}={value!r} must be https://<cluster>.<region>.kusto.windows.net")
    return value.rstrip("/")


def cluster_resource_id(field_name: str, value: str) -> str:
    if not _KUSTO_ARM_ID.fullmatch(value.rstrip("/")):
        raise ValueError(f"{field_name}={value!r} is not an ADX cluster resource id")
    return value.rstrip("/")


def cluster_name_of_url(url: str) -> str | None:
    """The cluster an https ADX URL names (its first DNS label); None for a loopback URL."""
    if not url.lower().startswith("https://"):
        return None
    return url.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0].split(".", 1)[0].lower() or None


def same_cluster(a: str, b: str) -> bool:
    def norm(url: str) -> str:
        url = url.strip().rstrip("/").lower()
        return url[: -len(":443")] if url.startswith("https://") and url.endswith(":443") else url

    return bool(a and b) and norm(a) == norm(b)


class PrincipalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str
    object_id: str | None = None
    client_id: str | None = None

    @field_validator("tenant_id", "object_id", "client_id")
    @classmethod
    def _guid(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else kusto_names.guid(f"principal.{info.field_name}", value)

    @model_validator(mode="after")
    def _one_id(self) -> PrincipalConfig:
        if not (self.object_id or self.client_id):
            raise ValueError("principal needs object_id or client_id")
        return self

    def ref(self) -> PrincipalRef:
        return PrincipalRef(tenant_id=self.tenant_id, object_id=self.object_id, client_id=self.client_id)


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str
    export_id: str
    destination_id: str
    cluster_url: str
    database: str
    table: str
    principal: PrincipalConfig
    role: Literal["ingestors", "admins"] = "admins"
    iotc_resource_id: str | None = None
    cluster_resource_id: str | None = None
    # After the healer re-created the destination, the target keeps its key (state, journal,
    # history) while its destination id is the new one.
    _key: str | None = PrivateAttr(default=None)

    @field_validator("app")
    @classmethod
    def _subdomain(cls, value: str) -> str:
        if not _SUBDOMAIN.fullmatch(value):
            raise ValueError(f"app={value!r} is not an IoT Central subdomain (lowercase letters, digits, '-')")
        return value

    @field_validator("export_id", "destination_id")
    @classmethod
    def _id(cls, value: str, info: Any) -> str:
        if not _ID.fullmatch(value):
            raise ValueError(f"{info.field_name}={value!r} must be 1-128 letters, digits, '_' or '-'")
        return value

    @field_validator("cluster_url")
    @classmethod
    def _cluster(cls, value: str) -> str:
        return cluster_url("cluster_url", value)

    @field_validator("database", "table")
    @classmethod
    def _entity(cls, value: str, info: Any) -> str:
        return kusto_names.entity_name(str(info.field_name), value)

    @field_validator("iotc_resource_id")
    @classmethod
    def _arm(cls, value: str | None) -> str | None:
        if value is not None and not _ARM_ID.fullmatch(value):
            raise ValueError(f"iotc_resource_id={value!r} is not an IoT Central app resource id")
        return value

    @field_validator("cluster_resource_id")
    @classmethod
    def _cluster_arm(cls, value: str | None) -> str | None:
        return None if value is None else cluster_resource_id("cluster_resource_id", value)

    @model_validator(mode="after")
    def _one_cluster(self) -> Target:
        named = cluster_name_of_url(self.cluster_url)
        if self.cluster_resource_id and named and named != self.cluster_name:
            raise ValueError(
                f"cluster_resource_id={self.cluster_resource_id!r} names cluster {self.cluster_name!r} "
                f"but cluster_url={self.cluster_url!r} names {named!r}"
            )
        return self

    @property
    def cluster_name(self) -> str | None:
        """The ADX cluster this target writes to, by name; None when nothing names it."""
        if self.cluster_resource_id:
            return self.cluster_resource_id.rsplit("/", 1)[-1].lower()
        return cluster_name_of_url(self.cluster_url)

    def on_cluster(self, resource_id: str) -> bool:
        """Whether an ADX cluster resource id (an alert's target, a log row's `_ResourceId`) is
        this target's cluster: the whole id when the target has one, else the cluster's name."""
        rid = resource_id.strip().rstrip("/").lower()
        if not _KUSTO_ARM_ID.fullmatch(rid):
            return False
        if self.cluster_resource_id:
            return rid == self.cluster_resource_id.lower()
        name = cluster_name_of_url(self.cluster_url)
        return name is not None and rid.rsplit("/", 1)[-1] == name

    @property
    def key(self) -> str:
        """Stable id: also a valid Azure Table PartitionKey (no / \\ # ?)."""
        return self._key or f"{self.app}:{self.export_id}:{self.destination_id}"

    def at_destination(self, destination_id: str | None) -> Target:
        """This target, its destination re-created under `destination_id` (same key)."""
        if not destination_id or destination_id == self.destination_id:
            return self
        moved = self.model_copy(update={"destination_id": destination_id})
        moved._key = self.key
        return moved

    def __str__(self) -> str:
        return f"{self.key} → {self.cluster_url}/{self.database}.{self.table}"


class AppConfig(BaseModel):
    """An IoT Central app whose ADX destinations are discovered each cycle (HEALER_APPS).

    Anyone who may add a destination in IoT Central must not be able to point the healer at any
    database it administers: `clusters` (and optionally `databases`) say where this app's
    destinations may point; anything else is reported, never touched. `cluster_resource_ids`
    maps an allowed cluster URL to its resource id, which its discovered targets carry (needed
    only where the URL names no cluster)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str
    principal: PrincipalConfig | None = None
    iotc_resource_id: str | None = None
    role: Literal["ingestors", "admins"] = "admins"
    clusters: tuple[str, ...] = Field(min_length=1)
    databases: tuple[str, ...] | None = None
    cluster_resource_ids: dict[str, str] = Field(default_factory=dict)

    @field_validator("clusters")
    @classmethod
    def _clusters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(cluster_url(f"clusters[{n}]", url) for n, url in enumerate(value))

    @field_validator("cluster_resource_ids")
    @classmethod
    def _cluster_ids(cls, value: dict[str, str]) -> dict[str, str]:
        return {
            cluster_url("cluster_resource_ids", url): cluster_resource_id(f"cluster_resource_ids[{url!r}]", rid)
            for url, rid in value.items()
        }

    @model_validator(mode="after")
    def _ids_of_allowed_clusters(self) -> AppConfig:
        for url in self.cluster_resource_ids:
            if not any(same_cluster(url, c) for c in self.clusters):
                raise ValueError(f"cluster_resource_ids names {url!r}, which is not in clusters")
        return self

    def resource_id_of(self, cluster: str) -> str | None:
        """The resource id configured for an allowed cluster URL, if any."""
        return next((rid for url, rid in self.cluster_resource_ids.items() if same_cluster(url, cluster)), None)

    @field_validator("databases")
    @classmethod
    def _databases(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(kusto_names.entity_name("databases", d) for d in value)

    def allows(self, cluster: str, database: str) -> str:
        """Why a destination may not be acted on ("" if it may)."""
        if not any(same_cluster(cluster, c) for c in self.clusters):
            return f"cluster {cluster!r} is not in this app's allowed clusters"
        if self.databases is not None and database not in self.databases:
            return f"database {database!r} is not in this app's allowed databases"
        return ""

    _subdomain = field_validator("app")(Target._subdomain.__func__)  # type: ignore[attr-defined]
    _arm = field_validator("iotc_resource_id")(Target._arm.__func__)  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _who(self) -> AppConfig:
        if self.principal is None and self.iotc_resource_id is None:
            raise ValueError("an app needs principal or iotc_resource_id (to learn its managed identity)")
        return self


_TARGETS = TypeAdapter(list[Target])
_APPS = TypeAdapter(list[AppConfig])
T = TypeVar("T")


def _parse_array(text: str, source: str, adapter: TypeAdapter[list[T]], what: str) -> list[T]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(raw, list):
        raise ConfigError(f"{source} must be a JSON array of {what}, not {type(raw).__name__}")
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation(exc, source)) from exc


def parse_targets(text: str, source: str = "HEALER_TARGETS") -> list[Target]:
    targets = _parse_array(text, source, _TARGETS, "targets")
    keys = [t.key for t in targets]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigError(f"{source} names the same target twice: {', '.join(duplicates)}")
    return targets


def parse_apps(text: str, source: str = "HEALER_APPS") -> list[AppConfig]:
    return _parse_array(text, source, _APPS, "apps")


def load_targets(inline: str | None, file: str | None) -> list[Target]:
    if inline and file:
        raise ConfigError("set HEALER_TARGETS or HEALER_TARGETS_FILE, not both")
    if file:
        path = Path(file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"HEALER_TARGETS_FILE={file!r} cannot be read: {exc.strerror}") from exc
        return parse_targets(text, f"HEALER_TARGETS_FILE={file!r}")
    return parse_targets(inline or "[]")


SECRET_FIELDS = ("webhook",)


def describe_validation(exc: ValidationError, source: str) -> str:
    """One line per problem: where, the value, and why (pydantic's own words, minus noise)."""
    lines = []
    for error in exc.errors():
        location = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
        if error["type"] in ("value_error", "assertion_error") and "=" in message:
            shown = ""  # our own messages already name the value
        if any(secret in location.lower() for secret in SECRET_FIELDS):
            shown = ""  # a secret is never echoed
        lines.append(f"{source}{location and ' ' + location}: {message}{shown}")
    return "; ".join(lines)
