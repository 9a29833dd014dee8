"""`azd up`, twice, on paper: every resource the Bicep declares and every step its hooks take must
leave a second run with nothing to create and nothing to refuse.

A second ARM deployment PUTs every resource again under the same name: that is an update in place
when the name is the same as the first run's (so no name may come from a value that changes per
run: utcNow(), newGuid(), deployment()). The Microsoft Graph extension upserts an application by
its `uniqueName` and a service principal by its `appId`; a Graph app-role assignment is
create-only (a second deployment fails on it: microsoftgraph/msgraph-bicep-types#161), so it
belongs to a hook that looks first. A Microsoft-owned service principal is only referenced
(`existing`). The hooks themselves run twice against a stand-in in
tests/unit/test_provisioning_hooks.py (the second run writes nothing); here their wiring is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tree_sitter_language_pack import get_parser

from tests.support.bicep_types import source
from tests.support.helpers import ROOT

INFRA = ROOT / "infra"
BICEP = sorted(INFRA.rglob("*.bicep"))
# Values that differ from one deployment to the next.
PER_RUN = re.compile(r"\b(?:utcNow|newGuid)\s*\(|\bdeployment\s*\(\s*\)")
# Resource types a second deployment fails on when declared (not `existing`), and why.
CREATE_ONLY = {
    "Microsoft.Graph/appRoleAssignedTo": "a redeploy fails when it exists (msgraph-bicep-types#161)",
    "Microsoft.Graph/oauth2PermissionGrants": "a grant that exists is refused again",
}
# The key the Graph extension upserts each declarable Graph type by.
GRAPH_KEYS = {"Microsoft.Graph/applications": "uniqueName", "Microsoft.Graph/servicePrincipals": "appId"}


@dataclass(frozen=True)
class Declared:
    file: str
    symbol: str
    type_name: str
    existing: bool
    decorators: str
    text: str  # the whole declaration

    def where(self) -> str:
        return f"{self.file} {self.symbol} ({self.type_name})"

    def top_level(self, key: str) -> str | None:
        """The expression of a top-level property of the body (first occurrence, one line)."""
        match = re.search(rf"^  {re.escape(key)}: (.+)$", self.text, re.M)
        return match.group(1).strip() if match else None


def declared(path: Path, text: bytes | None = None) -> list[Declared]:
    data = source(path) if text is None else text
    root = get_parser("bicep").parse(data).root_node
    found: list[Declared] = []
    decorators = ""
    for node in root.children:
        if node.type == "decorators":
            decorators = data[node.start_byte : node.end_byte].decode()
            continue
        if node.type == "resource_declaration":
            symbol = next(c for c in node.children if c.type == "identifier")
            type_node = next(c for c in node.children if c.type == "string")
            found.append(
                Declared(
                    file=path.name,
                    symbol=data[symbol.start_byte : symbol.end_byte].decode(),
                    type_name=data[type_node.start_byte : type_node.end_byte].decode().strip("'").split("@")[0],
                    existing=any(c.type == "existing" for c in node.children),
                    decorators=decorators,
                    text=data[node.start_byte : node.end_byte].decode(),
                )
            )
        if node.type != "comment":
            decorators = ""
    return found


def problems_of(path: Path, text: bytes | None = None) -> list[str]:
    """Why a second deployment of this file would not be a no-op."""
    data = (source(path) if text is None else text).decode()
    found: list[str] = []
    per_run = PER_RUN.search(data)
    if per_run:
        found.append(f"{path.name}: {per_run.group(0)}… changes per run: no name may depend on it")
    resources = declared(path, text)
    applications = {r.symbol for r in resources if r.type_name == "Microsoft.Graph/applications" and not r.existing}
    for r in resources:
        if r.existing:
            continue
        if r.type_name in CREATE_ONLY:
            found.append(f"{r.where()}: create-only, {CREATE_ONLY[r.type_name]}; reference it `existing` or use a hook")
        if r.type_name.startswith("Microsoft.Graph/"):
            key = GRAPH_KEYS.get(r.type_name)
            if key is None and r.type_name not in CREATE_ONLY:
                found.append(f"{r.where()}: no known upsert key for this Graph type")
            elif key is not None and r.top_level(key) is None:
                found.append(f"{r.where()}: without {key} every deployment creates another one")
        if (
            r.type_name == "Microsoft.Graph/applications"
            and "deployer().objectId" not in (r.top_level("owners") or "") + r.text
        ):
            found.append(f"{r.where()}: the deployer must own it (secure webhooks: AadWebhookResourceNotOwnedByCaller)")
        if r.type_name == "Microsoft.Graph/servicePrincipals":
            app_id = r.top_level("appId") or ""
            owner = app_id.split(".", 1)[0]
            if not (app_id.endswith(".appId") and owner in applications):
                found.append(
                    f"{r.where()}: appId {app_id} is not an application this file declares: reference it `existing`"
                )
        if r.type_name == "Microsoft.Authorization/roleAssignments" and not (r.top_level("name") or "").startswith(
            "guid("
        ):
            found.append(f"{r.where()}: a role assignment's name must be guid(...) of stable inputs")
        looped = "[for " in r.text
        if r.type_name.endswith("/principalAssignments") and looped and "@batchSize(1)" not in r.decorators:
            found.append(f"{r.where()}: a cluster takes one principal change at a time: @batchSize(1)")
    return found


def test_every_resource_survives_a_second_deployment() -> None:
    problems = [p for path in BICEP for p in problems_of(path)]
    assert problems == []
    kinds = {r.type_name for path in BICEP for r in declared(path)}
    assert {"Microsoft.Graph/applications", "Microsoft.Graph/servicePrincipals"} <= kinds  # the walk sees them


def test_the_graph_declarations_as_the_hooks_need_them() -> None:
    resources = {r.symbol: r for r in declared(INFRA / "modules" / "webhook-app.bicep")}
    assert resources["actionGroupsPrincipal"].existing  # Microsoft's, created by the preprovision hook
    assert resources["actionGroupsPrincipal"].top_level("appId") == "actionGroupsAppId"
    assert "requestedAccessTokenVersion: 2" in resources["application"].text
    assert not any(r.type_name in CREATE_ONLY for r in resources.values())


def test_the_hook_names_kusto_assignments_as_the_template_does() -> None:
    (admins,) = [
        r for r in declared(INFRA / "modules" / "adx-access.bicep") if not r.existing and "principal" in r.text
    ]
    assert "guid(cluster.id, db, healerClientId)" in (admins.top_level("name") or "")
    assert "(grantRoles ? databases : [])" in admins.text  # the hook grants them unless asked otherwise
    hooks = (ROOT / "hooks" / "provisioning.py").read_text()
    assert "arm_guid(cluster_id, database, client_id)" in hooks


def test_azd_runs_the_hooks_that_are_walked_twice() -> None:
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text())
    hooks = spec["hooks"]
    assert set(hooks) == {"preprovision", "postprovision"}
    for name, hook in hooks.items():
        script = ROOT / hook["run"]
        assert hook["kind"] == "python" and script.exists()
        assert f"from hooks.provisioning import {name}, run" in script.read_text()
    requirements = (ROOT / "hooks" / "requirements.txt").read_text()
    assert re.search(r"^azure-core==", requirements, re.M) and re.search(r"^azure-identity==", requirements, re.M)
    main = (INFRA / "main.bicep").read_text()
    # Every environment value the postprovision hook reads is an output of the deployment or an input.
    read = set(re.findall(r'_required\(env, "(\w+)"\)', (ROOT / "hooks" / "provisioning.py").read_text()))
    outputs = set(re.findall(r"^output (\w+) ", main, re.M))
    assert read and read <= outputs, read - outputs


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "identity.bicep",
            "name: name\n",
            "name: '${name}-${uniqueString(utcNow())}'\n",
            "utcNow(… changes per run",
        ),
        ("webhook-app.bicep", "var roleId = guid(uniqueName, roleName)", "var roleId = newGuid()", "newGuid("),
        (
            "webhook-app.bicep",
            "resource actionGroupsPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {",
            "resource actionGroupsPrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {",
            "is not an application this file declares",
        ),
        (
            "webhook-app.bicep",
            "output objectId",
            "resource grant 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {\n  appRoleId: roleId\n"
            "  principalId: actionGroupsPrincipal.id\n  resourceId: webhookPrincipal.id\n}\n\noutput objectId",
            "create-only",
        ),
        ("webhook-app.bicep", "  uniqueName: uniqueName\n", "", "without uniqueName"),
        (
            "webhook-app.bicep",
            "    relationships: [deployer().objectId]\n  }\n  // M",
            "    relationships: []\n  }\n  // M",
            "own",
        ),
        ("adx-access.bicep", "@batchSize(1)\n", "", "@batchSize(1)"),
        (
            "storage.bicep",
            "name: guid(account.id, principalId, role.value)",
            "name: '${principalId}-${role.key}'",
            "guid(...)",
        ),
    ],
)
def test_a_copy_that_a_second_deployment_would_trip_on_is_caught(file: str, old: str, new: str, expected: str) -> None:
    path = next(p for p in BICEP if p.name == file)
    text = source(path).decode()
    assert old in text, f"{file} no longer contains {old!r}: update this test"
    problems = problems_of(path, text.replace(old, new, 1).encode())
    assert any(expected in p for p in problems), problems
