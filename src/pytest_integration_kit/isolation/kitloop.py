"""asyncpg connections kept between the tests' event loops, on an event loop of the kit's own.

pytest-asyncio gives every test a loop of its own by default, and an asyncpg
connection belongs to the loop that opened it (its protocol's futures and its socket's
registration are that loop's). Opened in the test's loop, each test pays a new
connection: the server's fork of a backend, the SCRAM login and, on a backend with an
empty statement cache, a Parse round trip before every statement — several times the
test's own queries.

So the kit opens asyncpg connections on one long-lived loop of its own, run by a daemon
thread (:class:`~pytest_integration_kit.isolation.kitthread.KitLoop`, one per process,
started on first use), and keeps idle ones between tests
(:func:`~pytest_integration_kit.isolation.crossloop.cross_loop_pool`). SQLAlchemy's
asyncpg adapter is given an :class:`OnKitLoop` in place of the driver's connection:
every coroutine the adapter (or the test, through ``driver_connection``) gets from it
is run on the kit's loop, and the test's loop awaits its result — a normal
``AsyncSession`` on the test's side, two thread wake-ups per hand-over. Cancelling the
test's await cancels the work on the kit's loop. A connection handed back with a
transaction open, or closed, is replaced at the next checkout (:func:`on_checkout`),
and the adapter's asyncio lock is made anew for each loop.

Work nobody waits for goes along with the next call instead of a hand-over of its own:
a transaction's ``BEGIN`` (the adapter starts one right before a statement), the
statements :func:`before_next_call` queues (a rolled-back session's savepoints: in one
message with the ``BEGIN`` before them, if any), and what :func:`after_next_call` asks
for (the session's clean after its ``ROLLBACK``).
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import weakref
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.isolation.kitthread import KIT_LOOP, KitLoop

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator

    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.url import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from pytest_integration_kit.isolation.admin import DatabaseAdmin

__all__ = [
    "KIT_LOOP",
    "Follower",
    "KitLoop",
    "OnKitLoop",
    "after_next_call",
    "before_next_call",
    "connect",
    "kept_asyncpg_engine",
    "on_checkout",
    "supported",
]


class OnKitLoop:
    """An asyncpg object (connection, prepared statement, transaction, cursor) whose
    coroutines run on :data:`KIT_LOOP`: what they return, the caller's loop awaits.

    Every other attribute is the object's own; asyncpg objects it returns are wrapped
    the same way, rows and values are not. ``terminate()`` is handed to the kit's loop.
    """

    __slots__ = ("_connection", "_target")

    def __init__(self, target: Any, connection: Any = None) -> None:
        object.__setattr__(self, "_target", target)
        # The connection the object belongs to: the key of its work taken along.
        object.__setattr__(self, "_connection", target if connection is None else connection)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value) or isinstance(value, type):
            return value
        connection = self._connection

        def call(*args: Any, **kwargs: Any) -> Any:
            return _adopt(value(*args, **kwargs), connection)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def is_in_transaction(self) -> bool:
        """The connection's, counting a transaction whose ``BEGIN`` waits to be sent."""
        inside = self._target.is_in_transaction
        return self._connection in _LEADING or bool(inside())

    def terminate(self) -> None:
        """Close the socket at once, on the loop that owns it."""
        KIT_LOOP.call_soon(self._target.terminate)

    def __await__(self) -> Generator[Any, None, Any]:
        return _hop(_awaited(self._target), self._connection).__await__()

    def __aiter__(self) -> Any:
        return _adopt(self._target.__aiter__(), self._connection)

    async def __anext__(self) -> Any:
        return await _hop(self._target.__anext__(), self._connection)

    async def __aenter__(self) -> Any:
        return await _hop(self._target.__aenter__(), self._connection)

    async def __aexit__(self, *exc_info: object) -> Any:
        return await _hop(self._target.__aexit__(*exc_info), self._connection)

    def __repr__(self) -> str:
        return f"<{self._target!r} on the kit's loop>"


def _adopt(value: Any, connection: Any) -> Any:
    """``value`` as the caller may use it: a coroutine runs on the kit's loop, an
    asyncpg resource (of ``connection``) is wrapped, anything else is itself."""
    if asyncio.iscoroutine(value):
        return _hop(value, connection)
    if isinstance(value, _transaction_class()):
        return _TransactionOnKitLoop(value, connection)
    if isinstance(value, _resource_class()):
        return OnKitLoop(value, connection)
    return value


