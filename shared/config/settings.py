"""Typed settings, validated at start. Every error names the app setting and its value.

One `Settings` model, its fields declared by group (`settings_runs`, `settings_backfill`,
`settings_calls`, `settings_services`); what depends on several groups (the lease's margin over the
worst-case step) is checked here. The groups are listed in reverse: pydantic orders a model's
fields from its last base to its first, and that order is the configuration reference's.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config.settings_backfill import BackfillSettings
from shared.config.settings_calls import CallSettings
from shared.config.settings_runs import RunSettings
from shared.config.settings_services import ServiceSettings
from shared.domain.targets import AppConfig, ConfigError, Target, describe_validation, load_targets, parse_apps

# One renewal's storage round trip (the state store's timeout): part of the lease margin.
RENEWAL_S = 10


class Settings(ServiceSettings, CallSettings, BackfillSettings, RunSettings, BaseSettings):
    """All settings are app settings (environment variables) named HEALER_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="HEALER_", extra="ignore", frozen=True, populate_by_name=True)

    @property
    def worst_case_step_seconds(self) -> float:
        """The longest one side effect can take: its retry budget, then one last attempt that runs
        to its timeouts (a role change is a read and a command, each up to the server timeout plus
        the Kusto client's margin; an HTTP call connects and reads), plus one token request when
        the cached token has expired (connect and read). The storage round trip that renews the
        lease is not in it: the run checks what is left of the lease after renewing instead."""
        from shared.config.credentials import TOKEN_TIMEOUT_S
        from shared.config.timeouts import KUSTO_CLIENT_MARGIN_S

        kusto = self.kusto_retry_budget_seconds + 2 * (self.kusto_server_timeout_seconds + KUSTO_CLIENT_MARGIN_S)
        http = self.http_retry_budget_seconds + 2 * self.http_timeout_seconds
        return max(kusto, http) + 2 * TOKEN_TIMEOUT_S

    @property
    def lease_margin_seconds(self) -> float:
        """What the lease must hold beyond the worst-case step: the renewal's own storage round trip
        (RENEWAL_S) and the skew between the clock that set the lease and the clock that judges it,
        both ways."""
        return RENEWAL_S + 2 * self.clock_skew_seconds

    @property
    def act_window_seconds(self) -> float:
        """After the renewal that allowed it, how long an act may still land, seen from any clock."""
        late = self.act_lands_within_seconds
        return (2 * self.lease_seconds if late is None else late) + 2 * self.clock_skew_seconds

    @model_validator(mode="after")
    def _lease_outlasts_a_step(self) -> Settings:
        worst, margin = self.worst_case_step_seconds, self.lease_margin_seconds
        if self.lease_seconds < worst + margin:
            raise ValueError(
                f"HEALER_LEASE_SECONDS={self.lease_seconds} must exceed the worst-case step of {worst:.0f} s "
                f"by the margin of {margin:.0f} s ({RENEWAL_S} s for the renewal plus twice "
                f"HEALER_CLOCK_SKEW_SECONDS={self.clock_skew_seconds}): at least {worst + margin:.0f} s. "
                "The worst-case step is HEALER_KUSTO_RETRY_BUDGET_SECONDS plus twice "
                "HEALER_KUSTO_SERVER_TIMEOUT_SECONDS plus 60 s, or "
                "HEALER_HTTP_RETRY_BUDGET_SECONDS plus twice HEALER_HTTP_TIMEOUT_SECONDS, plus 20 s for a token; "
                "with less, every run would find less than a step of lease left and never act"
            )
        return self

    @cached_property
    def target_list(self) -> list[Target]:
        return load_targets(self.targets, self.targets_file)

    @cached_property
    def app_list(self) -> list[AppConfig]:
        return parse_apps(self.apps) if self.apps else []

    @property
    def observe_only(self) -> bool:
        return self.mode == "observe"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (plus overrides), with targets parsed; ConfigError if bad."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_env_names(describe_validation(exc, "HEALER_"))) from exc
    _ = settings.target_list  # parse now: a bad target must stop the start, not the first run
    _ = settings.app_list
    return settings


def _env_names(text: str) -> str:
    # describe_validation says "HEALER_ mode: …"; app settings are spelled HEALER_MODE.
    parts = []
    for part in text.split("; "):
        head, _, rest = part.partition(": ")
        prefix, _, field = head.partition(" ")
        parts.append(f"{prefix}{field.upper()}: {rest}" if field else rest if head == prefix else part)
    return "; ".join(parts)
