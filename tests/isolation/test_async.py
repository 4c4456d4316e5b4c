"""AsyncSession fixtures under pytest-asyncio 1.x: strict and auto modes, loop scopes."""

from __future__ import annotations

import pytest
from isolation_project import run, write_project

STRICT_TESTS = """
import pytest
from sqlalchemy import text

DB = pytest.mark.parametrize("db", ["postgres", "mysql"])


async def place_order(session, order_id):
    await session.execute(
        text("INSERT INTO orders (id, user_id, total) VALUES (:i, 1, 10)"), {"i": order_id}
    )
    await session.commit()


@pytest.mark.asyncio
async def test_commit_in_function_loop(postgres_async_session, mysql_async_session):
    for session in (postgres_async_session, mysql_async_session):
        await place_order(session, 1)
        await session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (2, 1, 1)"))
        await session.rollback()
        assert (await session.execute(text("SELECT count(*) FROM orders"))).scalar() == 1


@pytest.mark.asyncio(loop_scope="module")
async def test_commit_in_module_loop(postgres_async_session, mysql_async_session):
    for session in (postgres_async_session, mysql_async_session):
        await place_order(session, 3)


@pytest.mark.asyncio(loop_scope="module")
async def test_nothing_leaked_in_module_loop(postgres_async_session, mysql_async_session):
    for session in (postgres_async_session, mysql_async_session):
        assert (await session.execute(text("SELECT count(*) FROM orders"))).scalar() == 0
        assert (await session.execute(text("SELECT count(*) FROM users"))).scalar() == 2


@pytest.mark.asyncio
async def test_nothing_leaked_in_function_loop(postgres_async_session, mysql_async_session):
    for session in (postgres_async_session, mysql_async_session):
        assert (await session.execute(text("SELECT count(*) FROM orders"))).scalar() == 0
"""

AUTO_TESTS = """
from sqlalchemy import text


async def test_auto_mode_needs_no_marker(postgres_async_session):
    await postgres_async_session.execute(text("DELETE FROM users"))
    await postgres_async_session.commit()
    assert (await postgres_async_session.execute(text("SELECT count(*) FROM users"))).scalar() == 0


async def test_seed_is_back(postgres_async_session):
    assert (await postgres_async_session.execute(text("SELECT count(*) FROM users"))).scalar() == 2
"""

PINNED_CONFTEST = """
from pytest_integration_kit.fixtures.isolation import postgres_async_session_factory

pg_module_session = postgres_async_session_factory(loop_scope="module")
"""

PINNED_TESTS = """
import pytest
from sqlalchemy import text


@pytest.mark.asyncio(loop_scope="module")
async def test_same_loop(pg_module_session):
    assert (await pg_module_session.execute(text("SELECT 1"))).scalar() == 1


@pytest.mark.asyncio
async def test_other_loop(pg_module_session):
    pass
"""


SESSION_LOOP_TESTS = """
from sqlalchemy import text

PIDS = {}


async def backend_id(session, db):
    query = "SELECT pg_backend_pid()" if db == "postgres" else "SELECT CONNECTION_ID()"
    return (await session.execute(text(query))).scalar()


async def test_first(postgres_async_session, mysql_async_session):
    for db, session in (("postgres", postgres_async_session), ("mysql", mysql_async_session)):
        PIDS[db] = await backend_id(session, db)
        await session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (9, 1, 1)"))
        await session.commit()


async def test_second_reuses_the_connection(postgres_async_session, mysql_async_session):
    for db, session in (("postgres", postgres_async_session), ("mysql", mysql_async_session)):
        assert await backend_id(session, db) == PIDS[db]  # pooled within the shared loop
        assert (await session.execute(text("SELECT count(*) FROM orders"))).scalar() == 0
"""


def test_tests_sharing_a_session_loop_share_pooled_connections(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_project(pytester, asyncio_mode="auto", extra="asyncio_default_test_loop_scope = session")
    pytester.makepyfile(test_user=SESSION_LOOP_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert "Exception closing connection" not in result.stdout.str() + result.stderr.str()


def test_auto_mode(pytester: pytest.Pytester, backend_env: str) -> None:
    write_project(pytester, asyncio_mode="auto")
    pytester.makepyfile(test_user=AUTO_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_a_pinned_loop_scope_mismatch_is_a_clear_error(pytester: pytest.Pytester) -> None:
    write_project(pytester, extra="integration_backend = local")
    pytester.makeconftest(PINNED_CONFTEST)
    pytester.makepyfile(test_user=PINNED_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*pg_module_session runs in the module-scoped event loop*"
            "test_user.py::test_other_loop runs in the function-scoped one*",
        ]
    )
    assert "attached to a different loop" not in result.stdout.str()


CROSS_LOOP_CONFTEST = """
from pytest_integration_kit.fixtures.isolation import postgres_async_session_factory

pg_psycopg = postgres_async_session_factory(driver="psycopg_async")
"""

CROSS_LOOP_TESTS = """
import asyncio
import pytest
from sqlalchemy import text

PIDS = []


@pytest.mark.parametrize("n", range(4))
@pytest.mark.asyncio
async def test_function_loop(pg_psycopg, n):
    PIDS.append((id(asyncio.get_running_loop()), (await pg_psycopg.execute(
        text("SELECT pg_backend_pid()"))).scalar()))
    assert (await pg_psycopg.execute(text("SELECT count(*) FROM orders"))).scalar() == 0
    await pg_psycopg.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 1)"))
    await pg_psycopg.commit()
    # Two statements at once on the psycopg connection: its lock waits in this loop.
    raw = (await (await pg_psycopg.connection()).get_raw_connection()).driver_connection
    await asyncio.gather(*(raw.execute("SELECT pg_sleep(0.01)") for _ in range(2)))


@pytest.mark.asyncio
async def test_cancelled_mid_query(pg_psycopg):
    task = asyncio.ensure_future(pg_psycopg.execute(text("SELECT pg_sleep(5)")))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(BaseException):
        await task


@pytest.mark.asyncio
async def test_after_a_cancelled_one(pg_psycopg):
    assert (await pg_psycopg.execute(text("SELECT count(*) FROM users"))).scalar() == 2


def test_one_server_connection_for_every_loop():
    # Four tests, each in a loop of its own (a freed loop's id may be reused: not counted).
    pids = {pid for _, pid in PIDS}
    assert len(PIDS) == 4, PIDS
    assert len(pids) == 1, PIDS
"""


def test_async_sessions_roll_back_in_any_loop_scope_and_psycopg_serves_every_loop(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    """Async sessions roll back whatever loop scope their fixtures have. psycopg's async
    connections are kept between tests' event loops: four tests in four loops run on one
    server connection, isolated; a test cancelled mid-query leaves one that the next test
    does not get. One inner run (one set of servers per backend) for both."""
    write_project(pytester)
    pytester.makeconftest(CROSS_LOOP_CONFTEST)
    pytester.makepyfile(test_user=STRICT_TESTS, test_cross=CROSS_LOOP_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=11)
