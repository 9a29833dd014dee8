"""Request bodies of the HTTP routes as pydantic models (imported when a request needs them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from shared.domain.messages import TARGET_KEY
from shared.http.api import ApiError, json_object


class HealRequest(BaseModel):
    """Body of POST /api/heal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(max_length=300)
    dry_run: StrictBool = False
    backfill: Literal[True] | dict[str, object] | None = None  # a backfill alone (see shared/backfill)

    @field_validator("target")
    @classmethod
    def _key(cls, value: str) -> str:
        if not TARGET_KEY.fullmatch(value):
            raise ValueError(f"target={value!r} must be '<app>:<export id>:<destination id>'")
        return value

    @field_validator("backfill", mode="before")
    @classmethod
    def _backfill(cls, value: object) -> object:
        if value is not None and not (value is True or isinstance(value, dict)):
            raise ValueError(f'backfill={value!r} must be true or {{"from": …, "to": …}}')
        return value


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], body: bytes, headers: Mapping[str, str]) -> M:
    """A JSON body validated by `model`; a 4xx naming the first bad field otherwise."""
    from shared.domain.targets import describe_validation

    raw = json_object(body, headers)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or "body"
        if first["type"] == "extra_forbidden":
            unknown = sorted({str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"})
            raise ApiError(400, "InvalidBody", f"unknown field(s): {', '.join(unknown)}", unknown[0]) from exc
        raise ApiError(400, "InvalidBody", describe_validation(exc, "body"), where) from exc
