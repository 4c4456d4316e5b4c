"""A rolled-back session's savepoints in fewer messages behave as SQLAlchemy's own.

Each scenario runs twice on a real PostgreSQL server, on one engine: once on a plain
connection, once inside :func:`batched_savepoints`; what the server holds after each
step, and what each step raised, must be the same. The message count itself is pinned
in test_round_trips.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import psycopg.pq
import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from pytest_integration_kit.backends.base import ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.isolation.batched_savepoints import batched_savepoints
from pytest_integration_kit.services import spec_for

Step = Callable[[Session], Any]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """psycopg on a PostgreSQL server of the local backend, with a table ``t``."""
    server = LocalBackend().start(
        ServerOptions(
            spec=spec_for("postgres"), image="", startup_timeout=60, session_id="tests-batched"
        )
    )
    made = create_engine(make_url(server.endpoint.url).set(drivername="postgresql+psycopg"))
    try:
        with made.begin() as conn:
            conn.execute(text("CREATE TABLE t (v text)"))
        yield made
    finally:
        made.dispose()
        server.stop()


def insert(value: str) -> Step:
    return lambda s: s.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})


def rows(session: Session) -> list[str]:
    return sorted(session.execute(text("SELECT v FROM t")).scalars())


def run(engine: Engine, steps: list[Step], *, batched: bool) -> tuple[list[Any], Any]:
    """Each step's result (or its error's class), then what a look at the table on the
    connection shows at the end (or its error's class); everything rolled back after."""
    outcomes: list[Any] = []
    batching = batched_savepoints if batched else lambda _: nullcontext(False)
    with engine.connect() as conn, batching(conn) as batches:
        assert batches == batched
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        for step in steps:
            try:
                result = step(session)
                outcomes.append(result if isinstance(result, list | str) else "ok")
            except DBAPIError as exc:
                outcomes.append(type(exc.orig).__name__)
                session.rollback()
        try:
            seen: Any = sorted(conn.execute(text("SELECT v FROM t")).scalars())
        except DBAPIError as exc:
            seen = type(exc.orig).__name__
        session.close()
        outer.rollback()
    return outcomes, seen


def same_both_ways(engine: Engine, steps: list[Step]) -> tuple[list[Any], Any]:
    plain = run(engine, steps, batched=False)
    assert run(engine, steps, batched=True) == plain
    return plain


def test_commits_rollbacks_and_nested_savepoints(engine: Engine) -> None:
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
    outcomes, seen = same_both_ways(engine, steps)
    assert outcomes[4] == ["a"]
    assert outcomes[8] == ["a", "c", "d"]
    assert seen == ["a", "c", "d"]


def test_a_commit_in_an_aborted_transaction_raises_there(engine: Engine) -> None:
    def swallowed(s: Session) -> str:
        try:
            s.execute(text("SELECT no_such_column FROM t"))
        except DBAPIError as exc:
            return type(exc.orig).__name__
        return "no error"

    steps: list[Step] = [insert("a"), swallowed, lambda s: s.commit()]
    outcomes, seen = same_both_ways(engine, steps)
    assert outcomes[1] == "UndefinedColumn"
    assert outcomes[2] == "InFailedSqlTransaction"  # at the commit, as without batching
    assert seen == "InFailedSqlTransaction"


def test_an_isolation_level_of_the_engine_still_begins_the_transaction(engine: Engine) -> None:
    serial = engine.execution_options(isolation_level="SERIALIZABLE")
    level: Step = lambda s: s.execute(text("SHOW transaction_isolation")).scalar_one()  # noqa: E731
    outcomes, _ = same_both_ways(serial, [insert("a"), level, lambda s: s.commit(), level])
    assert outcomes[1] == outcomes[3] == "serializable"


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
