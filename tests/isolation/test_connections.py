"""Raw driver connections (psycopg, asyncpg, PyMySQL): every write gone after each test.

Two xdist workers in random order, on each backend: each test starts from the seed rows,
so a row left behind by any earlier test of its worker fails it. The ini's
``filterwarnings = error`` also proves the raw connections count as the kit's own: a
commit they make is never reported as a foreign write.
"""

from __future__ import annotations

import sys

import pytest
from isolation_project import run, write_project

from pytest_integration_kit.errors import MissingExtra
from pytest_integration_kit.isolation.connections import require_driver

SYNC_TESTS = """
import pytest

N = range(4)


def count(cursor, table):
    cursor.execute(f"SELECT count(*) FROM {table}")
    return cursor.fetchone()[0]


def assert_seed_only(cursor):
    assert count(cursor, "users") == 2
    assert count(cursor, "orders") == 0


def pg_outsider(conn):
    # Another connection to the same database: sees only what was really committed.
    import psycopg

    return psycopg.connect(**conn.info.get_parameters(), password=conn.info.password)


def my_outsider(conn):
    import pymysql

    return pymysql.connect(
        host=conn.host, port=conn.port, user=conn.user, password=conn.password,
        database=conn.db, autocommit=True,
    )


@pytest.mark.parametrize("n", N)
def test_psycopg_commit_and_rollback(postgres_connection, n):
    conn = postgres_connection
    assert_seed_only(conn.cursor())
    conn.execute("INSERT INTO orders (id, user_id, total) VALUES (%s, 1, 1)", (n,))
    conn.commit()
    conn.execute("INSERT INTO orders (id, user_id, total) VALUES (%s, 1, 1)", (n + 10,))
    conn.rollback()  # undoes the second insert only
    assert count(conn.cursor(), "orders") == 1
    with pg_outsider(conn) as outsider:  # the commit was a savepoint
        assert count(outsider.cursor(), "orders") == 0
    with conn.transaction():
        conn.execute("DELETE FROM users WHERE id = 2")
    conn.commit()
    assert count(conn.cursor(), "users") == 1


@pytest.mark.parametrize("n", N)
def test_psycopg_failed_statement_then_commit(postgres_connection, n):
    conn = postgres_connection
    assert_seed_only(conn.cursor())
    conn.execute("INSERT INTO orders (id, user_id, total) VALUES (%s, 1, 1)", (n,))
    conn.commit()
    with pytest.raises(Exception, match="duplicate key"):
        conn.execute("INSERT INTO orders (id, user_id, total) VALUES (%s, 1, 1)", (n,))
    conn.rollback()
    assert count(conn.cursor(), "orders") == 1


@pytest.mark.parametrize("n", N)
def test_pymysql_commit_and_rollback(mysql_connection, n):
    conn = mysql_connection
    with conn.cursor() as cursor:
        assert_seed_only(cursor)
        conn.begin()
        cursor.execute("INSERT INTO orders (id, user_id, total) VALUES (%s, 1, 1)", (n,))
        conn.commit()
        cursor.execute("INSERT INTO orders (id, user_id, total) VALUES (%s, 1, 1)", (n + 10,))
        conn.rollback()
        assert count(cursor, "orders") == 1
        outsider = my_outsider(conn)
        with outsider.cursor() as other:
            assert count(other, "orders") == 0  # the commit was a savepoint
        outsider.close()
        cursor.execute("DELETE FROM users WHERE id = 2")
        conn.commit()
        assert count(cursor, "users") == 1


def test_pymysql_refuses_autocommit(mysql_connection):
    import pymysql

    with pytest.raises(pymysql.err.ProgrammingError, match="commit the test's transaction"):
        mysql_connection.autocommit(True)


@pytest.mark.parametrize("n", range(2))
def test_commit_sent_as_sql(postgres_connection, mysql_connection, n):
    # Nothing intercepts these: the write tracking empties the tables after the test.
    postgres_connection.execute("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 1)")
    postgres_connection.execute("COMMIT")
    with mysql_connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 1)")
        cursor.execute("COMMIT")
    postgres_connection.execute("INSERT INTO orders (id, user_id, total) VALUES (2, 1, 1)")
    postgres_connection.rollback()
    assert count(postgres_connection.cursor(), "orders") == 1


@pytest.mark.isolation("truncate")
@pytest.mark.parametrize("n", range(2))
def test_truncate_strategy_commits_for_real(postgres_connection, mysql_connection, n):
    assert_seed_only(postgres_connection.cursor())
    postgres_connection.execute("DELETE FROM users WHERE id = 1")
    postgres_connection.commit()
    with pg_outsider(postgres_connection) as outsider:  # a real commit
        assert count(outsider.cursor(), "users") == 1
    with mysql_connection.cursor() as cursor:
        assert_seed_only(cursor)
        cursor.execute("DELETE FROM users WHERE id = 1")
        mysql_connection.commit()


def test_session_and_connection_share_the_database(postgres_session, postgres_connection):
    name = postgres_connection.execute("SELECT current_database()").fetchone()[0]
    assert postgres_session.get_bind().engine.url.database == name
"""

ASYNC_TESTS = """
import asyncpg
import pytest


@pytest.mark.asyncio
@pytest.mark.parametrize("n", range(4))
async def test_asyncpg_transactions(postgres_async_connection, n):
    conn = postgres_async_connection
    assert await conn.fetchval("SELECT count(*) FROM users") == 2
    assert await conn.fetchval("SELECT count(*) FROM orders") == 0
    async with conn.transaction():  # the code's "commit": a savepoint released
        await conn.execute("INSERT INTO orders (id, user_id, total) VALUES ($1, 1, 1)", n)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with conn.transaction():
            await conn.execute("DELETE FROM users WHERE id = 2")
            await conn.execute("INSERT INTO orders (id, user_id, total) VALUES ($1, 1, 1)", n)
    assert await conn.fetchval("SELECT count(*) FROM users") == 2
    await conn.execute("DELETE FROM users WHERE id = 2")
    assert await conn.fetchval("SELECT count(*) FROM orders") == 1


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("n", range(2))
async def test_asyncpg_in_module_loop(postgres_async_connection, n):
    assert await postgres_async_connection.fetchval("SELECT count(*) FROM orders") == 0
    await postgres_async_connection.execute(
        "INSERT INTO orders (id, user_id, total) VALUES (7, 1, 1)"
    )
"""


def test_raw_connections_roll_back_two_workers_random_order(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_project(pytester)
    pytester.makepyfile(test_sync=SYNC_TESTS, test_async=ASYNC_TESTS)
    result = run(pytester, "-n", "2", "-p", "randomly", "-p", "xdist")
    result.assert_outcomes(passed=24)
    result.stdout.fnmatch_lines(["*Using --randomly-seed=*"])


MISSING_CONFTEST = """
import sys

sys.modules["asyncpg"] = None  # as if the postgres extra were not installed
"""

MISSING_TESTS = """
import pytest


@pytest.mark.asyncio
async def test_async(postgres_async_connection):
    pass
"""


def test_missing_driver_names_the_extra(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    write_project(pytester)
    pytester.makeconftest(MISSING_CONFTEST)
    pytester.makepyfile(test_missing=MISSING_TESTS)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*postgres_async_connection needs the asyncpg driver, which is not installed: "
            "pip install 'pytest-integration-kit[[]postgres[]]'*"
        ]
    )


def test_require_driver_in_a_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)
    with pytest.raises(MissingExtra, match=r"pytest-integration-kit\[mysql\]"):
        require_driver("pymysql")
