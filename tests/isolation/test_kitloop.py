"""asyncpg connections kept between the tests' event loops, on the kit's own loop."""

from __future__ import annotations

import asyncio
import json
import threading

import isolation_project  # noqa: F401 - preloads the SQL dialects, see there
import pytest
from isolation_project import run, write_project

from pytest_integration_kit.isolation.kitloop import KIT_LOOP, KitLoop


def test_work_runs_on_the_kit_loop_and_its_outcome_comes_back() -> None:
    async def where() -> threading.Thread:
        return threading.current_thread()

    async def fails() -> None:
        raise LookupError("from the kit's loop")

    async def main() -> None:
        assert await KIT_LOOP.run(where()) is not threading.current_thread()
        with pytest.raises(LookupError, match="from the kit's loop"):
            await KIT_LOOP.run(fails())

    asyncio.run(main())
    asyncio.run(main())  # from a second loop, the same kit loop


def test_a_cancelled_wait_cancels_the_work_there() -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        task = asyncio.ensure_future(KIT_LOOP.run(slow()))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cancelled.wait(10)


def test_a_result_nobody_waits_for_any_more_is_discarded() -> None:
    started, discarded = threading.Event(), threading.Event()

    async def past_cancelling() -> str:  # as a connection whose login has completed
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "opened"
        return "not cancelled"

    def discard(result: object) -> None:
        assert result == "opened"
        assert KIT_LOOP.in_thread()
        discarded.set()

    async def main() -> None:
        task = asyncio.ensure_future(KIT_LOOP.run(past_cancelling(), discard=discard))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if discarded.is_set():
                return
            await asyncio.sleep(0.05)

    asyncio.run(main())
    assert discarded.is_set()


def test_the_kit_loop_cannot_wait_for_itself_and_stops() -> None:
    kit = KitLoop()

    async def inner() -> None:
        await kit.run(asyncio.sleep(0))

    async def outer() -> None:
        with pytest.raises(RuntimeError, match="cannot wait for its own work"):
            await inner()

    async def main() -> None:
        await kit.run(outer())

    asyncio.run(main())
    thread = kit._thread
    kit.stop()
    assert thread is not None
    assert not thread.is_alive()


KEPT_TESTS = """
import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

PIDS = []


@pytest.mark.parametrize("n", range(3))
@pytest.mark.asyncio
async def test_function_loop(postgres_async_session, n):
    s = postgres_async_session
    PIDS.append((await s.execute(text("SELECT pg_backend_pid()"))).scalar())
    assert (await s.execute(text("SELECT count(*) FROM orders"))).scalar() == 0
    await s.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 1)"))
    await s.commit()


@pytest.mark.asyncio
async def test_driver_errors_are_sqlalchemys(postgres_async_session):
    s = postgres_async_session
    with pytest.raises(IntegrityError):
        await s.execute(text("INSERT INTO users (id, name) VALUES (1, 'again')"))
    await s.rollback()
    assert (await s.execute(text("SELECT count(*) FROM users"))).scalar() == 2


@pytest.mark.asyncio
async def test_the_driver_connection(postgres_async_session):
    conn = await postgres_async_session.connection()
    raw = (await conn.get_raw_connection()).driver_connection
    assert await raw.fetchval("SELECT 41 + 1") == 42
    async with raw.transaction():
        await raw.execute("INSERT INTO orders (id, user_id, total) VALUES (7, 1, 1)")
    assert [r[0] async for r in raw.cursor("SELECT generate_series(1, 3)")] == [1, 2, 3]
    statement = await raw.prepare("SELECT count(*) FROM orders")
    assert await statement.fetchval() == 1


@pytest.mark.asyncio
async def test_cancelled_mid_query(postgres_async_session):
    task = asyncio.ensure_future(postgres_async_session.execute(text("SELECT pg_sleep(5)")))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.asyncio
async def test_timed_out(postgres_async_session):
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(postgres_async_session.execute(text("SELECT pg_sleep(5)")), 0.2)


@pytest.mark.asyncio
async def test_left_inside_a_transaction_of_its_own(postgres_async_session):
    raw = (await (await postgres_async_session.connection()).get_raw_connection()).driver_connection
    await raw.transaction().start()  # a savepoint nobody ends
    await raw.execute("INSERT INTO orders (id, user_id, total) VALUES (8, 1, 1)")


@pytest.mark.asyncio
async def test_a_transaction_begins_with_the_next_call(postgres_async_session):
    await postgres_async_session.execute(text("SELECT 1"))  # the session's BEGIN, SAVEPOINT
    raw = (await (await postgres_async_session.connection()).get_raw_connection()).driver_connection
    sent = []
    raw.add_query_logger(lambda logged: sent.append(logged.query))
    unused = raw.transaction()  # inside the session's: a savepoint
    await unused.start()
    await unused.rollback()  # never begun on the server: nothing sent
    used = raw.transaction()
    await used.start()
    assert await raw.fetchval("SELECT 41 + 1") == 42
    await used.rollback()
    await raw.execute("SELECT 2")  # the logger runs soon after each query: the last waits
    assert [q.split(" ")[0] for q in sent[:3]] == ["SAVEPOINT", "SELECT", "ROLLBACK"], sent


@pytest.mark.asyncio
async def test_after_the_cancelled_ones(postgres_async_session):
    s = postgres_async_session
    assert (await s.execute(text("SELECT count(*) FROM orders"))).scalar() == 0
    busy = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE :q AND state = 'active'"
    assert (await s.execute(text(busy), {"q": "SELECT pg_sleep%"})).scalar() == 0


def test_one_server_connection_for_every_loop():
    assert len(PIDS) == 3 and len(set(PIDS)) == 1, PIDS
"""


