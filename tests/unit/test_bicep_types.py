"""Every Bicep resource body checked offline against Microsoft's resource type definitions
(`../shared/fixtures/bicep-types`, bicep-types-az), and proof that the check rejects broken copies."""

from __future__ import annotations

from functools import cache

import pytest

from tests.support.bicep_types import Types, check_file, resources
from tests.support.helpers import FIXTURES, ROOT

INFRA = ROOT / "infra"
BICEP = sorted(INFRA.rglob("*.bicep"))


@cache
def types() -> Types:
    folder = FIXTURES / "bicep-types"
    if not folder.is_dir():
        pytest.skip(f"resource type definitions not found at {folder} (set HEALER_FIXTURES)")
    return Types(folder)


def test_every_resource_body_matches_microsofts_definitions() -> None:
    problems: list[str] = []
    missing: set[str] = set()
    checked = 0
    for path in BICEP:
        found, absent = check_file(path, types())
        problems += found
        missing |= absent
        checked += sum(1 for _ in resources(path, existing=True))
    assert checked >= 25, checked
    assert not problems, "\n".join(problems)
    # No exception list: every resource type in infra/ has a definition among the fixtures.
    assert not missing, f"types without a definition: {sorted(missing)}"


def broken(file: str, old: str, new: str) -> tuple[list[str], set[str]]:
    path = next(p for p in BICEP if p.name == file)
    text = path.read_text()
    assert old in text, f"{file} no longer contains {old!r}: update this test"
    return check_file(path, types(), text.replace(old, new, 1).encode())


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        # a misspelled property
        ("functionapp.bicep", "httpsOnly: true", "httpsOnli: true", "properties.httpsOnli: unknown property"),
        ("storage.bicep", "allowSharedKeyAccess: false", "allowSharedKeysAccess: false", "allowSharedKeysAccess"),
        # a property in the wrong case
        ("functionapp.bicep", "httpsOnly: true", "HttpsOnly: true", "wrong case: the property is 'httpsOnly'"),
        ("monitoring.bicep", "DisableLocalAuth: true", "disableLocalAuth: true", "'DisableLocalAuth'"),
        # a string where an int belongs, and the other way round
        (
            "functionapp.bicep",
            "instanceMemoryMB: 2048",
            "instanceMemoryMB: '2048'",
            'scaleAndConcurrency.instanceMemoryMB: "2048" does not match int',
        ),
        ("functionapp.bicep", "tier: 'FlexConsumption'", "tier: 1", "sku.tier: 1 does not match string"),
        # a bool written as a string
        ("alerts.bicep", "skipQueryValidation: true", "skipQueryValidation: 'true'", "skipQueryValidation"),
        ("alerts.bicep", "useAadAuth: true", "useAadAuth: 'yes'", "webhookReceivers[0].useAadAuth"),
        # a read-only property set
        (
            "functionapp.bicep",
            "httpsOnly: true",
            "httpsOnly: true\n    defaultHostName: 'x.azurewebsites.net'",
            "properties.defaultHostName: is read-only",
        ),
        (
            "storage.bicep",
            "sku: { name: 'Standard_LRS' }",
            "sku: { name: 'Standard_LRS', tier: 'Standard' }",
            "sku.tier",
        ),
        # an unknown API version
        ("functionapp.bicep", "sites@2024-04-01' = {", "sites@2024-04-02' = {", "sites@2024-04-02 is not defined"),
        ("alerts.bicep", "actionGroups@2023-01-01", "actionGroups@2019-06-01", "actionGroups@2019-06-01"),
        # a value outside the allowed ones (closed set, length)
        (
            "alerts.bicep",
            "'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'",
            "'odata.type': 'Microsoft.Azure.Monitor.SingleResourceCriteria'",
            "criteria.odata.type: 'Microsoft.Azure.Monitor.SingleResourceCriteria' is not one of",
        ),
        ("alerts.bicep", "groupShortName: 'iotchealer'", "groupShortName: 'iotc-adx-healer'", "groupShortName"),
        # a required property missing
        ("identity.bicep", "  location: location\n", "", "location: is required but not set"),
        ("storage.bicep", "sku: { name: 'Standard_LRS' }", "sku: {}", "sku.name: is required but not set"),
    ],
)
def test_broken_copies_are_rejected_naming_the_path(file: str, old: str, new: str, expected: str) -> None:
    problems, _ = broken(file, old, new)
    assert any(expected in p for p in problems), problems


def test_a_type_without_a_definition_is_reported_by_name() -> None:
    key_resource = (
        "\nresource key 'Microsoft.Web/sites/host/functionKeys@2024-04-01' = {\n"
        "  name: 'x/default/k'\n  properties: { name: 'k' }\n}\n"
    )
    problems, missing = broken("functionapp.bicep", "output name string", key_resource + "output name string")
    assert missing == {"Microsoft.Web/sites/host/functionKeys"} and not problems


def test_existing_resources_are_checked_for_their_type_and_identifiers() -> None:
    problems, _ = broken("functionapp.bicep", "name: appInsightsName\n}", "name: appInsightsName\n  bogus: 1\n}")
    assert any("bogus" in p and "an existing resource is named by name" in p for p in problems), problems
    problems, _ = broken("webhook-app.bicep", "servicePrincipals@v1.0' existing", "servicePrincipals@v9.9' existing")
    assert any("servicePrincipals@v9.9 is not defined" in p for p in problems), problems
    problems, _ = broken("webhook-app.bicep", "  appId: actionGroupsAppId\n", "  displayName: 'x'\n")
    assert any("named by appId" in p for p in problems), problems
    problems, _ = broken("storage.bicep", "  parent: account\n  name: 'default'", "  parent: account\n  nam: 'default'")
    assert any("blobServices.nam" in p for p in problems) and any("name: is required" in p for p in problems)


def test_conditional_and_looped_bodies_are_checked() -> None:
    problems, _ = broken("adx-access.bicep", "principalType: 'App'", "principalTyp: 'App'")  # [for …]
    assert any("principalTyp" in p for p in problems)
    problems, _ = broken("adx-access.bicep", "logAnalyticsDestinationType: 'Dedicated'", "logAnalyticsDestination: 'x'")
    assert any("logAnalyticsDestination" in p for p in problems)  # if (…)
