"""The configuration reference page is generated from the settings table and kept in sync."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pytest_integration_kit.services import REGISTRY
from pytest_integration_kit.settings import settings_table

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_matches_the_settings_table() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-config-reference"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_setting_is_in_the_reference() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    for setting in settings_table(REGISTRY.builtin()):
        assert f"## `{setting.ini}`" in page
        assert setting.env in page
        assert setting.cli in page
