"""``python -m pytest_integration_kit doctor``: what a run from here would use, and why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from reporting_project import DEAD_DOCKER, docker_answers


def doctor(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATION_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest_integration_kit", "doctor"],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_docker_or_binaries_it_says_what_each_service_lacks(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nintegration_isolation = truncate\n"
        "integration_postgres_url = postgresql://app:hunter2@127.0.0.1:5432/app\n"
    )
    below = tmp_path / "tests" / "unit"
    below.mkdir(parents=True)  # the configuration file is found upwards, as pytest does
    empty = tmp_path / "empty"
    empty.mkdir()
    result = doctor(below, DOCKER_HOST=DEAD_DOCKER, INTEGRATION_POSTGRES_BIN_DIR=str(empty))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert lines[0].startswith(
        f"docker engine: not usable: the Docker engine did not answer at {DEAD_DOCKER}"
    )
    assert (
        "postgres (PostgreSQL): would use nothing: its tests would be skipped "
        "(integration_missing=skip) — docker: the Docker engine did not answer" in out
    )
    no_binaries = "no PostgreSQL server binaries (postgres, initdb) found"
    assert f"  binaries: none ({no_binaries}; looked in {empty}" in out
    assert "redis (Redis): would use local — docker cannot: the Docker engine did not answer" in out
    assert "  binaries: server " in out  # redis-server found on this machine
    assert "  driver psycopg: installed" in out
    assert f"settings (from {tmp_path / 'pytest.ini'} and the environment" in out
    assert "  integration_isolation = truncate (ini)" in lines
    assert f"  integration_postgres_bin_dir = {empty} (env)" in lines
    assert "  integration_postgres_url = postgresql://app:***@127.0.0.1:5432/app (ini)" in lines
    assert "hunter2" not in out + result.stderr


def test_a_backend_chosen_in_pyproject_toml(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest]\nintegration_backend = "local"\nintegration_startup_timeout = 30\n'
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    result = doctor(tmp_path, DOCKER_HOST=DEAD_DOCKER, INTEGRATION_REDIS_BIN_DIR=str(empty))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "postgres (PostgreSQL): would use local (chosen: ini)\n" in out
    assert (
        "redis (Redis): would use local (chosen: ini) — but it cannot run: no Redis server "
        "binary" in out
    )
    assert "  integration_startup_timeout = 30.0 (ini)" in out.splitlines()


def test_with_docker_it_names_the_engine_and_the_images(tmp_path: Path) -> None:
    if not docker_answers():
        pytest.skip("needs a Docker engine (CI runs with one)")
    result = doctor(
        tmp_path,
        INTEGRATION_POSTGRES_IMAGE="pytest-integration-kit/postgres:15",
        INTEGRATION_REDIS_IMAGE="pytest-integration-kit/absent:1",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("docker engine: Docker ")
    verdict = "would use docker (the engine answers and the image is present)"
    assert f"postgres (PostgreSQL): {verdict}" in out
    assert "  image pytest-integration-kit/postgres:15: present (" in out
    assert (
        "redis (Redis): would use docker if pulling pytest-integration-kit/absent:1 works, "
        "else local" in out
    )
    assert "  image pytest-integration-kit/absent:1: absent" in out
    assert "settings (from no pytest configuration file and the environment" in out


def test_a_bad_setting_is_named(tmp_path: Path) -> None:
    (tmp_path / "tox.ini").write_text("[pytest]\nintegration_backend = dockr\n")
    result = doctor(tmp_path)
    assert result.returncode == 2
    assert "integration_backend: 'dockr' is not allowed" in result.stderr
    assert "Traceback" not in result.stderr
