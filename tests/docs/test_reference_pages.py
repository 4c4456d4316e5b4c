"""The generated reference pages (configuration, fixtures, markers) match the plugin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_reference_pages_are_in_sync() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-reference"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_every_fixture_is_documented() -> None:
    page = (ROOT / "docs" / "fixtures.md").read_text()
    assert "(no docstring)" not in page
    for name in ("postgres_server", "postgres_session", "redis_client", "mock_server"):
        assert f"## `{name}`" in page
