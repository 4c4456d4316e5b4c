"""A warm start (``--integration-reuse`` on a kept server) to its first test: what the kit
does before that test runs, and where.

- The kept server's process is judged by that one process (not a scan of every process).
- A kept container is attached through the engine's socket: docker-py is not imported.
- The worker database is leased in a thread started after collection, on one admin
  connection (which then holds the lease), while pytest goes on to the first test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_integration_kit.lifecycle.attached import AttachedProcess
from pytest_integration_kit.lifecycle.engine import ABSENT, inspected, labelled_networks
from pytest_integration_kit.services.endpoint import Endpoint

MODELS = """
from sqlalchemy import Column, Integer, MetaData, Table

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True))
"""

INI = """[pytest]
integration_schema = models:metadata
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
"""

#: Every DBAPI connection the kit's engines open, with the thread that opened it, and
#: whether docker-py was imported, as seen when the first test body runs.
CONFTEST = """
import json
import sys
import threading

from sqlalchemy import event
from sqlalchemy.engine import Engine

OPENED = []


@event.listens_for(Engine, "connect")
def opened(dbapi_connection, record):
    OPENED.append(threading.current_thread().name)


def pytest_runtest_call(item):
    with open("seen.json", "w") as out:
        json.dump({"opened": OPENED, "docker_py": "docker" in sys.modules}, out)


def pytest_unconfigure(config):
    with open("end.json", "w") as out:
        json.dump({"docker_py": "docker" in sys.modules}, out)
"""

TEST = """
from sqlalchemy import text


def test_first(postgres_session):
    assert postgres_session.execute(text("SELECT count(*) FROM items")).scalar() == 0
"""


def test_a_kept_local_server_is_judged_by_its_own_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alive: the recorded pid works in the recorded directory. Asked of that process
    only: listing every process's cwd and command line is not needed (and fails here)."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    inside = subprocess.Popen(["sleep", "60"], cwd=workdir)
    outside = subprocess.Popen(["sleep", "60"], cwd=elsewhere)

    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("every process was listed")

    monkeypatch.setattr(psutil, "process_iter", no_scan)
    endpoint = Endpoint("postgres", "127.0.0.1", 5432, "u", "p", "d", "local", "postgresql")
    try:
        for process, alive in ((inside, True), (outside, False)):
            handle = {"pid": process.pid, "workdir": str(workdir), "log": "server.log"}
            assert AttachedProcess(endpoint, handle, 0.0).is_alive() is alive
        inside.kill()
        inside.wait()
        handle = {"pid": inside.pid, "workdir": str(workdir), "log": "server.log"}
        assert AttachedProcess(endpoint, handle, 0.0).is_alive() is False
    finally:
        for process in (inside, outside):
            process.kill()
            process.wait()


def _run(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--integration-reuse"],
        cwd=path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_a_warm_start_leases_on_one_connection_in_a_thread(
    backend_env: str, pytester: pytest.Pytester, cache_dir: Path
) -> None:
    """Before the first test body: the lease's admin connection (which also looked for
    orphans and at the template) and the session's, both opened by the thread that
    prepares the database (four, all in the test's set-up, before). docker-py is not
    imported on the way to a kept container, nor at the end of the session."""
    pytester.makepyfile(models=MODELS, conftest=CONFTEST, test_first=TEST)
    pytester.makefile(".ini", pytest=INI)
    first = _run(pytester.path)
    assert first.returncode == 0, first.stdout + first.stderr
    warm = _run(pytester.path)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert "reused (kept)" in warm.stdout, warm.stdout
    seen = json.loads((pytester.path / "seen.json").read_text())
    assert seen["opened"] == ["integration-prepare"] * 2, seen
    end = json.loads((pytester.path / "end.json").read_text())
    if re.search(r"reaped from dead sessions: [1-9]\d* container", warm.stdout):
        return  # another test's killed session left one here: removing it is docker-py's
    assert seen["docker_py"] is False, seen
    assert end["docker_py"] is False, end


def test_the_engine_inspects_like_docker_py(engine_client: Any) -> None:
    """On the real engine: a container's state and an image's id as docker-py has them;
    ABSENT for what the engine does not have; networks listed by label."""
    client = engine_client
    name = "pytest-integration-kit/redis:7"
    image = inspected("images", name)
    assert image is not None
    assert image is not ABSENT
    assert image["Id"] == client.images.get(name).id
    assert inspected("images", "pytest-integration-kit/no-such-image:0") is ABSENT
    label = "pytest-integration-kit.test-inspect=yes"
    labels = {"pytest-integration-kit.test-inspect": "yes"}
    container = client.containers.create(name, labels=labels)
    try:
        attrs = inspected("containers", container.id)
        assert attrs is not None
        assert attrs is not ABSENT
        assert attrs["State"]["Status"] == container.status == "created"
        assert labelled_networks(label) == []
    finally:
        container.remove(force=True)
    assert inspected("containers", container.id) is ABSENT


#: A schema callable that says which thread ran it.
BUILD = """
import threading

from sqlalchemy import text


def build(conn):
    with open("built-by.txt", "a") as out:
        out.write(threading.current_thread().name + "\\n")
    conn.execute(text("CREATE TABLE items (id integer PRIMARY KEY)"))
"""


@pytest.mark.parametrize("backend", ["local"])
def test_the_schema_is_built_by_the_main_thread(
    backend_env: str, pytester: pytest.Pytester
) -> None:
    """The thread leases or makes the worker database from a ready template only: the
    user's schema code (a callable, migrations, seed callables) runs where it always
    did, in the test's set-up on the main thread."""
    pytester.makepyfile(models=BUILD, test_first=TEST)
    pytester.makefile(".ini", pytest=INI.replace("models:metadata", "models:build"))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "built-by.txt").read_text().split() == ["MainThread"]


SKIPPED = """
import pytest


@pytest.mark.skip(reason="not today")
def test_skipped(postgres_session):
    pass


def test_plain():
    pass
"""


@pytest.mark.parametrize("backend", ["url"])
def test_a_database_prepared_for_no_test_is_dropped(
    backend_env: str, pytester: pytest.Pytester, url_servers: dict[str, str]
) -> None:
    """The only test leasing the database is skipped: the database the thread made is
    dropped at the end all the same (a url server outlives the run)."""
    from sqlalchemy import create_engine, text  # noqa: PLC0415 - the test's own use

    engine = create_engine(url_servers["postgres"], isolation_level="AUTOCOMMIT")
    # A run without xdist names its databases pik_<session>_main. The outer run's
    # workers' own (..._gw0, ..._gw1) on the same url server come and go meanwhile (CI
    # saw two go during the inner run): not this run's to account for.
    query = text(
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname LIKE 'pik\\_%\\_main'"
    )

    def databases() -> set[str]:
        with engine.connect() as conn:
            return {str(row[0]) for row in conn.execute(query)}

    try:
        before = databases()
        pytester.makepyfile(models=MODELS, test_skipped=SKIPPED)
        pytester.makefile(".ini", pytest=INI)
        result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1, skipped=1)
        assert databases() == before
    finally:
        engine.dispose()
