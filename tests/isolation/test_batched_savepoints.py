"""A rolled-back session's savepoints in fewer messages (PostgreSQL) or sent directly
(MySQL/MariaDB) behave as SQLAlchemy's own.

Each scenario runs twice on a real server, on one engine: once on a plain
connection, once inside :func:`batched_savepoints`; what the server holds after each
step, and what each step raised, must be the same. The message count itself is pinned
in test_round_trips.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg.pq
import pytest
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from pytest_integration_kit.backends.base import ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.isolation import kitloop
from pytest_integration_kit.isolation.batched_savepoints import batched_savepoints
from pytest_integration_kit.services import spec_for

Step = Callable[[Session], Any]


DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgres_async": "postgresql+psycopg_async",
    "postgres_asyncpg": "postgresql+asyncpg",
    "mysql": "mysql+pymysql",
}
#: The PostgreSQL engines.
POSTGRES = ["postgres", "postgres_async", "postgres_asyncpg"]


@pytest.fixture(scope="module", params=list(DRIVERS))
def engine(request: pytest.FixtureRequest) -> Iterator[Engine | AsyncEngine]:
    """psycopg on PostgreSQL, sync and async (its steps run in the AsyncSession's
    greenlet, as an async test's do), asyncpg on the kit's loop as the kit opens its
    connections, then PyMySQL on MariaDB; servers of the local backend, each with a
    table ``t``."""
    driver = DRIVERS[request.param]
    service = str(request.param).split("_")[0]
    server = LocalBackend().start(
        ServerOptions(
            spec=spec_for(service), image="", startup_timeout=60, session_id="tests-batched"
        )
    )
    url = make_url(server.endpoint.url)
    made = create_engine(url.set(drivername=DRIVERS[service]))
    try:
        with made.begin() as conn:
            conn.execute(text("CREATE TABLE t (v text)"))
        if driver == DRIVERS[service]:
            yield made
        else:
            on_kit_loop = {"async_creator_fn": kitloop.connect} if "asyncpg" in driver else {}
            async_engine = create_async_engine(
                url.set(drivername=driver), poolclass=NullPool, connect_args=on_kit_loop
            )
            yield async_engine
            asyncio.run(async_engine.dispose())
    finally:
        made.dispose()
        server.stop()


#: PostgreSQL's SQLSTATEs, as every driver reports them (their classes' names differ).
UNDEFINED_COLUMN, IN_FAILED_TRANSACTION, READ_ONLY_TRANSACTION = "42703", "25P02", "25006"


def failure(exc: DBAPIError) -> str:
    """What a step raised: PostgreSQL's SQLSTATE, or the driver's error class (MySQL)."""
    return getattr(exc.orig, "sqlstate", None) or type(exc.orig).__name__


def insert(value: str) -> Step:
    return lambda s: s.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})


def rows(session: Session) -> list[str]:
    return sorted(session.execute(text("SELECT v FROM t")).scalars())


def run(
    engine: Engine | AsyncEngine, steps: list[Step], *, batched: bool
) -> tuple[list[Any], Any, list[str]]:
    """Each step's result (or its error's class), what a look at the table on the
    connection shows at the end (or its error's class), and the savepoint statements
    that went through SQLAlchemy's execute; everything rolled back after."""
    through_sqlalchemy: list[str] = []

    def record(*args: Any) -> None:
        if "SAVEPOINT" in args[2]:
            through_sqlalchemy.append(args[2])

    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        if isinstance(engine, AsyncEngine):
            outcomes, seen = asyncio.run(_async_steps(engine, steps, batched=batched))
        else:
            outcomes, seen = _steps(engine, steps, batched=batched)
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    return outcomes, seen, through_sqlalchemy


def _batching(batched: bool) -> Callable[[Connection], AbstractContextManager[bool]]:
    return batched_savepoints if batched else lambda _: nullcontext(False)


def _steps(engine: Engine, steps: list[Step], *, batched: bool) -> tuple[list[Any], Any]:
    with engine.connect() as conn, _batching(batched)(conn) as batches:
        assert batches == batched
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        outcomes = _outcomes(session, steps)
        seen = _look(conn)
        session.close()
        outer.rollback()
    return outcomes, seen


async def _async_steps(
    engine: AsyncEngine, steps: list[Step], *, batched: bool
) -> tuple[list[Any], Any]:
    async with engine.connect() as conn:
        assert conn.sync_connection is not None
        with _batching(batched)(conn.sync_connection) as batches:
            assert batches == batched
            outer = await conn.begin()
            session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
            outcomes = await session.run_sync(_outcomes, steps)
            seen = await conn.run_sync(_look)
            await session.close()
            await outer.rollback()
    return outcomes, seen


def _outcomes(session: Session, steps: list[Step]) -> list[Any]:
    outcomes: list[Any] = []
    for step in steps:
        try:
            result = step(session)
            outcomes.append(result if isinstance(result, list | str) else "ok")
        except DBAPIError as exc:
            outcomes.append(failure(exc))
            session.rollback()
    return outcomes


def _look(conn: Connection) -> Any:
    try:
        return sorted(conn.execute(text("SELECT v FROM t")).scalars())
    except DBAPIError as exc:
        return failure(exc)


def same_both_ways(
    engine: Engine | AsyncEngine, steps: list[Step]
) -> tuple[list[Any], Any, list[str]]:
    """The outcomes and the end's look, the same both ways; the savepoint statements
    that went through SQLAlchemy's execute batched (plain: all of them)."""
    *plain, all_through_sqlalchemy = run(engine, steps, batched=False)
    *batched, through_sqlalchemy = run(engine, steps, batched=True)
    assert batched == plain
    assert all_through_sqlalchemy
    return plain[0], plain[1], through_sqlalchemy


def test_commits_rollbacks_and_nested_savepoints(engine: Engine | AsyncEngine) -> None:
    def nested(s: Session, *, commit: bool, value: str) -> str:
        inner = s.begin_nested()
        s.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
        if commit:
            inner.commit()
        else:
            inner.rollback()
        return value

    steps: list[Step] = [
        insert("a"),
        lambda s: s.commit(),
        insert("b"),
        lambda s: s.rollback(),  # b goes, the committed a stays
        rows,
        lambda s: nested(s, commit=True, value="c"),  # its release is held
        insert("d"),  # runs inside c's savepoint on the server, not after it
        lambda s: nested(s, commit=False, value="e"),  # rolls back e, not d
        rows,
        lambda s: s.commit(),
        rows,
    ]
    outcomes, seen, through_sqlalchemy = same_both_ways(engine, steps)
    # Only PostgreSQL's ROLLBACK TO goes the usual way (nothing to batch it with).
    assert all(s.startswith("ROLLBACK TO") for s in through_sqlalchemy), through_sqlalchemy
    if engine.dialect.name != "postgresql":
        assert through_sqlalchemy == []
    assert outcomes[4] == ["a"]
    assert outcomes[8] == ["a", "c", "d"]
    assert seen == ["a", "c", "d"]


@pytest.mark.parametrize("engine", POSTGRES, indirect=True)  # MySQL aborts none
def test_a_commit_in_an_aborted_transaction_raises_there(engine: Engine | AsyncEngine) -> None:
    """PostgreSQL: an error aborts the transaction; the commit's release raises."""

    def swallowed(s: Session) -> str:
        try:
            s.execute(text("SELECT no_such_column FROM t"))
        except DBAPIError as exc:
            return failure(exc)
        return "no error"

    steps: list[Step] = [insert("a"), swallowed, lambda s: s.commit()]
    outcomes, seen, through_sqlalchemy = same_both_ways(engine, steps)
    assert through_sqlalchemy == ["RELEASE SAVEPOINT sa_savepoint_1"]  # sent, not held
    assert outcomes[1] == UNDEFINED_COLUMN
    assert outcomes[2] == IN_FAILED_TRANSACTION  # at the commit, as without batching
    assert seen == IN_FAILED_TRANSACTION


@pytest.mark.parametrize("engine", POSTGRES, indirect=True)  # MySQL: no BEGIN to merge
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"isolation_level": "SERIALIZABLE"}, ["serializable", "off", "off"]),
        (
            {
                "isolation_level": "SERIALIZABLE",
                "postgresql_readonly": True,
                "postgresql_deferrable": True,
            },
            ["serializable", "on", "on"],
        ),
        ({"postgresql_readonly": True}, ["read committed", "on", "off"]),
    ],
    ids=["isolation level", "serializable, read only, deferrable", "read only"],
)
def test_the_connections_transaction_settings_begin_its_transaction(
    engine: Engine | AsyncEngine, options: dict[str, Any], expected: list[str]
) -> None:
    """PostgreSQL: the merged BEGIN is the one psycopg writes, settings and all; and on a
    pooled connection after them, the plain BEGIN again (CI, 2026-12-07: a level left on
    the connection made later tests fall back to psycopg's BEGIN)."""
    settings: Step = lambda s: [  # noqa: E731
        s.execute(text(f"SHOW transaction_{name}")).scalar_one()
        for name in ("isolation", "read_only", "deferrable")
    ]
    outcomes, _, through_sqlalchemy = same_both_ways(
        engine.execution_options(**options),
        [settings, lambda s: s.commit(), settings, insert("a")],
    )
    # Only the session's close goes the usual way (a ROLLBACK TO, in every scenario).
    assert all(s.startswith("ROLLBACK TO") for s in through_sqlalchemy), through_sqlalchemy
    assert outcomes[0] == outcomes[2] == expected
    assert outcomes[3] == (READ_ONLY_TRANSACTION if expected[1] == "on" else "ok")
    plain, _, through_sqlalchemy = same_both_ways(engine, [settings])
    assert plain == [["read committed", "off", "off"]]
    assert all(s.startswith("ROLLBACK TO") for s in through_sqlalchemy), through_sqlalchemy


@pytest.mark.parametrize("engine", ["postgres", "mysql"], indirect=True)
def test_the_pooled_connection_keeps_nothing_batched(engine: Engine) -> None:
    """After the block, the same pooled connection's savepoints are SQLAlchemy's own."""
    token = uuid.uuid4().hex
    with engine.connect() as conn, batched_savepoints(conn):
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        insert(token)(session)
        session.commit()  # a release held when the block ends
        raw = conn.connection.driver_connection
        assert raw is not None
        if engine.dialect.name == "postgresql":
            assert raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        session.close()
        outer.rollback()
    with engine.connect() as conn:
        assert conn.connection.driver_connection is raw  # the pool's one connection
        with conn.begin():
            nested = conn.begin_nested()
            conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": token})
            nested.rollback()
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
