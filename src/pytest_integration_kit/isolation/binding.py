"""The application's own sessionmakers, bound into a test's database and restored after.

Code under test that opens ``SessionLocal()`` itself is outside any session a fixture
hands the test. :func:`bind_sessionmakers` reconfigures those sessionmakers for the
duration of a block:

* a sync ``sessionmaker`` joins a :class:`TestConnection` — one connection inside an
  outer transaction, shared with the test's own session fixtures — with
  ``join_transaction_mode="create_savepoint"``: its ``commit()`` releases a savepoint,
  and everything is rolled back at the end;
* an ``async_sessionmaker`` is bound to the test database's pool-less AsyncEngine: an
  async connection belongs to the event loop that opened it, and the application's
  loop (a test client's portal thread) is not the test's. Its commits are real, and the
  tables written are emptied after the test (the truncate strategy's mechanism).

Nothing here imports pytest.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from pytest_integration_kit.errors import ConfigError, IntegrationKitError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.url import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "SessionTurns",
    "TestConnection",
    "bind_sessionmakers",
    "bound_url",
    "check_sessionmaker",
    "is_async_sessionmaker",
]


class TestConnection:
    """One connection in an outer transaction: what a test's sessions join.

    Opened on first use; :meth:`close` rolls the transaction back and returns the
    connection to its pool.
    """

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            connection = self.engine.connect()
            connection.begin()
            self._connection = connection
        return self._connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            transaction = connection.get_transaction()
            if transaction is not None and transaction.is_active:
                transaction.rollback()
        finally:
            connection.close()


#: Seconds a session waits for another session's transaction on the test's connection.
TURN_TIMEOUT: Final = 30.0
#: Seconds a session waits before it collects garbage (then twice as long each time, up
#: to a second): a session the application dropped without closing it holds its turn
#: until the collector frees it (the session and its transaction refer to each other),
#: and a turn is normally free in milliseconds.
COLLECT_AFTER: Final = 0.05


class SessionTurns:
    """Once turned :attr:`on`, the bound sync sessions take turns on the test's connection:
    a session's transaction begins once the one before it has ended.

    Behind a live server, requests a client sends at once would begin savepoints on the
    shared connection while another session still rolled its own back (``savepoint …
    does not exist``, or a request that never answered); so did one request after
    another, before the live server held each response's status until the application
    had closed the request's session (FastAPI closes a yield dependency's session after
    sending the response). Off otherwise: the in-process clients return only once a
    request is over, its session's close included, and an application may open a second
    session inside the first's transaction, which would then wait for itself.

    A session dropped without a close (``db = SessionLocal(); yield db``) gives its turn
    up when it is garbage-collected; a waiting session collects garbage after
    :data:`COLLECT_AFTER` seconds, and again while it waits.
    """

    def __init__(self, timeout: float = TURN_TIMEOUT) -> None:
        self.timeout = timeout
        self.on = False
        self._turn = threading.Lock()
        # Re-entrant: a collection inside the guard may finalize a dropped session.
        self._guard = threading.RLock()
        #: The root transactions holding the turn (by id), each with the finalizer that
        #: releases it should its session be dropped: released at the transaction's end
        #: or the session's collection, in whichever thread that is.
        self._held: dict[int, weakref.finalize[Any, Any]] = {}

    def listen(self, maker: Any) -> None:
        from sqlalchemy import event  # noqa: PLC0415 - optional dependency, imported when used

        event.listen(maker, "after_transaction_create", self._created)
        event.listen(maker, "after_transaction_end", self._ended)

    def unlisten(self, maker: Any) -> None:
        from sqlalchemy import event  # noqa: PLC0415 - optional dependency, imported when used

        event.remove(maker, "after_transaction_create", self._created)
        event.remove(maker, "after_transaction_end", self._ended)

    def _acquire(self) -> bool:
        # Between waits, collect: the holder may be a session its request dropped.
        deadline = time.monotonic() + self.timeout
        wait = COLLECT_AFTER
        while not self._turn.acquire(timeout=max(0.0, min(wait, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return False
            gc.collect()
            wait = min(wait * 2, 1.0)
        return True

    def _created(self, session: Any, transaction: Any) -> None:
        if not self.on or transaction.parent is not None:
            return
        if not self._acquire():
            raise IntegrationKitError(
                f"integration_sessionmaker: a session waited {self.timeout:g} s for "
                "another session's transaction on the test's connection to end. Behind "
                "live_server the application's sessions take turns on that one connection, "
                "so a session opened inside another one's transaction, a session kept past "
                "its request with its transaction open (neither committed, rolled back nor "
                "closed), or a request that waits for another request, never gets its turn"
            )
        key = id(transaction)
        # The transaction's id stays unique while its entry is here: the entry leaves at
        # the transaction's end, or when its session (which holds it) is collected.
        dropped = weakref.finalize(session, self._release, key)
        dropped.atexit = False
        with self._guard:
            self._held[key] = dropped

    def _ended(self, session: Any, transaction: Any) -> None:
        dropped = self._release(id(transaction))
        if dropped is not None:
            dropped.detach()

    def _release(self, key: int) -> weakref.finalize[Any, Any] | None:
        with self._guard:
            dropped = self._held.pop(key, None)
        if dropped is not None:
            self._turn.release()
        return dropped


def is_async_sessionmaker(maker: Any) -> bool:
    from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: PLC0415 - optional dependency, imported when used

    return isinstance(maker, async_sessionmaker)


def check_sessionmaker(maker: Any, spec: str) -> None:
    """ConfigError unless ``maker`` is a ``sessionmaker`` or ``async_sessionmaker``."""
    from sqlalchemy.orm import sessionmaker  # noqa: PLC0415 - optional dependency, imported when used

    if not isinstance(maker, sessionmaker) and not is_async_sessionmaker(maker):
        raise ConfigError(
            f"integration_sessionmaker: {spec!r} is a {type(maker).__name__}; expected a "
            "sqlalchemy.orm.sessionmaker or sqlalchemy.ext.asyncio.async_sessionmaker"
        )


def bound_url(maker: Any) -> URL | None:
    """The URL of the engine ``maker`` is configured with, if any."""
    bind = maker.kw.get("bind")
    if bind is None:
        return None
    engine = getattr(bind, "sync_engine", bind)  # AsyncEngine / AsyncConnection
    engine = getattr(engine, "engine", engine)  # Connection
    url: URL | None = getattr(engine, "url", None)
    return url


@contextmanager
def bind_sessionmakers(
    makers: Sequence[tuple[Any, Connection | Engine | AsyncEngine, bool]],
    turns: SessionTurns | None = None,
) -> Iterator[None]:
    """Reconfigure each ``(sessionmaker, bind, savepoints)`` for the block; restore after.

    ``savepoints`` makes the sessions join the bind's transaction with
    ``join_transaction_mode="create_savepoint"`` (and take ``turns`` on it, when on). A
    ``binds`` mapping the application configured is set aside meanwhile: every session
    goes to ``bind``.
    """
    saved = [(maker, dict(maker.kw)) for maker, _, _ in makers]
    listened: list[Any] = []
    try:
        for maker, bind, savepoints in makers:
            maker.kw.pop("binds", None)
            options: dict[str, Any] = {"bind": bind}
            if savepoints:
                options["join_transaction_mode"] = "create_savepoint"
                if turns is not None:
                    turns.listen(maker)
                    listened.append(maker)
            maker.configure(**options)
        yield
    finally:
        if turns is not None:
            for maker in listened:
                turns.unlisten(maker)
        for maker, kw in saved:
            maker.kw.clear()
            maker.kw.update(kw)
