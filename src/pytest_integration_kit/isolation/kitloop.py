"""asyncpg connections kept between the tests' event loops, on an event loop of the kit's own.

pytest-asyncio gives every test a loop of its own by default, and an asyncpg
connection belongs to the loop that opened it (its protocol's futures and its socket's
registration are that loop's). Opened in the test's loop, each test pays a new
connection: the server's fork of a backend, the SCRAM login and, on a backend with an
empty statement cache, a Parse round trip before every statement — several times the
test's own queries.

So the kit opens asyncpg connections on one long-lived loop of its own, run by a daemon
thread (:class:`KitLoop`, one per process, started on first use), and keeps idle ones
between tests (:func:`~pytest_integration_kit.isolation.crossloop.cross_loop_pool`).
SQLAlchemy's asyncpg adapter is given an :class:`OnKitLoop` in place of the driver's
connection: every coroutine the adapter (or the test, through ``driver_connection``)
gets from it is run on the kit's loop, and the test's loop awaits its result — a
normal ``AsyncSession`` on the test's side, two thread hand-overs per round trip.
Cancelling the test's await cancels the work on the kit's loop. A connection handed
back with a transaction open, or closed, is replaced at the next checkout
(:func:`on_checkout`), and the adapter's asyncio lock is made anew for each loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator

    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.url import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from pytest_integration_kit.isolation.admin import DatabaseAdmin

__all__ = ["KIT_LOOP", "KitLoop", "OnKitLoop", "kept_asyncpg_engine", "on_checkout", "supported"]


class KitLoop:
    """One event loop run by a daemon thread, started on first use (again in a forked
    child, which has no copy of the thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, started if it is not (or if its thread is gone: a
        connection of the old loop then fails on its next use instead of hanging)."""
        with self._lock:
            if (
                self._loop is None
                or self._thread is None
                or self._pid != os.getpid()
                or not self._thread.is_alive()
            ):
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_run_forever, args=(loop,), name="integration-kit-asyncpg", daemon=True
                )
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def in_thread(self) -> bool:
        """Whether the caller is the loop's own thread."""
        return self._thread is threading.current_thread()

    async def run(
        self,
        coro: Coroutine[Any, Any, Any],
        discard: Callable[[Any], object] | None = None,
    ) -> Any:
        """Await ``coro``, run on the kit's loop, from the running (test's) loop;
        cancelling this await cancels it there. ``discard`` is given (on the kit's
        loop) a result nobody waits for any more: a connection opened too late."""
        if self.in_thread():  # awaiting it here would wait for ourselves
            coro.close()
            raise RuntimeError("the kit's asyncpg loop cannot wait for its own work")
        kit = self.loop()
        caller = asyncio.get_running_loop()
        handover = _Handover(coro, caller.create_future(), caller, kit, discard)
        kit.call_soon_threadsafe(handover.start)
        try:
            return await handover.outcome
        except asyncio.CancelledError:
            handover.cancel()
            raise

    def call_soon(self, function: Callable[[], object]) -> None:
        """Call ``function`` on the loop's thread, without waiting for it."""
        if self.in_thread():
            function()
        else:
            self.loop().call_soon_threadsafe(function)

    def stop(self) -> None:
        """Stop the loop and its thread (the next use starts another); for a loop
        whose connections are all closed."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None or self._pid != os.getpid():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


class _Handover:
    """One coroutine handed from a caller's loop to the kit's, and its outcome back.

    Leaner than ``run_coroutine_threadsafe`` + ``wrap_future`` (no concurrent future,
    no lock, no done callbacks): each side's thread is woken once per hand-over.
    """

    __slots__ = ("_caller", "_coro", "_discard", "_kit", "_task", "outcome")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        outcome: asyncio.Future[Any],
        caller: asyncio.AbstractEventLoop,
        kit: asyncio.AbstractEventLoop,
        discard: Callable[[Any], object] | None,
    ) -> None:
        self._coro, self.outcome, self._caller, self._kit = coro, outcome, caller, kit
        self._discard = discard
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        """On the kit's loop: run the coroutine (unless its caller gave up already)."""
        if self.outcome.cancelled():
            self._coro.close()
            return
        self._task = self._kit.create_task(self._run())

    async def _run(self) -> None:
        try:
            result = await self._coro
        except BaseException as error:  # the caller's to raise, not this loop's
            self._send(error, None)
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            self._send(None, result)

    def _send(self, error: BaseException | None, result: Any) -> None:
        try:
            self._caller.call_soon_threadsafe(self._deliver, error, result)
        except RuntimeError:  # the caller's loop is closed: nobody waits for it
            self._abandon(error, result)

    def _abandon(self, error: BaseException | None, result: Any) -> None:
        if error is None and self._discard is not None:
            self._discard(result)

    def _deliver(self, error: BaseException | None, result: Any) -> None:
        """On the caller's loop: the outcome of the coroutine becomes the future's."""
        if self.outcome.done():  # its waiter was cancelled
            with contextlib.suppress(RuntimeError):  # a kit loop gone took it along
                self._kit.call_soon_threadsafe(self._abandon, error, result)
            return
        if isinstance(error, asyncio.CancelledError):
            self.outcome.cancel()
        elif error is not None:
            self.outcome.set_exception(error)
        else:
            self.outcome.set_result(result)

    def cancel(self) -> None:
        """On the caller's loop, its wait cancelled: cancel the work on the kit's loop
        (queued after :meth:`start`, so it finds the task started or never started)."""
        # A kit loop that is gone took its work with it.
        with contextlib.suppress(RuntimeError):
            self._kit.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


#: The process's loop for asyncpg connections kept between tests.
KIT_LOOP = KitLoop()


class OnKitLoop:
    """An asyncpg object (connection, prepared statement, transaction, cursor) whose
    coroutines run on :data:`KIT_LOOP`: what they return, the caller's loop awaits.

    Every other attribute is the object's own; asyncpg objects it returns are wrapped
    the same way, rows and values are not. ``terminate()`` is handed to the kit's loop.
    """

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return _adopt(value(*args, **kwargs))

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def terminate(self) -> None:
        """Close the socket at once, on the loop that owns it."""
        KIT_LOOP.call_soon(self._target.terminate)

    def __await__(self) -> Generator[Any, None, Any]:
        return _hop(_awaited(self._target)).__await__()

    def __aiter__(self) -> Any:
        return _adopt(self._target.__aiter__())

    async def __anext__(self) -> Any:
        return await _hop(self._target.__anext__())

    async def __aenter__(self) -> Any:
        return await _hop(self._target.__aenter__())

    async def __aexit__(self, *exc_info: object) -> Any:
        return await _hop(self._target.__aexit__(*exc_info))

    def __repr__(self) -> str:
        return f"<{self._target!r} on the kit's loop>"


def _adopt(value: Any) -> Any:
    """``value`` as the caller may use it: a coroutine runs on the kit's loop, an
    asyncpg resource is wrapped, anything else is itself."""
    if asyncio.iscoroutine(value):
        return _hop(value)
    if isinstance(value, _resource_class()):
        return OnKitLoop(value)
    return value


@functools.cache
def _resource_class() -> type:
    """asyncpg's base class of what belongs to a connection (statements, cursors...)."""
    from asyncpg.connresource import ConnectionResource  # noqa: PLC0415 - only with this driver

    resource: type = ConnectionResource
    return resource


async def _hop(coro: Coroutine[Any, Any, Any]) -> Any:
    return _adopt(await KIT_LOOP.run(coro))


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _connect(*args: Any, **kwargs: Any) -> OnKitLoop:
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
        connect_args={"async_creator_fn": _connect},
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
