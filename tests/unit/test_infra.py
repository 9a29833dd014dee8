"""Deployment files: Bicep parses (the grammar tree-sitter-language-pack ships), parameters are
declared where they are used, role ids are the documented built-in ones, nothing secret is an
output, azure.yaml / host.json / the workflow are well-formed, and the package leaves out what
must never deploy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.bicep_tree import BUILTIN_ROLES, INFRA, children, text, tree
from tests.support.helpers import ROOT
from tools.package import package_files

BICEP = sorted(INFRA.rglob("*.bicep"))


# GUIDs in the Bicep that are not role definitions.
NOT_ROLES = {"461e8683-5575-4561-ac7f-899cc907d62a": "the action groups application (an app id)"}


def params(path: Path) -> dict[str, bool]:
    """Declared parameters → whether they have a default."""
    found = {}
    for node in children(tree(path).root_node, "parameter_declaration"):
        name = text(path, children(node, "identifier")[0])
        found[name] = any(c.type == "=" for c in node.children)
    return found


def module_calls(path: Path) -> list[tuple[Path, set[str]]]:
    calls = []
    for node in children(tree(path).root_node, "module_declaration"):
        target = (path.parent / text(path, children(node, "string")[0]).strip("'")).resolve()
        body = [n for n in _walk(node) if n.type == "object_property" and text(path, n.children[0]) == "params"]
        keys = {text(path, p.children[0]) for p in body[0].children[2].children if p.type == "object_property"}
        calls.append((target, keys))
    return calls


def _walk(node: Any) -> list[Any]:
    out = [node]
    for child in node.children:
        out.extend(_walk(child))
    return out


def test_there_is_an_azd_layout() -> None:
    assert (INFRA / "main.bicep").exists() and (INFRA / "main.parameters.json").exists()
    assert len(BICEP) >= 8


@pytest.mark.parametrize("path", BICEP, ids=lambda p: p.name)
def test_bicep_parses_without_syntax_errors(path: Path) -> None:
    root = tree(path).root_node
    bad = [n for n in _walk(root) if n.type == "ERROR" or n.is_missing]
    assert not root.has_error and not bad, [(n.start_point, text(path, n)[:60]) for n in bad]


@pytest.mark.parametrize("path", BICEP, ids=lambda p: p.name)
def test_module_parameters_are_declared_and_required_ones_passed(path: Path) -> None:
    for target, keys in module_calls(path):
        assert target.exists(), target
        declared = params(target)
        assert keys <= set(declared), f"{path.name} passes undeclared {sorted(keys - set(declared))} to {target.name}"
        required = {name for name, has_default in declared.items() if not has_default}
        assert required <= keys, f"{path.name} does not pass {sorted(required - keys)} to {target.name}"


@pytest.mark.parametrize("path", BICEP, ids=lambda p: p.name)
def test_every_declared_parameter_is_used(path: Path) -> None:
    source = path.read_text()
    for name in params(path):
        uses = re.findall(rf"(?<![\w.']){re.escape(name)}(?![\w'])", source)
        assert len(uses) >= 2, f"{path.name}: parameter {name} is declared but never used"


def test_main_parameters_file_matches_main() -> None:
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = params(INFRA / "main.bicep")
    assert set(values) <= set(declared)
    assert {n for n, has_default in declared.items() if not has_default} <= set(values)


def test_role_definitions_are_documented_built_in_roles() -> None:
    used: dict[str, str] = {}
    for path in BICEP:
        for name, guid in re.findall(
            r"(\w+)\s*[:=]\s*'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", path.read_text()
        ):
            if guid not in NOT_ROLES:
                used[guid] = name
    assert used, "no role definitions found"
    for guid, name in used.items():
        assert guid in BUILTIN_ROLES, f"{name} = {guid} is not a documented built-in role"
        assert name.lower() == BUILTIN_ROLES[guid].replace(" ", "").lower(), f"{name} names {BUILTIN_ROLES[guid]}"
    # Least privilege: no Owner, Contributor or User Access Administrator anywhere.
    source = "".join(p.read_text() for p in BICEP)
    for broad in (
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    ):
        assert broad not in source


def test_adx_access_is_database_admin_on_named_databases_only() -> None:
    source = (INFRA / "modules" / "adx-access.bicep").read_text()
    assert "Microsoft.Kusto/clusters/databases/principalAssignments" in source
    assert "role: 'Admin'" in source and "clusters/principalAssignments" not in source


def test_nothing_secret_is_an_output() -> None:
    for path in BICEP:
        for node in children(tree(path).root_node, "output_declaration"):
            line = text(path, node)
            assert not re.search(r"(?i)key|secret|password|connectionstring|listkeys|sas", line), f"{path.name}: {line}"


def test_storage_is_identity_only() -> None:
    source = (INFRA / "modules" / "storage.bicep").read_text()
    assert "allowSharedKeyAccess: false" in source
    app = (INFRA / "modules" / "functionapp.bicep").read_text()
    assert "AzureWebJobsStorage__credential', value: 'managedidentity'" in app
    assert "FlexConsumption" in app and "version: '3.11'" in app


def test_azure_yaml() -> None:
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert spec["name"] == "iotc-adx-healer"
    assert spec["infra"]["provider"] == "bicep" and (ROOT / spec["infra"]["path"] / "main.bicep").exists()
    assert spec["services"]["healer"] == {"project": ".", "language": "python", "host": "function"}


def test_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    queues = host["extensions"]["queues"]
    assert isinstance(queues["maxDequeueCount"], int) and queues["maxDequeueCount"] >= 1
    assert queues["messageEncoding"] == "base64"
    assert re.fullmatch(r"\d\d:\d\d:\d\d", host["functionTimeout"])
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"


def test_workflow_tests_on_push_and_deploys_with_oidc_on_tags() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = workflow["jobs"]
    assert any("make test" in str(step.get("run", "")) for step in jobs["test"]["steps"])
    assert jobs["deploy"]["permissions"]["id-token"] == "write"
    assert "refs/tags/v" in jobs["deploy"]["if"]
    assert "secrets." not in json.dumps(workflow)


def test_the_package_leaves_out_what_must_not_deploy() -> None:
    files = package_files()
    for kept in ("function_app.py", "host.json", "requirements.txt", "shared/runs/engine.py"):
        assert kept in files
    for left_out in ("sandbox/", "tests/", "bench/", "tools/", "infra/", "hooks/", "node_modules/", ".venv/"):
        assert not [f for f in files if f.startswith(left_out)], left_out
    assert "requirements-dev.txt" not in files


def test_the_alert_webhook_is_secure_and_no_key_is_made() -> None:
    source = "".join(p.read_text() for p in BICEP)
    assert "functionKeys" not in source and "listKeys" not in source and "?code=" not in source
    alerts = (INFRA / "modules" / "alerts.bicep").read_text()
    assert "useAadAuth: true" in alerts and "identifierUri: webhookIdentifierUri" in alerts
    assert "skipQueryValidation: true" in alerts


def test_bicep_extensions_are_configured() -> None:
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    for path in BICEP:
        for name in re.findall(r"^extension (\w+)", path.read_text(), re.M):
            assert name in config["extensions"], f"{path.name} uses extension {name}, not in infra/bicepconfig.json"
            assert config["extensions"][name].startswith("br:mcr.microsoft.com/bicep/extensions/")


def test_the_failed_ingestion_alert_matches_every_access_refusal_per_cluster() -> None:
    from sandbox.drill import FAILED_INGESTION_ALERT_QUERY
    from shared.domain.diagnosis import PERMISSION_CODES

    source = (INFRA / "modules" / "alerts.bicep").read_text()
    query = re.search(r"query: '(FailedIngestion[^']*)'", source)
    assert query and query.group(1) == FAILED_INGESTION_ALERT_QUERY  # the drill's alert is this rule's
    codes = set(re.findall(r'"(\w+)"', query.group(1)))
    assert codes == {"Forbidden", "BadRequest_DatabaseAccessDenied", "BadRequest_TableAccessDenied"}
    assert codes <= PERMISSION_CODES
    assert "summarize" not in query.group(1)  # the rule counts; the query returns rows
    from tests.support.kusto_parser import parse_all

    assert [r.errors for r in parse_all([query.group(1)]) if not r.ok] == []
    rule = source[source.index("resource failedIngestion") :]
    dimensions = re.findall(r"\{ name: '(\w+)', operator: 'Include'", rule[: rule.index("failingPeriods")])
    assert dimensions == ["Database", "Table", "ErrorCode", "_ResourceId"]
    for dimension in dimensions:
        assert dimension in query.group(1).split("| project", 1)[1]
