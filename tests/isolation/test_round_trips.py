"""What a ``postgres_session`` / ``mysql_session`` test costs the server after its body
(and a ``postgres_async_session`` on psycopg; asyncpg's: test_kitloop.py).

The session's rollback and the clean of what other connections committed go out as one
round trip (issue 11): PostgreSQL one simple-query message, MySQL one CALL (and
SQLAlchemy's own ROLLBACK). That this one round trip still cleans and reports what
other connections committed is in test_no_hang.py (test_session_and_its_own_engine).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from isolation_project import write_project

#: PostgreSQL: the libpq trace of every connection the kit's engines open (what was
#: sent, message by message); after each test's teardown, the messages it sent.
#: MySQL: the session connection's own statement counter, read at each test's start.
COUNTING_CONFTEST = """
import json
import os

import psycopg.pq
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

TRACE = open("postgres.trace", "w")
SEEN = {"postgres": [], "mysql": []}


@event.listens_for(Engine, "connect")
def trace(dbapi_connection, record):
    # An async engine's is SQLAlchemy's adapter around psycopg's AsyncConnection.
    raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    pgconn = getattr(raw, "pgconn", None)
    if pgconn is not None:
        pgconn.trace(TRACE.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)


def _sent():
    with open("postgres.trace") as trace:
        return [line.split("\\t") for line in trace if line.startswith("F\\t")]


def _round_trips(since):
    # A Query or a Sync is one round trip: the client waits for its answer.
    return [m[3].strip() for m in _sent()[since:] if m[2] in ("Query", "Sync")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    before = len(_sent())
    result = yield
    if "postgres_session" in item.fixturenames:
        SEEN["postgres"].append(_round_trips(before))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = len(_sent())
    result = yield
    for name in ("postgres_session", "psycopg_async_session"):
        if name in item.fixturenames:
            SEEN.setdefault(name + "_whole", []).append(_round_trips(before))
    return result


def pytest_sessionfinish(session):
    with open("seen.json", "w") as out:
        json.dump(SEEN, out)
"""

COUNTED_TESTS = """
import pytest
from sqlalchemy import text

from conftest import SEEN


@pytest.mark.parametrize("n", range(4))
def test_postgres(postgres_session, n):
    postgres_session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 5)"))
    postgres_session.commit()
    assert postgres_session.execute(text("SELECT count(*) FROM orders")).scalar() == 1


@pytest.mark.parametrize("n", range(4))
def test_mysql(mysql_session, n):
    # This connection's own counter (the pool hands the same one back each test).
    row = mysql_session.execute(
        text(
            "SELECT CONNECTION_ID(), VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
            "WHERE VARIABLE_NAME = 'QUESTIONS'"
        )
    ).one()
    SEEN["mysql"].append([int(row[0]), int(row[1])])
    mysql_session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 5)"))
    mysql_session.commit()
    assert mysql_session.execute(text("SELECT count(*) FROM orders")).scalar() == 1
"""


#: Every statement a psycopg cursor (sync or async, of any engine) sends, by test phase.
CURSOR_LOG_CONFTEST = """
import json

import psycopg
import pytest

SENT = []
SEEN = []
_sync, _async = psycopg.Cursor.execute, psycopg.AsyncCursor.execute


def logged(self, query, *args, **kwargs):
    SENT.append(str(query))
    return _sync(self, query, *args, **kwargs)


async def logged_async(self, query, *args, **kwargs):
    SENT.append(str(query))
    return await _async(self, query, *args, **kwargs)


psycopg.Cursor.execute, psycopg.AsyncCursor.execute = logged, logged_async


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    before = len(SENT)
    result = yield
    SEEN.append(SENT[before:])
    return result


def pytest_sessionfinish(session):
    with open("seen.json", "w") as out:
        json.dump(SEEN, out)
"""

ASYNC_COUNTED_TESTS = """
import pytest
from sqlalchemy import text

from pytest_integration_kit import postgres_async_session_factory

psycopg_async_session = postgres_async_session_factory(driver="psycopg_async")


@pytest.mark.parametrize("n", range(3))
@pytest.mark.asyncio
async def test_postgres_async(psycopg_async_session, n):
    s = psycopg_async_session
    await s.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 5)"))
    await s.commit()
    assert (await s.execute(text("SELECT count(*) FROM orders"))).scalar() == 1


def test_last():  # the run's teardown is counted here
    pass
