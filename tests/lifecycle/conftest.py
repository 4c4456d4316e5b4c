"""Fixtures of the lifecycle tests: a user's project, a private cache dir."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from user_project import Project, make_project


@pytest.fixture
def engine_client() -> Any:
    """A docker-py client on a Docker engine that answers; the test is skipped without
    one, and fails under PIK_TEST_STRICT (CI has an engine)."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        if os.environ.get("PIK_TEST_STRICT"):
            raise
        pytest.skip(f"no Docker engine: {exc}")
    return client


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    """An empty user project in pytester's directory (tests written by the test)."""
    return make_project(pytester.path, "")


@pytest.fixture
def cache_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private integration_cache_dir the servers' unprivileged users can enter."""
    path = Path(tempfile.mkdtemp(prefix="pik-test-cache-"))
    path.chmod(stat.S_IRWXU | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("INTEGRATION_CACHE_DIR", str(path))
    yield path
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_integration_kit",
            "kept",
            "remove",
            "--cache-dir",
            str(path),
        ],
        capture_output=True,
        check=False,
        env={**os.environ, "INTEGRATION_CACHE_DIR": str(path)},
    )
    shutil.rmtree(path, ignore_errors=True)
