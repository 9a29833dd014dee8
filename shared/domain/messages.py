"""The remediation queue's message schema. Anything that does not fit is refused, never acted on."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.domain.targets import describe_validation

MAX_MESSAGE_BYTES = 16 * 1024
TARGET_KEY = re.compile(r"[a-z0-9-]+:[A-Za-z0-9_\-]+:[A-Za-z0-9_\-]+")
MessageStep = Literal["start", "readd", "verify", "backfill"]
Trigger = Literal["timer", "alert", "http", "sweep", "cli", "retry"]


class MalformedMessage(ValueError):
    """A queue message that must be dead-lettered; the text names the field and the value."""


MAX_EVIDENCE = 5


class EvidenceItem(BaseModel):
    """A failure signal that started the run, carried with it (IoT Central is read afresh instead)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["loganalytics", "alert"]
    code: str = Field("", max_length=100)
    message: str = Field("", max_length=500)


class RemediationMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    target: str = Field(min_length=5, max_length=300)
    run_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    step: MessageStep = "start"
    trigger: Trigger = "timer"
    correlation_id: str = Field(pattern=r"^[A-Za-z0-9._:\-]{1,128}$")
    reason: str = Field("", max_length=500)
    action_at: datetime | None = None
    verify_until: datetime | None = None
    # step "backfill": the message-time window and whether to ingest or only plan
    window_start: datetime | None = None
    window_end: datetime | None = None
    backfill_mode: Literal["plan", "on"] | None = None
    evidence: tuple[EvidenceItem, ...] = Field(default=(), max_length=MAX_EVIDENCE)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if not TARGET_KEY.fullmatch(value):
            raise ValueError(f"target={value!r} is not <app>:<export id>:<destination id>")
        return value

    @field_validator("action_at", "verify_until", "window_start", "window_end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone")
        return value.astimezone(UTC) if value else None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    def next(self, step: MessageStep, **changes: object) -> RemediationMessage:
        return self.model_copy(update={"step": step, **changes})


def new_run(
    target: str,
    trigger: Trigger,
    correlation_id: str | None = None,
    reason: str = "",
    evidence: tuple[EvidenceItem, ...] = (),
) -> RemediationMessage:
    run_id = uuid.uuid4().hex
    return RemediationMessage(
        target=target,
        run_id=run_id,
        trigger=trigger,
        correlation_id=correlation_id or run_id,
        reason=reason,
        evidence=evidence[:MAX_EVIDENCE],
    )


def carried(items: list[tuple[str, str, str]]) -> tuple[EvidenceItem, ...]:
    """(source, code, message) → what travels with a run: log and alert signals only, bounded."""
    kept: list[EvidenceItem] = []
    for source, code, message in items:
        if source in ("loganalytics", "alert") and len(kept) < MAX_EVIDENCE:
            item = EvidenceItem(source=source, code=code[:100], message=message[:500])  # type: ignore[arg-type]
            if item not in kept:
                kept.append(item)
    return tuple(kept)


def parse_message(body: str | bytes) -> RemediationMessage:
    if isinstance(body, bytes):
        if len(body) > MAX_MESSAGE_BYTES:
            raise MalformedMessage(f"message is {len(body)} bytes; at most {MAX_MESSAGE_BYTES} are accepted")
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage("message is not UTF-8") from exc
    if len(body) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message is {len(body)} characters; at most {MAX_MESSAGE_BYTES} are accepted")
    try:
        raw = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedMessage(f"message is not JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(raw, dict):
        raise MalformedMessage(f"message must be a JSON object, not {type(raw).__name__}")
    try:
        return RemediationMessage.model_validate(raw)
    except ValidationError as exc:
        raise MalformedMessage(describe_validation(exc, "message")) from exc