def test_asyncpg_connections_serve_every_loop(pytester: pytest.Pytester, backend_env: str) -> None:
    """Three tests, each in a loop of its own, run on one server connection, isolated;
    driver errors, the driver's own connection, cancellation and time-outs behave as
    on a connection of the test's loop, and the next test gets a clean session."""
    write_project(pytester)
    pytester.makepyfile(test_kept=KEPT_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=11)
    output = result.stdout.str() + result.stderr.str()
    assert "Exception closing connection" not in output
    assert "never awaited" not in output


#: Counts the hand-overs to the kit's loop and logs what asyncpg sent, per test.
HANDOVER_CONFTEST = """
import asyncio
import json

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pytest_integration_kit.isolation.kitthread import KIT_LOOP, KitLoop

HANDOVERS = [0]
QUERIES = []
SEEN = []
_run = KitLoop.run


async def counted(self, coro, discard=None):
    HANDOVERS[0] += 1
    return await _run(self, coro, discard)


KitLoop.run = counted


@event.listens_for(Engine, "connect")
def log_queries(dbapi_connection, record):
    raw = getattr(dbapi_connection, "driver_connection", None)  # psycopg's: no such thing
    if hasattr(raw, "add_query_logger"):
        raw.add_query_logger(lambda logged: QUERIES.append(logged.query))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    handovers, queries = HANDOVERS[0], len(QUERIES)
    result = yield
    # The loggers are called soon after each query, on the kit's loop: let them run.
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), KIT_LOOP.loop()).result(10)
    SEEN.append([HANDOVERS[0] - handovers, QUERIES[queries:]])
    return result


def pytest_sessionfinish(session):
    with open("seen.json", "w") as out:
        json.dump(SEEN, out)
"""

HANDOVER_TESTS = """
import pytest
from sqlalchemy import text


@pytest.mark.parametrize("n", range(3))
@pytest.mark.asyncio
async def test_row(postgres_async_session, n):
    s = postgres_async_session
    await s.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 5)"))
    await s.commit()
    assert (await s.execute(text("SELECT count(*) FROM orders"))).scalar() == 1


@pytest.mark.asyncio
async def test_unused(postgres_async_session):
    pass


def test_last():  # the run's teardown (closing the connection) is counted here
    pass
"""


def test_a_test_hands_over_once_per_round_trip_it_waits_for(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    """BEGIN and the session's savepoint go with the first statement, in one message; the commit's
    release and the next savepoint with the count (one message); the end is ROLLBACK
    and the clean in one hand-over, with no ROLLBACK TO SAVEPOINT before (the rollback
    drops savepoints). A test that sends nothing still gets its clean, in a hand-over
    of its own."""
    write_project(pytester)
    pytester.makeconftest(HANDOVER_CONFTEST)
    pytester.makepyfile(test_counted=HANDOVER_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    seen = json.loads(pytester.path.joinpath("seen.json").read_text())
    # The first test also opens the connection (and the dialect's first queries).
    # asyncpg logs no prepared statement's run (the INSERT, the count): the three
    # hand-overs are the INSERT's, the count's and the end's (before: 6, each
    # savepoint statement in one of its own; 8 before that, and a clean apart).
    # BEGIN and the first savepoint are one message (two before).
    whole = [
        "BEGIN; SAVEPOINT sa_savepoint_1",
        "RELEASE SAVEPOINT sa_savepoint_1; SAVEPOINT sa_savepoint_2",
        "ROLLBACK;",
        "SELECT _pik.clean()",
    ]
    assert seen[1:4] == [[3, whole], [3, whole], [1, ["SELECT _pik.clean()"]]], seen
