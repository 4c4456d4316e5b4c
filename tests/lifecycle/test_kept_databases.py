"""Kept worker databases: with --integration-reuse the next run leases the database the
last one left on the kept server (no CREATE DATABASE), cleaned; concurrent runs never
share one; a schema change leaves no stale one behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pytest_integration_kit.isolation.kept import KEPT_PREFIX
from pytest_integration_kit.lifecycle.attached import attach
from pytest_integration_kit.lifecycle.kept import KeptServers

DBS = pytest.mark.parametrize("db", ["postgres", "mysql"])

MODELS = """
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()
users = Table(
    "users", metadata, Column("id", Integer, primary_key=True), Column("name", String(50)){more}
)
"""

SEED = "INSERT INTO users (id, name) VALUES (1, 'seed');\n"

INI = """[pytest]
integration_schema = models:metadata
integration_seed = seed.sql
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
"""

#: Prints the database, an identity that changes when it is made anew, and its rows;
#: then commits a row. ``CRASH`` makes the process die before any teardown.
TESTS = """
import os
from sqlalchemy import text

IDENTITY = {{
    "postgres": "SELECT oid::text FROM pg_database WHERE datname = current_database()",
    "mysql": "SELECT CAST(CREATE_TIME AS CHAR) FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'users'",
}}


def test_write({db}_session):
    session = {db}_session
    name = session.execute(text("SELECT current_database()" if "{db}" == "postgres"
                                else "SELECT DATABASE()")).scalar()
    identity = str(session.execute(text(IDENTITY["{db}"])).scalar()).replace(" ", "T")
    names = sorted(r[0] for r in session.execute(text("SELECT name FROM users")))
    print(f"DB {{name}} {{identity}} ROWS {{','.join(names)}}")
    barrier = os.environ.get("BARRIER")
    if barrier:  # concurrent runs: both hold their database at once
        open(os.path.join(barrier, name + "-" + str(os.getpid())), "w").close()
        for _ in range(600):
            if len(os.listdir(barrier)) >= 2:
                break
            __import__("time").sleep(0.1)
        else:
            raise AssertionError("the other run never got its database")
    session.execute(text("INSERT INTO users (id, name) VALUES (2, 'run')"))
    session.commit()
    if os.environ.get("CRASH"):
        os._exit(3)  # no teardown, no clean: the next run must clean
"""


def _project(pytester: pytest.Pytester, db: str, more: str = "") -> None:
    pytester.makepyfile(models=MODELS.format(more=more))
    pytester.path.joinpath("seed.sql").write_text(SEED)
    pytester.makefile(".ini", pytest=INI)
    pytester.makepyfile(test_kept=TESTS.format(db=db))


def _run(pytester: pytest.Pytester, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "--integration-reuse"],
        cwd=pytester.path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _seen(output: str) -> tuple[str, str, str]:
    found = re.search(r"DB (\S+) (\S+) ROWS (\S*)", output)
    assert found is not None, output
    return found[1], found[2], found[3]


def _kept_databases(cache_dir: Path, db: str) -> list[str]:
    (record,) = [r for r in KeptServers(cache_dir).all() if r.service == db]
    engine = create_engine(attach(record).endpoint.url, isolation_level="AUTOCOMMIT")
    query = (
        "SELECT datname FROM pg_database WHERE datname LIKE :p"
        if db == "postgres"
        else "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :p"
    )
    try:
        with engine.connect() as conn:
            pattern = KEPT_PREFIX.replace("_", "\\_") + "%"
            return sorted(str(r[0]) for r in conn.execute(text(query), {"p": pattern}))
    finally:
        engine.dispose()


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> Path:
    """Runs on the local backend, strict, with the test's own cache directory."""
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    return cache_dir


@DBS
def test_the_next_run_leases_the_kept_database_cleaned(
    db: str, pytester: pytest.Pytester, local_env: Path
) -> None:
    _project(pytester, db)
    first = _run(pytester)
    assert first.returncode == 0, first.stdout + first.stderr
    name, identity, rows = _seen(first.stdout)
    assert name.startswith(KEPT_PREFIX)
    assert rows == "seed"
    assert f"kept database {name} made" in first.stdout

    # A run that dies after committing a row, with no teardown at all.
    crashed = _run(pytester, CRASH="1")
    assert crashed.returncode == 3, crashed.stdout + crashed.stderr
    assert _seen(crashed.stdout)[:2] == (name, identity)

    # The next run gets the same database, not a new one, and it is clean: the crashed
    # run's row is gone, the seed row is there.
    time.sleep(1.1)  # MySQL's identity is a creation time, in seconds
    third = _run(pytester)
    assert third.returncode == 0, third.stdout + third.stderr
    assert _seen(third.stdout) == (name, identity, "seed")
    assert "0 database(s) made from it" in third.stdout
    assert f"kept database {name} reused" in third.stdout
    assert _kept_databases(local_env, db) == [name]


@DBS
def test_concurrent_runs_lease_different_databases(
    db: str, pytester: pytest.Pytester, local_env: Path, tmp_path: Path
) -> None:
    _project(pytester, db)
    assert _run(pytester).returncode == 0  # keeps the server and one database
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s"]
    runs = [
        subprocess.Popen(
            [*command, "--integration-reuse"],
            cwd=pytester.path,
            env={**os.environ, "BARRIER": str(barrier)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(outputs)
    names = {_seen(output)[0] for output in outputs}
    assert len(names) == 2, outputs
    assert all(_seen(output)[2] == "seed" for output in outputs)
    assert _kept_databases(local_env, db) == sorted(names)


def test_a_schema_change_leaves_no_stale_kept_database(
    pytester: pytest.Pytester, local_env: Path
) -> None:
    _project(pytester, "postgres")
    first = _run(pytester)
    assert first.returncode == 0, first.stdout + first.stderr
    old = _seen(first.stdout)[0]
    # Same setting, other contents: the same kept server, another template.
    pytester.makepyfile(models=MODELS.format(more=', Column("age", Integer)'))
    second = _run(pytester)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "reused (kept)" in second.stdout
    new = _seen(second.stdout)[0]
    assert new != old
    assert _kept_databases(local_env, "postgres") == [new]
