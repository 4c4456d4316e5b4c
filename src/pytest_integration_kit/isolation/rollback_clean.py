"""A rollback session whose end rolls back *and* cleans, in one round trip.

Under the rollback strategy the session's transaction is rolled back after the test,
and the tracking's clean routine (:mod:`~pytest_integration_kit.isolation.tracking`)
empties what other connections committed meanwhile. One after the other that was a
ROLLBACK, then BEGIN, the clean and COMMIT on the pool's connection: four round trips
where SQLAlchemy's join-an-external-transaction recipe makes one. Here the session's
own connection sends both at once:

* PostgreSQL: one simple-query message, ``ROLLBACK; SELECT _pik.clean()`` (psycopg
  and psycopg2 send a statement without parameters that way; the clean runs in its
  own implicit transaction, committed at the message's end);
* MySQL: ``CALL _pik_end()``, a procedure that rolls back, cleans and commits.

SQLAlchemy then closes the connection: its rollback drops the session's savepoints
without a statement (psycopg sends none at all: the server is already outside a
transaction; PyMySQL would send a ``ROLLBACK`` regardless, so that one connection's
rollback is a no-op while it closes), and the pool does not reset the connection again.

An AsyncSession on PostgreSQL ends the same way (:func:`async_rollback_and_clean`):
psycopg's ``AsyncConnection`` sends the same message; asyncpg sends no multi-statement
query that returns rows, so its ``ROLLBACK`` and the clean are two round trips, but on
the kit's loop (:mod:`~pytest_integration_kit.isolation.kitloop`) one hand-over.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from pytest_integration_kit.isolation import tracking
from pytest_integration_kit.isolation.batched_savepoints import batched_savepoints

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.orm import Session

    from pytest_integration_kit.isolation.admin import CleanReport, DatabaseAdmin

__all__ = [
    "async_rollback_and_clean",
    "end_statement",
    "rollback_and_clean",
    "rollback_clean_session",
]

#: PostgreSQL drivers that send a statement without parameters as one simple-query
#: message, so several statements may share it; with the others the clean is separate.
MULTI_STATEMENT_DRIVERS: Final = frozenset({"psycopg", "psycopg2"})


def end_statement(admin: DatabaseAdmin, driver: str) -> str | None:
    """The statement that rolls back and cleans at once on this server and driver."""
    if admin.service == "mysql":
        return tracking.MYSQL_END_STATEMENT
    if admin.service == "postgres" and driver in MULTI_STATEMENT_DRIVERS:
        return f"ROLLBACK; {admin.clean_statement}"
    return None


def rollback_and_clean(admin: DatabaseAdmin, connection: Connection) -> CleanReport | None:
    """Roll ``connection``'s transaction back on the server and clean, in one round trip.

    None (and nothing sent) when this driver cannot; the driver's errors propagate.
    """
    statement = end_statement(admin, connection.dialect.driver)
    if statement is None:
        return None
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement)
        if cursor.description is None:  # psycopg: the ROLLBACK's result comes first
            cursor.nextset()
        # MySQL's end sends no result set when there was nothing to clean: no row.
        row = cursor.fetchone() if cursor.description is not None else None
    finally:
        cursor.close()  # pymysql: reads the CALL's last result too
    return admin.clean_report(row)


async def async_rollback_and_clean(
    admin: DatabaseAdmin, connection: AsyncConnection
) -> CleanReport | None:
    """:func:`rollback_and_clean` for an AsyncConnection on PostgreSQL (psycopg: one
    round trip; asyncpg: ``ROLLBACK`` through SQLAlchemy, then the clean — on the kit's
    loop in the same hand-over). None (and nothing sent) for other servers and drivers,
    or when the clean failed after the rollback (the lease then cleans as usual).
    """
    if admin.service != "postgres":
        return None
    driver = connection.dialect.driver
    raw: Any = connection.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    if driver == "psycopg":  # the async dialect's name too
        async with raw.cursor() as cursor:
            await cursor.execute(f"ROLLBACK; {admin.clean_statement}")
            if cursor.description is None:  # the ROLLBACK's result comes first
                cursor.nextset()
            return admin.clean_report(await cursor.fetchone())
    if driver != "asyncpg":
        return None
    from pytest_integration_kit.isolation import kitloop  # noqa: PLC0415 - only with this driver

    # Through SQLAlchemy: asyncpg's transaction object and the adapter's know it ended.
    if isinstance(raw, kitloop.OnKitLoop):
        cleaned = kitloop.after_next_call(raw, lambda own: own.fetchrow(admin.clean_statement))
        try:
            await connection.rollback()
        except BaseException:
            cleaned.withdraw()
            raise
        fetch = cleaned.outcome()
    else:
        await connection.rollback()
        fetch = raw.fetchrow(admin.clean_statement)
    try:
        row = await fetch
    except Exception:  # a failed clean is done again by the lease, which reports it
        return None
    return admin.clean_report(row)


@contextmanager
def rollback_clean_session(
    engine: Engine, end: Callable[[Connection], bool], **session_options: Any
) -> Iterator[Session]:
    """:func:`~pytest_integration_kit.isolation.sessions.rollback_session`, ended by ``end``.

    ``end(connection)`` is called with the transaction still open; True says it rolled
    it back on the server itself (the session then only closes). On False the session
    ends as usual; on a driver error the connection is discarded (its state is
    unknown) and ``end`` is taken to have done nothing.
    """
    from sqlalchemy.orm import Session  # noqa: PLC0415 - optional dependency, imported when used

    with engine.connect() as conn, batched_savepoints(conn):
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint", **session_options)
        try:
            yield session
        finally:
            ended = False
            if outer.is_active and not conn.invalidated:
                try:
                    ended = end(conn)
                except conn.dialect.loaded_dbapi.Error:
                    conn.invalidate()
            if ended:
                # SQLAlchemy's rollback: savepoints dropped without a statement, no reset.
                _close_ended(conn)
            session.close()
            if outer.is_active:
                outer.rollback()


#: Drivers whose ``rollback()`` sends ``ROLLBACK`` even outside a transaction.
_ROLLBACK_ALWAYS_SENT: Final = frozenset({"pymysql"})


def _close_ended(conn: Connection) -> None:
    """Close ``conn``, whose transaction the end statement already rolled back.

    SQLAlchemy rolls back as it closes; with PyMySQL that is one more round trip for a
    server already outside a transaction (``_pik_end`` committed its clean), so this
    connection's ``rollback`` does nothing for the close. Only here: anywhere else the
    server may hold a transaction (or a read view) that a skipped rollback would leave.
    """
    dbapi = conn.connection.dbapi_connection
    if dbapi is None or conn.dialect.driver not in _ROLLBACK_ALWAYS_SENT:
        conn.close()
        return
    setattr(dbapi, "rollback", _nothing)  # noqa: B010 - shadows the method on this instance
    try:
        conn.close()
    finally:
        delattr(dbapi, "rollback")  # the class's method again, for the pool's next user


def _nothing() -> None:
    return None
