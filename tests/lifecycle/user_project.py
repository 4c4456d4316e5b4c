"""A user's project that reports what it used, run as its own pytest process, and a
census of everything a session can leave behind (containers, processes, directories)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_integration_kit.backends.local import SOCKETS_PREFIX, WORKDIR_PREFIX
from pytest_integration_kit.lifecycle.attached import docker_client, processes_under

#: A user's conftest: every test that uses a server reports it to $PIK_OUT.
REPORTING_CONFTEST = """
import json, os
import pytest
from pytest_integration_kit.fixtures.services import server_set

@pytest.fixture
def report(request):
    def write(**fields):
        servers = server_set(request.config)
        fields.update(
            session=servers.session_id,
            worker=os.environ.get("PYTEST_XDIST_WORKER", "main"),
            pid=os.getpid(),
        )
        with open(os.environ["PIK_OUT"], "a") as out:
            out.write(json.dumps(fields) + "\\n")
    return write
"""

#: Tests that really use each server: a write and a read-back on its own connection.
USING_TESTS = """
import os, psycopg, pymysql, redis, pytest

# Concurrent CREATE TABLE IF NOT EXISTS races in PostgreSQL: a table per worker.
TABLE = "hits_" + os.environ.get("PYTEST_XDIST_WORKER", "main")

@pytest.mark.parametrize("n", range({count}))
def test_postgres(postgres_server, report, n):
    with psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                         user=postgres_server.user, password=postgres_server.password,
                         dbname=postgres_server.database, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (n int)")
        conn.execute(f"INSERT INTO {TABLE} VALUES (%s)", (n,))
        assert conn.execute(f"SELECT count(*) FROM {TABLE} WHERE n = %s", (n,)).fetchone()[0] >= 1
    report(service="postgres", address=postgres_server.address, backend=postgres_server.backend)

@pytest.mark.parametrize("n", range({count}))
def test_mysql(mysql_server, report, n):
    conn = pymysql.connect(host=mysql_server.host, port=mysql_server.port,
                           user=mysql_server.user, password=mysql_server.password,
                           database=mysql_server.database, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (n int)")
        cur.execute(f"INSERT INTO {TABLE} VALUES (%s)", (n,))
        cur.execute(f"SELECT count(*) FROM {TABLE} WHERE n = %s", (n,))
        assert cur.fetchone()[0] >= 1
    conn.close()
    report(service="mysql", address=mysql_server.address, backend=mysql_server.backend)

@pytest.mark.parametrize("n", range({count}))
def test_redis(redis_server, report, n):
    client = redis.Redis(host=redis_server.host, port=redis_server.port,
                         password=redis_server.password or None)
    assert client.incr("hits") >= 1
    client.close()
    report(service="redis", address=redis_server.address, backend=redis_server.backend)
"""


def using_tests(count: int = 2) -> str:
    return USING_TESTS.replace("{count}", str(count))


def read_reports(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Leftovers:
    """Everything of one session still on this host."""

    containers: list[str]
    workdirs: list[Path]
    processes: list[int]
    #: Socket directories (in a short temp dir) of its local servers.
    sockets: list[Path]

    @property
    def empty(self) -> bool:
        return not (self.containers or self.workdirs or self.processes or self.sockets)


def leftovers(session: str) -> Leftovers:
    """Containers labelled with ``session``, its local server dirs and their processes."""
    try:
        containers = [
            str(c.id)
            for c in docker_client().containers.list(
                all=True, filters={"label": f"pytest-integration-kit.session={session}"}
            )
        ]
    except Exception:
        containers = []
    workdirs = sorted(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{session}-*"))
    processes = [pid for workdir in workdirs for pid in processes_under(workdir)]
    sockets = sorted(
        {
            path
            for base in {tempfile.gettempdir(), "/tmp"}  # noqa: S108 - where sockets go
            for path in Path(base).glob(f"{SOCKETS_PREFIX}{session[:12]}-*")
        }
    )
    return Leftovers(containers, workdirs, processes, sockets)


def wait_for(condition: Any, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class Project:
    """A user's project on disk, run as a separate pytest process."""

    path: Path
    out: Path

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            *args,
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PIK_OUT": str(self.out)}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.path,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.path,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def reports(self) -> list[dict[str, Any]]:
        return read_reports(self.out)


def make_project(root: Path, tests: str, ini: str = "") -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n" + ini
    )
    (root / "conftest.py").write_text(REPORTING_CONFTEST)
    (root / "test_user.py").write_text(tests)
    return Project(root, root / "reports.jsonl")
