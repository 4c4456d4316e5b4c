"""Compose environments: a user's docker-compose.yml of two services (PostgreSQL with a
healthcheck, a small HTTP service without one) as a session fixture."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pytest_integration_kit.lifecycle.attached import docker_client

pytestmark = pytest.mark.skipif(
    shutil.which("docker-compose") is None and shutil.which("docker") is None,
    reason="no Compose CLI",
)

COMPOSE = """
version: "2.4"
services:
  db:
    image: pytest-integration-kit/postgres:15
    environment:
      POSTGRES_PASSWORD: secret
    ports: ["127.0.0.1::5432"]
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "postgres", "-h", "127.0.0.1"]
      interval: 1s
      retries: 60
  web:
    image: pytest-integration-kit/base:bookworm
    command:
      - perl
      - -MIO::Socket::INET
      - -e
      - >-
        sleep 2; my $$s = IO::Socket::INET->new(LocalPort => 8000, Listen => 8, ReuseAddr => 1)
        or die; while (my $$c = $$s->accept) { <$$c>;
        print $$c "HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"; close $$c }
    ports: ["127.0.0.1::8000"]
"""

TESTS = """
import os, time, urllib.request, psycopg

def test_db(env):
    db = env.endpoint("db", 5432)
    with psycopg.connect(host=db.host, port=db.port, user="postgres", password="secret",
                         dbname="postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    print("READY", env.seconds_to_ready, env.project)
    if os.environ.get("HOLD"):
        time.sleep(600)

def test_web(env):
    web = env.endpoint("web", 8000)
    with urllib.request.urlopen(f"http://{web.address}/", timeout=10) as answer:
        assert answer.read() == b"ok"
"""

CONFTEST = """
from pytest_integration_kit import compose_environment_factory

env = compose_environment_factory("docker-compose.yml")
"""


def _project_containers(project: str) -> list[object]:
    return list(
        docker_client().containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"}
        )
    )


def test_a_compose_file_of_two_services_waits_for_health_and_publishes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yml", **{"docker-compose": COMPOSE})
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_env=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-s")
    result.assert_outcomes(passed=2)
    found = re.search(r"READY ([\d.]+) (\S+)", result.stdout.str())
    assert found
    print(f"compose environment (docker-compose): ready in {float(found[1]):.2f} s")
    # Brought down at the end: no container of the project is left.
    assert _project_containers(found[2]) == []


def test_the_compose_environment_of_a_killed_run_is_reaped(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yml", **{"docker-compose": COMPOSE})
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_env=TESTS)
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-s", "-k", "test_db"],
        cwd=pytester.path,
        env={**os.environ, "HOLD": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    project = ""
    deadline = time.monotonic() + 180
    for line in process.stdout:
        found = re.search(r"READY [\d.]+ (\S+)", line)
        if found:
            project = found[1]
            break
        assert time.monotonic() < deadline
    assert project
    assert len(_project_containers(project)) == 2
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    pytester.makepyfile(test_later="def test_nothing():\n    pass\n")
    later = pytester.runpytest_subprocess("-p", "no:randomly", "test_later.py")
    later.assert_outcomes(passed=1)
    assert _project_containers(project) == []
    assert docker_client().networks.list(names=[f"{project}_default"]) == []


#: Each test records which project it used and whether it found it up already.
SHARED_TESTS = """
import os, time

def _record(env, name):
    with open(os.environ["RECORD"], "a") as out:
        out.write(f"{name} {os.getpid()} {env.project} {env.attached}\\n")
    time.sleep(3)  # both workers hold it at once

def test_one(env):
    _record(env, "one")

def test_two(env):
    _record(env, "two")
"""


def _records(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_the_workers_of_a_run_share_one_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makefile(".yml", **{"docker-compose": COMPOSE})
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_env=SHARED_TESTS)
    record = pytester.path / "record.txt"
    monkeypatch.setenv("RECORD", str(record))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-n", "2")
    result.assert_outcomes(passed=2)
    rows = _records(record)
    assert len({pid for _, pid, _, _ in rows}) == 2  # two workers...
    (project,) = {project for _, _, project, _ in rows}  # ...one project
    assert sorted(attached for *_, attached in rows) == ["False", "True"]
    assert _project_containers(project) == []  # the last one out took it down


def test_a_kept_environment_is_attached_by_the_next_run_until_its_file_changes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Path(tempfile.mkdtemp(prefix="pik-compose-cache-"))
    monkeypatch.setenv("INTEGRATION_CACHE_DIR", str(cache))
    pytester.makefile(".yml", **{"docker-compose": COMPOSE})
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_env=SHARED_TESTS)
    record = pytester.path / "record.txt"
    monkeypatch.setenv("RECORD", str(record))
    project = ""
    try:
        first = pytester.runpytest_subprocess("-p", "no:randomly", "--integration-reuse")
        first.assert_outcomes(passed=2)
        (project,) = {p for _, _, p, _ in _records(record)}
        kept = {c.id for c in _project_containers(project)}  # type: ignore[attr-defined]
        assert len(kept) == 2  # left up for the next run

        record.unlink()
        second = pytester.runpytest_subprocess("-p", "no:randomly", "--integration-reuse")
        second.assert_outcomes(passed=2)
        assert {(p, a) for _, _, p, a in _records(record)} == {(project, "True")}
        assert {c.id for c in _project_containers(project)} == kept  # type: ignore[attr-defined]

        # Another file is another environment: the kept one is replaced, not attached.
        pytester.makefile(".yml", **{"docker-compose": COMPOSE.replace("secret", "other")})
        record.unlink()
        third = pytester.runpytest_subprocess("-p", "no:randomly", "--integration-reuse")
        third.assert_outcomes(passed=2)
        assert {(p, a) for _, _, p, a in _records(record)} == {(project, "False")}
        replaced = {c.id for c in _project_containers(project)}  # type: ignore[attr-defined]
        assert len(replaced) == 2
        assert not replaced & kept

        # Listed and removed with the kept servers.
        kept_cli = [sys.executable, "-m", "pytest_integration_kit", "kept"]
        cache_arg = ["--cache-dir", str(cache)]
        listing = subprocess.run(
            [*kept_cli, "list", *cache_arg], capture_output=True, text=True, check=True
        )
        assert listing.stdout.count("compose") == 2, listing.stdout + listing.stderr
        subprocess.run([*kept_cli, "remove", *cache_arg], check=True, capture_output=True)
        assert _project_containers(project) == []
        assert docker_client().networks.list(names=[f"{project}_default"]) == []
    finally:
        for container in _project_containers(project):
            container.remove(force=True, v=True)  # type: ignore[attr-defined]
        for network in docker_client().networks.list(names=[f"{project}_default"]):
            network.remove()
        shutil.rmtree(cache, ignore_errors=True)


DYING = """
version: "2.4"
services:
  web:
    image: pytest-integration-kit/base:bookworm
    command:
      - perl
      - -MIO::Socket::INET
      - -e
      - >-
        $$| = 1; print "web says hello\\n";
        my $$s = IO::Socket::INET->new(LocalPort => 8000, Listen => 8, ReuseAddr => 1)
        or die; sleep 8; exit 3
    ports: ["127.0.0.1::8000"]
"""

DYING_TESTS = """
import time

def test_web_went_down(env):
    deadline = time.monotonic() + 60
    while "web" not in env.failing_services():
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert False, "the service went down"

def test_fine(env):
    pass
"""


def test_a_failing_test_reports_the_logs_of_the_services_that_went_down(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yml", **{"docker-compose": DYING})
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_env=DYING_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- integration compose env: web log (last 40 lines) -*",
            "*web says hello*",
        ]
    )
    assert result.stdout.str().count("integration compose env:") == 1  # the failure's only