class _TransactionOnKitLoop(OnKitLoop):
    """An asyncpg transaction whose ``start()`` (``BEGIN``) is sent with the next call on
    its connection, in that call's hand-over: SQLAlchemy's adapter starts one right
    before a statement, and each hand-over costs two thread wake-ups. Rolled back or
    committed before any call, it was never begun on the server: nothing is sent."""

    __slots__ = ()

    async def start(self) -> None:
        with _TAKEN_ALONG_LOCK:
            _LEADING.setdefault(self._connection, []).append(self._target)

    async def rollback(self) -> None:
        if not self._withdraw_start():
            await _hop(self._target.rollback(), self._connection)

    async def commit(self) -> None:
        if not self._withdraw_start():
            await _hop(self._target.commit(), self._connection)

    def _withdraw_start(self) -> bool:
        """Take the ``BEGIN`` back if it has not been sent, with the statements queued
        after it (:func:`before_next_call`), which belong to the transaction."""
        with _TAKEN_ALONG_LOCK:
            leading = _LEADING.get(self._connection)
            if leading is None or self._target not in leading:
                return False
            del leading[leading.index(self._target) :]
            if not leading:
                del _LEADING[self._connection]
            return True


@functools.cache
def _transaction_class() -> type:
    from asyncpg.transaction import Transaction  # noqa: PLC0415 - only with this driver

    transaction: type = Transaction
    return transaction


@functools.cache
def _resource_class() -> type:
    """asyncpg's base class of what belongs to a connection (statements, cursors...)."""
    from asyncpg.connresource import ConnectionResource  # noqa: PLC0415 - only with this driver

    resource: type = ConnectionResource
    return resource


async def _hop(coro: Coroutine[Any, Any, Any], connection: Any) -> Any:
    if _LEADING or _FOLLOWING:
        with _TAKEN_ALONG_LOCK:
            leading = _LEADING.pop(connection, None)
            following = _FOLLOWING.pop(connection, None)
        if leading or following:
            coro = _along(connection, leading or [], coro, following or [])
    return _adopt(await KIT_LOOP.run(coro), connection)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class Follower:
    """Work on a connection that goes to the kit's loop with the next call on it, run
    right after that call in the same hand-over (:func:`after_next_call`)."""

    __slots__ = ("_connection", "_error", "_make", "_result", "_state")

    def __init__(self, connection: Any, make: Callable[[Any], Awaitable[Any]]) -> None:
        self._connection, self._make = connection, make
        self._state = "waiting"  # then, on the kit's loop: "running", "done"
        self._result: Any = None
        self._error: BaseException | None = None

    async def run_here(self) -> None:
        """On the kit's loop: run the work once; its outcome is kept for :meth:`outcome`."""
        if self._state != "waiting":
            return
        self._state = "running"
        try:
            self._result = await self._make(self._connection)
        except Exception as error:  # the caller's to raise, from outcome()
            self._error = error
        self._state = "done"

    def withdraw(self) -> None:
        """Leave the work undone, if no call has taken it along yet."""
        with _TAKEN_ALONG_LOCK:
            following = _FOLLOWING.get(self._connection)
            if following is not None and self in following:
                following.remove(self)
                if not following:
                    del _FOLLOWING[self._connection]

    async def outcome(self) -> Any:
        """The work's result (or error): run on a hand-over of its own if no call (or
        only one that failed first) took it along."""
        if self._state == "waiting":
            self.withdraw()
            await KIT_LOOP.run(self.run_here())
        if self._state != "done":
            raise RuntimeError("the kit's asyncpg work was abandoned with its hand-over")
        if self._error is not None:
            raise self._error
        return self._result


def after_next_call(connection: OnKitLoop, make: Callable[[Any], Awaitable[Any]]) -> Follower:
    """``make(driver_connection)`` awaited on the kit's loop right after the next call
    on ``connection`` (if that call succeeds), in its hand-over: one thread hand-over
    for both. Await :meth:`Follower.outcome` for its result."""
    follower = Follower(connection._connection, make)
    with _TAKEN_ALONG_LOCK:
        _FOLLOWING.setdefault(connection._connection, []).append(follower)
    return follower


def before_next_call(connection: OnKitLoop, statement: str) -> None:
    """Send ``statement`` (no parameters, no rows) on the kit's loop right before the
    next call on ``connection``, in its hand-over; statements queued one after the other
    go in one message. An error it raises is that call's."""
    with _TAKEN_ALONG_LOCK:
        _LEADING.setdefault(connection._connection, []).append(statement)


