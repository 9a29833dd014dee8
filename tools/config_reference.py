"""Render the configuration reference (docs/configuration.md) from the settings model.

`python -m tools.config_reference > docs/configuration.md` writes it; `--check` exits 1 with a
diff when the file differs from what the settings model (shared/config/settings.py) says (a unit test does the same).
"""

from __future__ import annotations

import argparse
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
PATH = ROOT / "docs" / "configuration.md"

HEAD = """\
# Configuration

<!-- Generated from shared/config/settings.py (its fields in shared/settings_*.py) by
`python -m tools.config_reference > docs/configuration.md`; edit the field descriptions there,
not this file (tests/unit/test_config_reference.py keeps them equal). -->

All settings are app settings (environment variables). They are validated at start; an error
names the setting and its value (`HEALER_MODE: Input should be 'observe' or 'enforce' (got 'fix')`).
A setting whose default is — is unset unless configured.

| setting | default | type | bounds | meaning |
| --- | --- | --- | --- | --- |
"""

# Read outside shared/config/settings.py (by the Azure Monitor distro), so not in the model.
OTHER = (
    "\nRead elsewhere:\n\n| setting | default | meaning |\n| --- | --- | --- |\n"
    "| `APPLICATIONINSIGHTS_CONNECTION_STRING` | — | where telemetry goes (OpenTelemetry, Azure Monitor distro); "
    "unset: nothing is exported |\n"
)

TARGET = """\

## A target

One element of `HEALER_TARGETS`:

```json
{
  "app": "contoso",
  "export_id": "export-1",
  "destination_id": "adx-1",
  "cluster_url": "https://mycluster.westeurope.kusto.windows.net",
  "database": "devicedata",
  "table": "DeviceTelemetry",
  "principal": {"object_id": "<guid>", "client_id": "<guid>", "tenant_id": "<guid>"},
  "role": "admins",
  "iotc_resource_id": "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.IoTCentral/iotApps/contoso",
  "cluster_resource_id": "/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Kusto/clusters/mycluster"
}
```

`principal` needs `object_id` or `client_id` (both let the healer recognise a rotated identity
from error messages alone, and match listings that name either id); `role` is `admins` (the
default: what IoT Central's documentation prescribes) or `ingestors` (the minimum that ingests, the
forum's advice); `iotc_resource_id` is optional and lets the healer ask ARM which identity IoT
Central has now. A destination that authorizes as a service principal is diagnosed as that app,
whatever `principal` says. `cluster_resource_id` is optional too: alerts and `FailedIngestion`
rows name their cluster by resource id (`_ResourceId`), and a target's cluster is that id or else
the first label of its https `cluster_url` (an id that names another cluster than the URL is
refused). A URL that names no cluster (plain http on loopback, the sandbox) matches no alert or
log row naming a cluster unless the id is set; nothing is exempt.
"""


def names(name: str, field: FieldInfo, prefix: str) -> list[str]:
    """The app-setting names a field is read from: HEALER_<FIELD>, or its aliases."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    return [f"{prefix}{name.upper()}"]


def value_text(value: object) -> str:
    """A value as it is written in an app setting."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def type_text(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return type_text(args[0])
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{value_text(a)}`" for a in typing.get_args(annotation))
    if annotation is bool:
        return "`true` or `false`"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "number"
    if annotation is SecretStr:
        return "text (secret)"
    if annotation is str:
        return "text"
    raise ValueError(f"no rendering for the type {annotation!r}: add one to tools/config_reference.py")


def bounds_text(field: FieldInfo) -> str:
    parts = []
    limits = {
        a: getattr(r, a) for r in field.metadata for a in ("gt", "ge", "lt", "le") if getattr(r, a, None) is not None
    }
    if limits.keys() == {"ge", "le"}:
        parts.append(f"{value_text(limits['ge'])}-{value_text(limits['le'])}")
        limits = {}
    for attribute, sign in (("gt", "> "), ("ge", "≥ "), ("lt", "< "), ("le", "≤ ")):
        if attribute in limits:
            parts.append(f"{sign}{value_text(limits[attribute])}")
    for rule in field.metadata:
        pattern = getattr(rule, "pattern", None)
        if pattern is not None:
            parts.append(f"matches `{pattern}`")
    return ", ".join(parts) or "—"


def row(name: str, field: FieldInfo, prefix: str) -> str:
    if not field.description:
        raise ValueError(f"{prefix}{name.upper()} has no description in shared/settings_*.py")
    for text in (field.description, str(field.default)):
        if "|" in text or "\n" in text:
            raise ValueError(f"{prefix}{name.upper()}: a table cell may not hold '|' or a line break")
    setting = " / ".join(f"`{n}`" for n in names(name, field, prefix))
    default = "—" if field.default is None else f"`{value_text(field.default)}`"
    return f"| {setting} | {default} | {type_text(field.annotation)} | {bounds_text(field)} | {field.description} |"


def render() -> str:
    from shared.config.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    rows = [row(name, field, prefix) for name, field in Settings.model_fields.items()]
    return HEAD + "\n".join(rows) + "\n" + OTHER + TARGET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.config_reference", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help=f"compare with {PATH.relative_to(ROOT)}; exit 1 if not equal"
    )
    args = parser.parse_args(argv)
    text = render()
    if not args.check:
        sys.stdout.write(text)
        return 0
    current = PATH.read_text() if PATH.exists() else ""
    if current == text:
        return 0
    sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(PATH), "generated"))
    print(f"\n{PATH.relative_to(ROOT)} is out of date: python -m tools.config_reference > {PATH.relative_to(ROOT)}")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
