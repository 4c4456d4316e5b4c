"""``python -m pytest_integration_kit kept remove NAME``: one kept server, not all."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from reporting_project import run

TESTS = """
def test_both(postgres_server, redis_server):
    assert postgres_server.port and redis_server.port
"""


def kept(cache_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_integration_kit", "kept", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "INTEGRATION_CACHE_DIR": str(cache_dir)},
    )


@pytest.fixture
def cache_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private cache dir the servers' unprivileged users can enter; emptied after."""
    path = Path(tempfile.mkdtemp(prefix="pik-kept-remove-"))
    path.chmod(stat.S_IRWXU | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("INTEGRATION_CACHE_DIR", str(path))
    yield path
    kept(path, "remove")
    shutil.rmtree(path, ignore_errors=True)


def answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def test_remove_one_kept_server_by_service_then_the_rest(
    pytester: pytest.Pytester, cache_dir: Path
) -> None:
    pytester.makepyfile(TESTS)
    result = run(pytester, "--integration-backend=local", "--integration-reuse")
    result.assert_outcomes(passed=1)
    listed = kept(cache_dir, "list").stdout.splitlines()
    addresses = {line.split()[0]: line.split()[2] for line in listed}
    assert set(addresses) == {"postgres", "redis"}
    assert all(answers(address) for address in addresses.values())

    removed = kept(cache_dir, "remove", "redis")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [f"removed redis local {addresses['redis']}"]
    assert not answers(addresses["redis"])
    assert answers(addresses["postgres"])
    assert [line.split()[0] for line in kept(cache_dir, "list").stdout.splitlines()] == ["postgres"]

    unknown = kept(cache_dir, "remove", "mongodb")
    assert unknown.returncode == 1
    assert "no kept server matches 'mongodb'" in unknown.stderr

    everything = kept(cache_dir, "remove")
    assert everything.returncode == 0
    assert "removed 1 kept server(s)" in everything.stdout
    assert not answers(addresses["postgres"])