async def _along(
    connection: Any,
    leading: list[Any],
    coro: Coroutine[Any, Any, Any],
    following: list[Follower],
) -> Any:
    """On the kit's loop: the transactions started and the statements queued first, in
    order, the call, then its followers."""
    try:
        transaction: Any = None
        statements: list[str] = []
        for item in [*leading, None]:
            if isinstance(item, str):
                statements.append(item)
                continue
            if transaction is not None:
                await _start(transaction, connection, "; ".join(statements))
            elif statements:
                await connection.execute("; ".join(statements))
            transaction, statements = item, []
    except BaseException:
        coro.close()
        raise
    result = await coro
    for follower in following:
        await follower.run_here()
    return result


async def _start(transaction: Any, connection: Any, after: str) -> None:
    """Start an asyncpg ``transaction``, ``after`` (statements) in its ``BEGIN``'s message.

    asyncpg's ``start()`` keeps its own checks and bookkeeping (the connection's top
    transaction, a nested one's savepoint); only the connection it sends its one
    statement through is :class:`_Appending` for the call. Where it sent nothing through
    it (an asyncpg whose transaction keeps its connection otherwise), ``after`` goes in
    a message of its own.
    """
    if not after:
        await transaction.start()
        return
    appending: _Appending | None = _Appending(connection, after)
    try:
        transaction._connection = appending
    except AttributeError:
        appending = None
    try:
        await transaction.start()
    finally:
        if appending is not None:
            transaction._connection = connection
    left = after if appending is None else appending._after
    if left:
        await connection.execute(left)


class _Appending:
    """An asyncpg connection as a transaction's ``start()`` sees it: the statement it
    sends (``BEGIN …;``, or a nested transaction's ``SAVEPOINT …;``) goes in one message
    with the statements queued after it; everything else is the connection's own."""

    __slots__ = ("_after", "_connection")

    def __init__(self, connection: Any, after: str) -> None:
        object.__setattr__(self, "_connection", connection)
        object.__setattr__(self, "_after", after)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection, name, value)  # the top transaction, on the connection

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        after = self._after
        if args or kwargs or not after:
            return await self._connection.execute(query, *args, **kwargs)
        object.__setattr__(self, "_after", "")  # once, whatever start() does next
        return await self._connection.execute(f"{query.rstrip().rstrip(';')}; {after}")


#: What waits for the next call on a connection (the driver's, not its wrapper):
#: transactions to start before it, work to run after it.
_LEADING: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
_FOLLOWING: weakref.WeakKeyDictionary[Any, list[Follower]] = weakref.WeakKeyDictionary()
_TAKEN_ALONG_LOCK = threading.Lock()


async def connect(*args: Any, **kwargs: Any) -> OnKitLoop:
    """``asyncpg.connect`` on the kit's loop (SQLAlchemy's ``async_creator_fn``)."""
    import asyncpg  # noqa: PLC0415 - only with this driver

    opened = await KIT_LOOP.run(asyncpg.connect(*args, **kwargs), discard=_terminate)
    return OnKitLoop(opened)


def _terminate(connection: Any) -> None:
    connection.terminate()


def supported() -> bool:
    """Whether SQLAlchemy lets the kit open its asyncpg connections (``async_creator_fn``,
    SQLAlchemy 2.0.16 and later); before, connections stay with the test's loop."""
    import sqlalchemy  # noqa: PLC0415 - optional dependency, imported when used

    release = tuple(int(part) for part in re.findall(r"\d+", sqlalchemy.__version__)[:3])
    return release >= (2, 0, 16)


def kept_asyncpg_engine(admin: DatabaseAdmin, url: URL, admin_engine: Engine) -> AsyncEngine:
    """An AsyncEngine on ``url`` (asyncpg) whose connections live on the kit's loop and
    are kept between the tests' loops (see the module's docstring)."""
    from sqlalchemy import event  # noqa: PLC0415 - optional dependency, imported when used

    from pytest_integration_kit.isolation import crossloop, loopbound  # noqa: PLC0415 - they import nothing of ours back

    engine = admin.kit_async_engine(
        loopbound.plain_url(url, admin_engine),
        poolclass=crossloop.cross_loop_pool(),
        connect_args={"async_creator_fn": connect},
    )
    event.listen(engine.sync_engine, "checkout", on_checkout)
    event.listen(engine.sync_engine, "close", loopbound.close_without_waiting)
    return engine


def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A fresh asyncio lock for the loop now running; a connection left closed or in a
    transaction (a test cancelled mid-query, a loop that ended first) is replaced."""
    from sqlalchemy.exc import DisconnectionError  # noqa: PLC0415 - optional dependency, imported when used

    raw = dbapi_connection.driver_connection
    if raw.is_closed() or raw.is_in_transaction():
        raise DisconnectionError("a connection left busy by an earlier event loop")
    dbapi_connection._execute_mutex = asyncio.Lock()
