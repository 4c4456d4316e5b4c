"""Fixtures of the services' tests."""

from __future__ import annotations

import os
import subprocess

import pytest


@pytest.fixture
def docker_available() -> None:
    """Skip without a Docker engine; fail instead in strict CI."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        if os.environ.get("PIK_TEST_STRICT"):
            pytest.fail("docker is required in CI")
        pytest.skip("no Docker engine here")
