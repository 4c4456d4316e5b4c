"""Two xdist workers in random order: each its own databases, no row leaks, all dropped."""

from __future__ import annotations

import re

import pytest
from isolation_project import driver_url, run, write_project
from sqlalchemy import create_engine, text

TESTS = """
import os
import pytest
import redis
from sqlalchemy import text

DB = ["postgres", "mysql"]


def record(db, bind):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.path.join(os.path.dirname(__file__), "seen.txt"), "a") as handle:
        handle.write(f"{worker} {db} {bind.engine.url.database}\\n")


def assert_seed_only(bind):
    assert bind.execute(text("SELECT count(*) FROM users")).scalar() == 2
    assert bind.execute(text("SELECT count(*) FROM orders")).scalar() == 0


@pytest.mark.parametrize("db", DB)
@pytest.mark.parametrize("n", range(6))
def test_session_writes(db, n, request):
    session = request.getfixturevalue(f"{db}_session")
    assert_seed_only(session)
    session.execute(text("INSERT INTO users (id, name) VALUES (:i, 'x')"), {"i": 100 + n})
    session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (:i, 1, 1)"), {"i": n})
    session.commit()
    record(db, session.get_bind())


@pytest.mark.parametrize("db", DB)
@pytest.mark.parametrize("n", range(6))
def test_engine_writes(db, n, request):
    engine = request.getfixturevalue(f"{db}_engine")
    record(db, engine)
    with engine.begin() as conn:
        assert_seed_only(conn)
        conn.execute(text("INSERT INTO orders (id, user_id, total) VALUES (:i, 2, 2)"), {"i": n})


@pytest.mark.isolation("truncate")
@pytest.mark.parametrize("db", DB)
@pytest.mark.parametrize("n", range(6))
def test_truncate_writes(db, n, request):
    session = request.getfixturevalue(f"{db}_session")
    record(db, session.get_bind())
    assert_seed_only(session)
    session.execute(text("DELETE FROM users WHERE id = 2"))
    session.commit()


@pytest.mark.parametrize("n", range(6))
def test_redis(n, redis_client, redis_server, isolation_workspace):
    assert redis_client.dbsize() == 0
    redis_client.set(f"key{n}", n)
    # While this worker uses its db index, the claim on it is this worker's.
    keyspace = isolation_workspace.keyspace(redis_server)
    claims = redis.Redis(
        host=redis_server.host, port=redis_server.port,
        username=redis_server.user or None, password=redis_server.password or None, db=0,
    )
    assert claims.get(f"pik:claim:db:{keyspace.db}") == keyspace.owner.encode()
    claims.close()
"""


def test_two_workers_random_order_no_leaks(
    pytester: pytest.Pytester, backend_env: str, request: pytest.FixtureRequest
) -> None:
    write_project(pytester)
    pytester.makepyfile(test_user=TESTS)
    result = run(pytester, "-n", "2", "-p", "randomly", "-p", "xdist")
    result.assert_outcomes(passed=42)
    result.stdout.fnmatch_lines(["*Using --randomly-seed=*"])
    # The summary: every worker made its own databases and claimed a Redis db index.
    summary = result.stdout.str().split("integration isolation", 1)[1]
    for worker in ("gw0", "gw1"):
        for service in ("postgres", "mysql"):
            assert f"{worker}: {service} " in summary
    redis_dbs = re.findall(r"gw\d: redis \S+: db (\d+)", summary)
    assert redis_dbs  # a worker that ran no Redis test claims no index; one that
    # ended gives its index back, so a later worker may take the same one.

    seen = (pytester.path / "seen.txt").read_text().split("\n")
    by_worker: dict[tuple[str, str], set[str]] = {}
    for line in filter(None, seen):
        worker, db, name = line.split()
        by_worker.setdefault((worker, db), set()).add(name)
        assert len(name.encode()) <= 63
    assert {w for w, _ in by_worker} == {"gw0", "gw1"}
    assert all(len(names) == 1 for names in by_worker.values())  # one database per worker...
    for db in ("postgres", "mysql"):
        mine = [by_worker[(w, d)] for w, d in by_worker if d == db]
        assert len(mine) == len({frozenset(n) for n in mine})  # ...of its own

    if backend_env != "url":
        return  # the servers went with the session; on url ones we can look
    # Every worker database was dropped at the end; only templates remain.
    url_servers: dict[str, str] = request.getfixturevalue("url_servers")
    all_names = {name for names in by_worker.values() for name in names}
    pg = create_engine(driver_url("postgres", url_servers["postgres"]))
    my = create_engine(driver_url("mysql", url_servers["mysql"]))
    try:
        with pg.connect() as conn:
            left = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
        with my.connect() as conn:
            left |= set(conn.execute(text("SHOW DATABASES")).scalars())
    finally:
        pg.dispose()
        my.dispose()
    assert not all_names & left
