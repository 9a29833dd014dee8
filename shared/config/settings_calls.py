"""Settings of the remedies and of every call they make: the remedies tried and in which order,
and the retry budgets and timeouts of ADX and HTTP calls. A group of `shared.config.settings.Settings`."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

REMEDIES = ("recreate-destination", "refresh")


class CallSettings(BaseModel):
    """The remedies tried, and the time bounds of each call to a service."""

    # For a principal that holds the right role yet is denied: the remedies in the order tried.
    # Microsoft's documented one (re-create the destination) first, then the forum's refresh.
    # Comma-separated, e.g. "refresh" to use the forum's drop/wait/re-add only.
    remedy_order: str = Field(
        "recreate-destination,refresh",
        description="for a principal that holds its role yet is denied: the remedies tried, in order, "
        "comma-separated, each once (`recreate-destination`, `refresh`)",
    )
    # How long an identity Entra does not know yet is retried (replication takes minutes).
    unknown_identity_retry_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="how long an `.add` of an identity Entra does not know yet is retried before escalating",
    )
    kusto_retry_budget_seconds: float = Field(
        60.0,
        gt=0,
        le=600,
        description="time budget for retrying one ADX call (throttling, 5xx, network); no retry sleeps past it",
    )
    kusto_server_timeout_seconds: int = Field(
        60,
        ge=5,
        le=3600,
        description="`servertimeout` request property of every ADX call; the client waits this plus 30 s",
    )
    http_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="connect and read timeout of every IoT Central, ARM and Log Analytics request"
    )
    http_retry_budget_seconds: float = Field(
        60.0,
        gt=0,
        le=600,
        description="time budget for retrying one IoT Central, ARM or Log Analytics call (Retry-After is cut to "
        "what is left)",
    )

    @field_validator("remedy_order")
    @classmethod
    def _remedies(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in REMEDIES]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(f"must list remedies from {', '.join(REMEDIES)}, each once, comma-separated")
        return ",".join(names)

    @property
    def remedies(self) -> tuple[str, ...]:
        return tuple(self.remedy_order.split(","))
