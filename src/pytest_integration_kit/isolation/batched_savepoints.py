"""A rolled-back session's savepoints in fewer round trips (PostgreSQL through psycopg)
and without SQLAlchemy's ``execute`` (that, and MySQL/MariaDB through PyMySQL).

A test session under the rollback strategy (SQLAlchemy's ``create_savepoint`` mode)
opens a savepoint at its first use and again after each ``commit``, which releases
one. Through SQLAlchemy each is a statement and a round trip of its own, and the
first follows psycopg's own ``BEGIN``, another: a test that commits once spent four
round trips on them. On that session's connection, while :func:`batched_savepoints`
is open:

* the transaction's first savepoint goes in one message with its ``BEGIN``
  (``BEGIN; SAVEPOINT sa_savepoint_1``; the ``BEGIN`` psycopg would write, with the
  connection's isolation level, read-only or deferrable settings);
* a release waits for the connection's next savepoint and goes with it
  (``RELEASE SAVEPOINT sa_savepoint_1; SAVEPOINT sa_savepoint_2``), or is made moot by
  the end's rollback. Nothing tells the two apart: a statement in between runs inside
  the savepoint instead of after it, and whatever later rolls back to an older
  savepoint or ends the transaction undoes or keeps both alike. In a transaction an
  error has aborted the release is sent at once, so ``commit`` raises there as before;
* the statements go to psycopg's connection directly, not through SQLAlchemy's
  ``execute`` (its ``savepoint`` events still fire; ``echo`` does not show them).

Through psycopg's ``AsyncConnection`` (an ``AsyncSession``'s connection) the same
messages are awaited on the event loop from the greenlet in which SQLAlchemy's async
dialect runs these methods. Through asyncpg on the kit's loop
(:mod:`~pytest_integration_kit.isolation.kitloop`) a savepoint (with a held release,
in one message) is not awaited at all: it goes to the kit's loop with the next call on
the connection, in that call's hand-over, as the transaction's ``BEGIN`` does. asyncpg
does not tell an aborted transaction from a healthy one, so there, after any error on
the connection, releases and savepoints go the usual way again.

On MySQL/MariaDB through PyMySQL no two statements share a message (the kit's
connections do not turn multi-statements on), so the savepoint statements only go to
PyMySQL's connection directly, each when SQLAlchemy asks for it.

A message that fails is sent again the usual way, through SQLAlchemy, which raises its
own error for it. Other drivers, and the connection outside the block, are untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection, Dialect, Engine

__all__ = ["batched_savepoints"]

#: The key of a batching connection's state in its pool record's ``info``.
STATE_KEY: Final = "pytest_integration_kit.batched_savepoints"
#: Set on a dialect once its savepoint methods batch.
INSTALLED: Final = "_pik_batched_savepoints"
#: Set on an engine once its errors mark batching connections failed.
WATCHED: Final = "_pik_batched_savepoints_watched"


class _Batching:
    """A connection's release that has not been sent yet, if any, and whether a
    statement on it failed."""

    __slots__ = ("failed", "pending")

    def __init__(self) -> None:
        self.pending: str | None = None
        #: A statement failed since the block began (asyncpg: the transaction may be
        #: aborted, which asyncpg does not say): nothing is held or queued any more.
        self.failed = False


@contextmanager
def batched_savepoints(connection: Connection) -> Iterator[bool]:
    """Batch ``connection``'s savepoint statements while the block runs (PostgreSQL
    through psycopg, sync or async; asyncpg on the kit's loop: with the next call;
    MySQL/MariaDB through PyMySQL: sent directly); yields whether."""
    dialect = connection.dialect
    methods = _METHODS.get(dialect.driver) if dialect.name in _SERVERS else None
    if methods is None or not methods.serves(connection):
        yield False
        return
    _install(dialect, methods)
    if methods.needs_errors:
        _watch_errors(connection.engine)
    info = connection.connection.info
    info[STATE_KEY] = _Batching()
    try:
        yield True
    finally:
        info.pop(STATE_KEY, None)


def _state(proxied: Any) -> _Batching | None:
    info = getattr(proxied, "info", None)
    return info.get(STATE_KEY) if isinstance(info, dict) else None


def _forget_release(proxied: Any) -> None:
    """Drop a held release: what ends the transaction, or rolls back past it, ends it."""
    state = _state(proxied)
    if state is not None:
        state.pending = None


def _watch_errors(engine: Engine) -> None:
    """Mark a batching connection of ``engine`` failed at any error of its statements."""
    if getattr(engine, WATCHED, False):
        return
    from sqlalchemy import event  # noqa: PLC0415 - optional dependency, imported when used

    event.listen(engine, "handle_error", _mark_failed)
    setattr(engine, WATCHED, True)


def _mark_failed(context: Any) -> None:
    connection = context.connection
    if connection is None or connection.closed or connection.invalidated:
        return  # discarded anyway; asking for its pool connection would raise here
    state = _state(connection.connection)
    if state is not None:
        state.failed = True
        state.pending = None


def _install(dialect: Dialect, methods: type[_Methods]) -> None:
    """Wrap the savepoint and transaction methods of this one dialect (an engine's own
    instance; other engines keep the class's): batching where a connection's state
    says so, the dialect's own elsewhere."""
    if getattr(dialect, INSTALLED, False):
        return
    wrapped = methods(dialect)
    dialect.do_savepoint = wrapped.savepoint  # type: ignore[method-assign]
    dialect.do_release_savepoint = wrapped.release  # type: ignore[method-assign]
    dialect.do_rollback_to_savepoint = wrapped.rollback_to  # type: ignore[method-assign]
    dialect.do_rollback = wrapped.rollback  # type: ignore[method-assign]
    dialect.do_commit = wrapped.commit  # type: ignore[method-assign]
    setattr(dialect, INSTALLED, True)


class _Methods:
    """The dialect's savepoint and transaction methods, as the dialect has them."""

    #: Whether a connection's state must hear of every error on it (:func:`_mark_failed`).
    needs_errors = False

    @staticmethod
    def serves(connection: Connection) -> bool:
        """Whether this connection's savepoints can be handled so (its driver does)."""
        return True

    def __init__(self, dialect: Dialect) -> None:
        self._quote = dialect.identifier_preparer.quote
        self._savepoint = dialect.do_savepoint
        self._release = dialect.do_release_savepoint
        self._rollback_to = dialect.do_rollback_to_savepoint
        self._rollback = dialect.do_rollback
        self._commit = dialect.do_commit

    def savepoint(self, connection: Connection, name: str) -> None:
        self._savepoint(connection, name)

    def release(self, connection: Connection, name: str) -> None:
        self._release(connection, name)

    def rollback_to(self, connection: Connection, name: str) -> None:
        self._rollback_to(connection, name)

    def rollback(self, dbapi_connection: Any) -> None:
        self._rollback(dbapi_connection)

    def commit(self, dbapi_connection: Any) -> None:
        self._commit(dbapi_connection)


class _HoldingMethods(_Methods):
    """Methods that may hold a release: what ends the transaction, or rolls back past
    the release, drops it."""

    def _after_release(self, pending: str | None, name: str) -> str:
        """Savepoint ``name``, after the held release of ``pending`` if any: one message."""
        release = f"RELEASE SAVEPOINT {self._quote(pending)}; " if pending else ""
        return f"{release}SAVEPOINT {self._quote(name)}"

    def rollback_to(self, connection: Connection, name: str) -> None:
        _forget_release(connection.connection)  # newer than ``name``: dropped with it
        self._rollback_to(connection, name)

    def rollback(self, dbapi_connection: Any) -> None:
        _forget_release(dbapi_connection)
        self._rollback(dbapi_connection)

    def commit(self, dbapi_connection: Any) -> None:
        _forget_release(dbapi_connection)
        self._commit(dbapi_connection)


class _BatchingMethods(_HoldingMethods):
    """psycopg: savepoints with the ``BEGIN`` or a held release, in one message."""

    def __init__(self, dialect: Dialect) -> None:
        from psycopg import Error, pq  # noqa: PLC0415 - optional dependency, imported when used

        super().__init__(dialect)
        self._error = Error
        self._send = self._exec
        if dialect.is_async:
            from psycopg.generators import execute  # noqa: PLC0415 - optional dependency, imported when used
            from sqlalchemy.util import await_only  # noqa: PLC0415 - optional dependency, imported when used

            self._execute, self._await = execute, await_only
            self._send = self._exchange
        self._idle = pq.TransactionStatus.IDLE
        self._in_transaction = pq.TransactionStatus.INTRANS
        self._done = pq.ExecStatus.COMMAND_OK

    def savepoint(self, connection: Connection, name: str) -> None:
        state, raw = _state(connection.connection), connection.connection.driver_connection
        if state is None or raw is None:
            self._savepoint(connection, name)
            return
        status = raw.pgconn.transaction_status
        pending, state.pending = state.pending, None
        begin = _begin(raw) if status == self._idle else None
        if begin is not None:
            message = f"{begin}; SAVEPOINT {self._quote(name)}"
        elif status == self._in_transaction:
            message = self._after_release(pending, name)
        else:  # an aborted transaction (raises it), autocommit, a pipeline
            self._savepoint(connection, name)
            return
        try:
            sent = self._send(raw, message.encode())
        except self._error:
            sent = False
        if not sent:
            self._savepoint(connection, name)

    def _exec(self, raw: Any, message: bytes) -> bool:
        """Send ``message`` on a psycopg ``Connection``; whether every statement ran."""
        # libpq's exec returns the last result; one that failed ends the message there.
        return bool(raw.pgconn.exec_(message).status == self._done)

    def _exchange(self, raw: Any, message: bytes) -> bool:
        """:meth:`_exec` on a psycopg ``AsyncConnection``, from the greenlet SQLAlchemy's
        async dialect runs its methods in: the event loop waits on the socket."""
        return bool(self._await(self._exchange_async(raw, message)))

    async def _exchange_async(self, raw: Any, message: bytes) -> bool:
        async with raw.lock:  # psycopg's own: what its cursors take to use the socket
            raw.pgconn.send_query(message)
            results = await raw.wait(self._execute(raw.pgconn))
        return all(result.status == self._done for result in results)

    def release(self, connection: Connection, name: str) -> None:
        state, raw = _state(connection.connection), connection.connection.driver_connection
        if state is None or raw is None:
            self._release(connection, name)
        elif raw.pgconn.transaction_status == self._in_transaction:
            state.pending = name  # an older savepoint's release includes a newer one's
        else:
            state.pending = None
            self._release(connection, name)


class _DirectMethods(_Methods):
    """PyMySQL: the savepoint statements straight to the driver for marked connections
    (nothing is held: without multi-statements a release could share no message)."""

    def __init__(self, dialect: Dialect) -> None:
        from pymysql import Error  # noqa: PLC0415 - optional dependency, imported when used

        super().__init__(dialect)
        self._error = Error

    def _send(self, connection: Connection, statement: str) -> bool:
        raw = connection.connection.driver_connection
        if raw is None or _state(connection.connection) is None:
            return False
        try:
            raw.query(statement)
        except self._error:  # sent again through SQLAlchemy, which raises its error
            return False
        return True

    def savepoint(self, connection: Connection, name: str) -> None:
        if not self._send(connection, f"SAVEPOINT {self._quote(name)}"):
            self._savepoint(connection, name)

    def release(self, connection: Connection, name: str) -> None:
        if not self._send(connection, f"RELEASE SAVEPOINT {self._quote(name)}"):
            self._release(connection, name)

    def rollback_to(self, connection: Connection, name: str) -> None:
        if not self._send(connection, f"ROLLBACK TO SAVEPOINT {self._quote(name)}"):
            self._rollback_to(connection, name)


class _KitLoopMethods(_HoldingMethods):
    """asyncpg on the kit's loop (:mod:`~pytest_integration_kit.isolation.kitloop`): a
    savepoint, with a held release, goes with the next call on the connection, in its
    hand-over to the kit's loop and in one message; a release is held. After any
    error on the connection (asyncpg does not say whether the transaction is aborted)
    both go the usual way, so ``commit`` raises where it did."""

    needs_errors = True

    def __init__(self, dialect: Dialect) -> None:
        from sqlalchemy.util import await_only  # noqa: PLC0415 - optional dependency, imported when used

        from pytest_integration_kit.isolation import kitloop  # noqa: PLC0415 - only with this driver

        super().__init__(dialect)
        self._await, self._kitloop = await_only, kitloop

    @staticmethod
    def serves(connection: Connection) -> bool:
        """Only a connection the kit opened on its loop (not one of a test's loop)."""
        from pytest_integration_kit.isolation import kitloop  # noqa: PLC0415 - only with this driver

        return isinstance(connection.connection.driver_connection, kitloop.OnKitLoop)

    def savepoint(self, connection: Connection, name: str) -> None:
        state, adapter = _state(connection.connection), connection.connection.dbapi_connection
        raw = connection.connection.driver_connection
        if (
            state is None
            or state.failed
            or getattr(adapter, "isolation_level", None) == "autocommit"
        ):
            self._savepoint(connection, name)
            return
        if adapter._transaction is None:  # type: ignore[union-attr]
            # SQLAlchemy's adapter begins right before a statement; the kit's loop sends
            # the BEGIN with the next call (this savepoint is queued for it too).
            self._await(adapter._start_transaction())  # type: ignore[union-attr]
        pending, state.pending = state.pending, None
        self._kitloop.before_next_call(raw, self._after_release(pending, name))  # type: ignore[arg-type]

    def release(self, connection: Connection, name: str) -> None:
        state = _state(connection.connection)
        if state is None or state.failed:
            self._release(connection, name)
        else:
            state.pending = name  # an older savepoint's release includes a newer one's


#: The servers (SQLAlchemy's dialect names) and drivers whose savepoints are handled.
_SERVERS: Final = frozenset({"postgresql", "mysql", "mariadb"})
_METHODS: Final[dict[str, type[_Methods]]] = {
    "psycopg": _BatchingMethods,
    "asyncpg": _KitLoopMethods,
    "pymysql": _DirectMethods,
}


def _begin(raw: Any) -> str | None:
    """The ``BEGIN`` psycopg would send for this connection (its isolation level,
    read-only and deferrable settings, the words psycopg writes), None in autocommit."""
    if raw.autocommit:
        return None
    parts = ["BEGIN"]
    if raw.isolation_level is not None:
        parts.append("ISOLATION LEVEL " + raw.isolation_level.name.replace("_", " "))
    if raw.read_only is not None:
        parts.append("READ ONLY" if raw.read_only else "READ WRITE")
    if raw.deferrable is not None:
        parts.append("DEFERRABLE" if raw.deferrable else "NOT DEFERRABLE")
    return " ".join(parts)
