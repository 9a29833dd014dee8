"""Rules that hold the parts together: the rate limit, shared/ free of the Functions runtime, and
the deployment docs (docs/deploy.md, docs/configuration.md) in step with the deployment files."""

from __future__ import annotations

import json
import re

from shared.adapters.iotcentral_transport import REQUESTS_PER_SECOND, RateLimiter
from tests.support.helpers import ROOT


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_iot_central_rate_limit_is_20_requests_per_second_per_app() -> None:
    fake = FakeTime()
    limiter = RateLimiter(REQUESTS_PER_SECOND, fake.clock, fake.sleep)
    for _ in range(41):
        limiter.acquire("contoso")
    assert fake.now >= 2.0  # 41 requests need at least two seconds
    before = fake.now
    limiter.acquire("fabrikam")  # another app has its own budget
    assert fake.now == before


def test_shared_never_imports_the_functions_runtime() -> None:
    for path in (ROOT / "shared").glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+azure\.functions", path.read_text(), re.M), path.name
    wiring = (ROOT / "function_app.py").read_text()
    imports = re.findall(r"^(?:from|import)\s+(\S+)(?:\s+import\s+(.+))?$", wiring, re.M)
    assert [i for i in imports if i[0].startswith("shared")] == [("shared", "entrypoints")]


def test_deploy_docs_and_permissions_match_the_bicep() -> None:
    readme = (ROOT / "docs" / "deploy.md").read_text()
    documented = readme + (ROOT / "docs" / "configuration.md").read_text()
    parameters = (ROOT / "infra" / "main.parameters.json").read_text()
    for variable in set(re.findall(r"\$\{([A-Z_]+)", parameters)) - {"AZURE_ENV_NAME", "AZURE_LOCATION"}:
        assert variable in documented, (
            f"{variable} (infra/main.parameters.json) is in neither docs/deploy.md nor docs/configuration.md"
        )
    from tests.support.bicep_tree import BUILTIN_ROLES

    bicep = "".join(p.read_text() for p in (ROOT / "infra").rglob("*.bicep"))
    for guid, name in BUILTIN_ROLES.items():
        if guid in bicep:
            words = name.replace("Storage ", "").split()
            assert all(w in readme for w in words), f"role {name} is granted by the Bicep but not in docs/deploy.md"
    assert "Database **Admin**" in readme and "principalAssignments" in bicep
    assert json.loads(parameters)["parameters"]


def test_settings_defaults_in_the_configuration_reference_are_the_code_defaults() -> None:
    from shared.config.settings import Settings

    readme = (ROOT / "docs" / "configuration.md").read_text()
    for name, field in Settings.model_fields.items():
        row = re.search(rf"^\|[^|]*`HEALER_{name.upper()}`[^|]*\| ([^|]*) \|", readme, re.M)
        assert row, name
        default = field.default
        if isinstance(default, bool):
            default = str(default).lower()
        elif isinstance(default, float) and default.is_integer():
            default = int(default)
        if default is not None:
            assert f"`{default}`" in row.group(1), f"HEALER_{name.upper()}: docs/configuration.md says {row.group(1)}"