"""


#: What a counted PostgreSQL test sends, message by message, once the worker's database
#: is made: the savepoints ride with psycopg's BEGIN and with the commit's release.
BATCHED_TEST = [
    '"BEGIN; SAVEPOINT sa_savepoint_1"',
    '"INSERT INTO orders (id, user_id, total) VALUES (1, 1, 5)"',
    '"RELEASE SAVEPOINT sa_savepoint_1; SAVEPOINT sa_savepoint_2"',
    '"SELECT count(*) FROM orders"',
    '"ROLLBACK; SELECT _pik.clean()"',
]


def _counted_run(pytester: pytest.Pytester, conftest: str, tests: str, *, passed: int) -> Any:
    """Run ``tests`` in the isolation project under a counting ``conftest``; what it
    wrote to seen.json."""
    write_project(pytester)
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_counted=tests)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=passed)
    return json.loads(pytester.path.joinpath("seen.json").read_text())


def test_an_async_session_on_psycopg_ends_in_one_round_trip(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    """psycopg_async: the same message as the sync session's, and no other statement
    (before: ROLLBACK TO SAVEPOINT on the session's connection, and the clean apart on
    the kit's admin connection)."""
    seen = _counted_run(pytester, CURSOR_LOG_CONFTEST, ASYNC_COUNTED_TESTS, passed=4)
    assert seen[:3] == [["ROLLBACK; SELECT _pik.clean()"]] * 3, seen


def test_an_async_session_on_psycopg_sends_what_the_sync_one_does(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    """psycopg_async, a loop per test: the savepoints ride with psycopg's BEGIN and with
    the commit's release, as the sync session's do (before: BEGIN, SAVEPOINT, the
    INSERT, RELEASE, SAVEPOINT, the count, the end: seven round trips)."""
    seen = _counted_run(pytester, COUNTING_CONFTEST, ASYNC_COUNTED_TESTS, passed=4)
    assert seen["psycopg_async_session_whole"][1:] == [BATCHED_TEST] * 2, seen


def test_a_session_ends_in_one_round_trip(pytester: pytest.Pytester, backend_env: str) -> None:
    """PostgreSQL: after the body, "ROLLBACK; SELECT _pik.clean()" and nothing else, and
    the savepoints in the messages of the BEGIN and the body's. MySQL: CALL _pik_end()
    and nothing else (the recipe sends three)."""
    seen = _counted_run(pytester, COUNTING_CONFTEST, COUNTED_TESTS, passed=8)
    assert seen["postgres"] == [['"ROLLBACK; SELECT _pik.clean()"']] * 4, seen["postgres"]
    # The whole test, once the worker's database is made: five round trips. The
    # savepoints ride with psycopg's BEGIN and with the commit's release (before: BEGIN,
    # SAVEPOINT, the INSERT, RELEASE, SAVEPOINT, the count, the end: seven).
    assert seen["postgres_session_whole"][1:] == [BATCHED_TEST] * 3, seen["postgres_session_whole"]
    readings = seen["mysql"]
    assert len({connection for connection, _ in readings}) == 1, readings
    steps = {b - a for (_, a), (_, b) in itertools.pairwise(readings)}
    # From one reading to the next: the INSERT, RELEASE, SAVEPOINT and count; CALL
    # _pik_end(); the next test's SAVEPOINT and reading (before: 8, with SQLAlchemy's
    # ROLLBACK after the CALL; 12 with the clean apart).
    assert steps == {7}, readings


#: Each connection's messages (libpq's trace) in a file of its own, read after the run.
PER_CONNECTION_TRACE = """
import itertools

import psycopg.pq
from sqlalchemy import event
from sqlalchemy.engine import Engine

NUMBERS = itertools.count()
FILES = []  # open till the run's end, as its connections' traces


@event.listens_for(Engine, "connect")
def trace(dbapi_connection, record):
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is not None:
        FILES.append(open(f"trace-{next(NUMBERS)}.log", "w"))
        pgconn.trace(FILES[-1].fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
"""

CLONE_TESTS = """
import pytest
from sqlalchemy import text

pytestmark = pytest.mark.isolation("clone")


@pytest.mark.parametrize("n", range(8))
def test_clone(n, postgres_session):
    postgres_session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 5)"))
    postgres_session.commit()
"""


def test_a_clone_is_reset_in_one_round_trip(pytester: pytest.Pytester, backend_env: str) -> None:
    # psycopg began a transaction of its own before the reset's batch: a round trip
    # per test, on the server both of them.
    write_project(pytester)
    pytester.makeconftest(PER_CONNECTION_TRACE)
    pytester.makepyfile(test_resets=CLONE_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=8)
    resets = 0
    for path in pytester.path.glob("trace-*.log"):
        messages = [line.split("\t") for line in path.read_text().splitlines()]
        sent = [
            "\t".join(m[3:]).strip() for m in messages if m[0] == "F" and m[2] in ("Query", "Sync")
        ]
        for before, message in itertools.pairwise(sent):
            if 'SELECT "_pik".reset(' in message:
                resets += 1
                assert "RESET ALL" in message, message
                assert before != '"BEGIN"', sent
    assert resets >= 4  # 8 tests, 3 clones
