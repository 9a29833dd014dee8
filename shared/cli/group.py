"""Operator CLI: `python -m shared <command>`. The same steps the Function App runs, from a terminal.

The group and its options live here; the commands in `diagnose` (diagnose, checklist, plan), `heal`
(heal, backfill, resume), `history` (status, history, report), `doctor` and `iotc_access`; pointing
the settings at the local sandbox in `sandbox`.

Exit codes (stable, for scripts):
  0  done; the target is healthy, or nothing needed doing
  1  unexpected failure (a service could not be reached, ...)
  2  usage or configuration error
  3  a problem was found (diagnose, plan, or a heal dry run that would change something)
  4  the target is escalated, or the remediation did not heal it
  5  not queued: a remediation is in progress, queued, or the target is cooling down
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PROBLEM, EXIT_ESCALATED, EXIT_NOT_QUEUED = 0, 1, 2, 3, 4, 5


class Ctx:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._healer: Any = None

    def healer(self) -> Any:
        if self._healer is None:
            from shared.config.settings import load_settings
            from shared.services import build_healer

            settings = load_settings()
            self._healer = build_healer(settings)
        return self._healer

    def target(self, key: str) -> Any:
        from shared.runs import UnknownTarget

        try:
            return self.healer().target(key)
        except UnknownTarget as exc:
            raise click.UsageError(str(exc)) from exc

    def emit(self, data: Any, render: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            render()


def _console() -> Any:
    from rich.console import Console

    return Console()


def _load_settings_file(path: Path) -> None:
    """`local.settings.json` style: {"Values": {...}}; values already in the environment win."""
    data = json.loads(path.read_text())
    values = data.get("Values", data)
    if not isinstance(values, dict):
        raise click.BadParameter(f"{path} has no Values object", param_hint="--settings")
    for name, value in values.items():
        os.environ.setdefault(str(name), str(value))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--sandbox", is_flag=True, help="Use the local sandbox started by `make sandbox` (.sandbox/endpoints.json)."
)
@click.option(
    "--sandbox-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".sandbox"),
    show_default=True,
    help="Where the sandbox wrote endpoints.json.",
)
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A local.settings.json whose Values are used as app settings.",
)
@click.pass_context
def main(ctx: click.Context, as_json: bool, sandbox: bool, sandbox_dir: Path, settings_file: Path | None) -> None:
    """iotc-adx-healer: diagnose and heal IoT Central exports into Azure Data Explorer.

    Settings come from the environment (the Function App's app settings: HEALER_*,
    AzureWebJobsStorage) or --settings. In Azure the credential is DefaultAzureCredential
    (your `az login`); with --sandbox it is the sandbox's managed identity.

    Exit codes: 0 ok, 1 failure, 2 usage/configuration, 3 problem found, 4 escalated or not
    healed, 5 not queued (in progress, queued or cooling down).
    """
    if settings_file:
        _load_settings_file(settings_file)
    if sandbox:
        from shared.cli.sandbox import use_sandbox

        use_sandbox(sandbox_dir)
    ctx.obj = Ctx(as_json)


def run() -> None:
    from shared.domain.targets import ConfigError

    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.Abort:
        sys.exit(EXIT_FAILED)
    except ConfigError as exc:
        click.echo(f"Configuration error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # a clear line, not a stack trace
        click.echo(f"Failed: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_FAILED)
