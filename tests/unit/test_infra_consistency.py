"""The deployment and the code agree: every `%NAME%` the triggers bind to is an app setting in the
Bicep and in local.settings.json.example (the host resolves them from app settings only); every
parameter azd feeds JSON is an array or object; and every app setting the code reads has one
default — in shared/config/settings.py, in the Bicep (literal or parameter default, and
main.parameters.json) and in docs/configuration.md (generated from shared/config/settings.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared.config.settings import Settings
from tests.support.helpers import ROOT

INFRA = ROOT / "infra"
FUNCTION_APP = (ROOT / "function_app.py").read_text()
MAIN = (INFRA / "main.bicep").read_text()
APP = (INFRA / "modules" / "functionapp.bicep").read_text()
PARAMETERS = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
REFERENCE = (ROOT / "docs" / "configuration.md").read_text()
# The two settings that carry JSON arrays: unset and `[]` mean the same.
JSON_SETTINGS = {"HEALER_TARGETS", "HEALER_APPS"}


def bound_names() -> set[str]:
    return set(re.findall(r"%([A-Za-z0-9_]+)%", FUNCTION_APP))


def bicep_app_settings() -> dict[str, str]:
    """App setting name → the Bicep expression of its value (functionapp.bicep)."""
    found = dict(re.findall(r"\{ name: '([^']+)', value: (.+?) \}\s*$", APP, re.M))
    assert len(found) >= 10, "functionapp.bicep app settings not found (format changed?)"
    return found


def main_params() -> dict[str, tuple[str, str | None]]:
    """main.bicep parameter → (type, default expression or None)."""
    return {name: (kind, default) for name, kind, default in re.findall(r"^param (\w+) (\w+)(?: = (.+))?$", MAIN, re.M)}


def module_args() -> dict[str, str]:
    """functionapp.bicep parameter → the expression main.bicep passes for it."""
    block = re.search(r"module functionApp 'modules/functionapp.bicep' = \{.*?params: \{(.*?)\n  \}", MAIN, re.S)
    assert block
    return dict(re.findall(r"^\s+(\w+): (.+)$", block.group(1), re.M))


def bicep_literal(expression: str) -> str | None:
    """The app-setting text of a Bicep literal ('x', 60, false, []), else None."""
    expression = expression.strip()
    if re.fullmatch(r"'[^'$]*'", expression):
        return expression[1:-1]
    if re.fullmatch(r"-?\d+|true|false", expression):
        return expression
    if re.fullmatch(r"\[\s*\]", expression):
        return "[]"
    return None


def azd_default(param: str) -> tuple[str, str | None]:
    """(environment variable, default) of `${VAR=default}` in main.parameters.json."""
    match = re.fullmatch(r"\$\{([A-Z0-9_]+)(?:=(.*))?\}", str(PARAMETERS[param]["value"]))
    assert match, f"main.parameters.json feeds {param} something other than one ${{VAR}}"
    return match.group(1), match.group(2)


def code_default(name: str) -> str | None:
    field = Settings.model_fields[name.removeprefix("HEALER_").lower()]
    default: Any = field.default
    if default is None:
        return "[]" if name in JSON_SETTINGS else None
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def reference_default(name: str) -> str | None:
    row = re.search(rf"^\|[^|\n]*`{name}`[^|\n]*\| ([^|]*) \|", REFERENCE, re.M)
    assert row, f"{name} has no row in docs/configuration.md's settings table"
    cell = row.group(1).strip()
    if cell in ("—", "-", ""):
        return "[]" if name in JSON_SETTINGS else None
    value = re.fullmatch(r"`([^`]*)`", cell)
    assert value, f"{name}: docs/configuration.md default {cell!r} is not one `value`"
    return value.group(1)


def settings_read_by_code() -> list[str]:
    return [f"HEALER_{name.upper()}" for name in Settings.model_fields]


def test_every_bound_name_is_an_app_setting_in_the_bicep_and_the_local_example() -> None:
    names = bound_names()
    assert names == {"HEALER_TIMER_SCHEDULE", "HEALER_QUEUE_NAME"}, names
    local = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    settings = bicep_app_settings()
    for name in names:
        assert name in settings, f"%{name}% is bound in function_app.py but not an app setting in functionapp.bicep"
        assert name in local, f"%{name}% is bound in function_app.py but not in local.settings.json.example"


def test_every_queue_or_timer_connection_is_configured_in_the_bicep() -> None:
    settings = bicep_app_settings()
    for connection in set(re.findall(r'connection="([^"]+)"', FUNCTION_APP)):
        service_uris = {f"{connection}__{s}ServiceUri" for s in ("blob", "queue", "table")}
        assert service_uris <= set(settings) and settings[f"{connection}__credential"] == "'managedidentity'"


def test_every_parameter_azd_feeds_json_is_an_array_or_object() -> None:
    params, args, settings = main_params(), module_args(), bicep_app_settings()
    for name in JSON_SETTINGS:
        expression = settings[name]
        inner = re.fullmatch(r"string\((\w+)\)", expression)
        assert inner, f"{name} must be string(<array parameter>) in functionapp.bicep, not {expression}"
        main_param = args[inner.group(1)]
        assert params[main_param][0] in ("array", "object"), f"{main_param} carries JSON: declare it array/object"
        variable, default = azd_default(main_param)
        assert variable == name and default == "[]"
    for param, (kind, default) in params.items():
        if param in PARAMETERS and default is not None and default.strip().startswith(("'[", "'{")):
            pytest.fail(f"{param} is a {kind} whose default is JSON text: declare it array/object")
    spec = (ROOT / "azure.yaml").read_text()
    assert re.search(r'azd: ">= 1\.23\.4"', spec), "azure.yaml must require an azd that encodes array parameters"


@pytest.mark.parametrize("name", settings_read_by_code())
def test_one_default_in_settings_bicep_and_the_reference(name: str) -> None:
    expected = code_default(name)
    assert reference_default(name) == expected, (
        f"{name}: docs/configuration.md default differs from shared/config/settings.py"
    )
    expression = bicep_app_settings().get(name)
    if expression is None:
        return  # not set by the Bicep: the code default applies in Azure too
    literal = bicep_literal(expression)
    if literal is not None:
        assert literal == expected, f"{name}: functionapp.bicep sets {literal!r}, the code default is {expected!r}"
        return
    inner = re.fullmatch(r"(?:string\()?(\w+)\)?", expression)
    main_expression = module_args().get(inner.group(1)) if inner else None
    params = main_params()
    if main_expression not in params:
        return  # computed at deployment (an identity's id, a workspace's id): no default to compare
    _, default = params[main_expression]
    assert default is not None, f"{main_expression} feeds {name} but has no default"
    # An empty app setting is an unset one (the settings map '' to None), so '' matches a None default.
    assert (bicep_literal(default) or None) == (expected or None), (
        f"{name}: main.bicep {main_expression} = {default}, code {expected!r}"
    )
    if main_expression in PARAMETERS:
        variable, fed = azd_default(main_expression)
        assert variable == name, f"main.parameters.json feeds {main_expression} from {variable}, not {name}"
        assert (fed or None) == (expected or None), f"{name}: main.parameters.json default {fed!r}, code {expected!r}"
