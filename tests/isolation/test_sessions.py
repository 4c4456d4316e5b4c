"""Rollback sessions and engines as a user meets them: commit and rollback inside the code."""

from __future__ import annotations

import re

import pytest
from isolation_project import run, write_project

USER_TESTS = """
import pytest
from sqlalchemy import text

DB = pytest.mark.parametrize("db", ["postgres", "mysql"])


def register(session, user_id, name):
    # The code under test commits, as application code does.
    session.execute(text("INSERT INTO users (id, name) VALUES (:i, :n)"), {"i": user_id, "n": name})
    session.commit()


def count(bind, table="users"):
    return bind.execute(text(f"SELECT count(*) FROM {table}")).scalar()


@DB
def test_commit_inside_the_code_under_test(db, request):
    session = request.getfixturevalue(f"{db}_session")
    register(session, 10, "committed")
    session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 10, 5)"))
    session.rollback()  # undoes the order only: the user was committed to a savepoint
    assert count(session) == 3
    assert count(session, "orders") == 0


@DB
def test_nothing_leaked_and_seed_intact(db, request):
    session = request.getfixturevalue(f"{db}_session")
    rows = session.execute(text("SELECT id, name FROM users ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, "ada; lovelace"), (2, "100% grace")]
    assert count(session, "orders") == 0


@DB
def test_writes_through_the_engine_are_emptied_too(db, request):
    engine = request.getfixturevalue(f"{db}_engine")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO orders (id, user_id, total) VALUES (7, 1, 70)"))
        conn.execute(text("DELETE FROM users WHERE id = 2"))


@DB
def test_after_engine_writes(db, request):
    engine = request.getfixturevalue(f"{db}_engine")
    with engine.connect() as conn:
        assert count(conn) == 2
        assert count(conn, "orders") == 0


@DB
def test_engine_and_session_share_the_worker_database(db, request):
    engine = request.getfixturevalue(f"{db}_engine")
    session = request.getfixturevalue(f"{db}_session")
    name = engine.url.database
    assert session.get_bind().engine.url.database == name
    assert name.startswith("pik_") and len(name.encode()) <= 63
    print(f"WORKER-DB {db} {name}")
"""


def test_sessions_roll_back_what_the_code_under_test_commits(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_project(pytester)
    pytester.makepyfile(test_user=USER_TESTS)
    result = run(pytester, "-p", "no:randomly", "-s")
    result.assert_outcomes(passed=10)
    names = dict(re.findall(r"WORKER-DB (\w+) (\w+)", result.stdout.str()))
    assert set(names) == {"postgres", "mysql"}
    result.stdout.fnmatch_lines([f"*postgres*{backend_env}*", f"*mysql*{backend_env}*"])


MARKED = """
def test_session(postgres_session): pass
def test_async(mysql_async_session): pass
def test_engine(mysql_engine): pass
def test_redis(redis_client): pass
def test_redis_async(redis_async_client): pass
def test_plain(): pass
"""


def test_tests_are_marked_from_the_isolation_fixtures(pytester: pytest.Pytester) -> None:
    write_project(pytester)
    pytester.makepyfile(test_user=MARKED)
    result = run(pytester, "-p", "no:randomly", "--collect-only", "-q", "-m", "requires_db")
    result.stdout.fnmatch_lines(["*3/6 tests collected (3 deselected)*"])
    result = run(pytester, "-p", "no:randomly", "--collect-only", "-q", "-m", "requires_redis")
    result.stdout.fnmatch_lines(["*test_redis", "*test_redis_async", "*2/6 tests collected*"])
