"""docs/configuration.md is generated from the settings model: it may not drift from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config.settings import Settings
from tests.support.helpers import ROOT
from tools import config_reference


def test_the_configuration_reference_is_what_the_settings_model_generates() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == config_reference.render(), (
        "docs/configuration.md differs from shared/config/settings.py: "
        "python -m tools.config_reference > docs/configuration.md"
    )


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not missing, f"settings without description= in shared/settings_*.py: {missing}"


def test_the_check_fails_on_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(config_reference.render().replace("`observe` plans", "`observe` repairs"))
    monkeypatch.setattr(config_reference, "PATH", stale)
    monkeypatch.setattr(config_reference, "ROOT", stale.parent)
    assert config_reference.main(["--check"]) == 1
    assert "`observe` repairs" in capsys.readouterr().out
    stale.write_text(config_reference.render())
    assert config_reference.main(["--check"]) == 0


def test_a_row_shows_names_aliases_default_type_and_bounds() -> None:
    text = config_reference.render()
    assert "| `HEALER_REFRESH_WAIT_SECONDS` | `60` | integer | 0-3600 | wait between drop and re-add |" in text
    assert "| `HEALER_STORAGE_CONNECTION_STRING` / `AzureWebJobsStorage` | — | text | — |" in text
    assert "| `HEALER_MODE` | `observe` | one of `observe`, `enforce` | — |" in text
    assert "| `HEALER_KUSTO_RETRY_BUDGET_SECONDS` | `60` | number | > 0, ≤ 600 |" in text
