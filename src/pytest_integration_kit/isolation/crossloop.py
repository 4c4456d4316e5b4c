"""A connection pool for async drivers whose connections belong to no event loop.

pytest-asyncio gives every test its own event loop by default, and an asyncpg or
aiomysql connection lives on the loop that opened it: each test pays a new
connection (TCP, authentication, start-up settings) — several times its queries. A
psycopg ``AsyncConnection`` is different: it waits on its socket through whichever
loop is running at each call, so an idle one can serve the next test's loop. This pool
keeps such connections between tests. On each checkout it gives the connection (and
SQLAlchemy's adapter around it) fresh ``asyncio.Lock`` objects — an asyncio lock binds
to the loop it first waited in — and replaces a connection that is not idle (a test
cancelled mid-query leaves one busy). Connections are closed by :func:`dispose`, which
needs no particular loop either.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import ConnectionPoolEntry, Pool

__all__ = ["CROSS_LOOP_DRIVERS", "cross_loop_pool", "dispose", "on_checkout"]

#: SQLAlchemy async drivers whose connections can move between event loops.
CROSS_LOOP_DRIVERS: Final = ("psycopg_async",)


def cross_loop_pool(size: int = 2) -> type[Pool]:
    """The pool class to give ``create_async_engine`` (``poolclass=``): up to ``size``
    idle connections kept between event loops."""
    from sqlalchemy.pool import Pool  # noqa: PLC0415 - optional dependency, imported when used

    class CrossLoopPool(Pool):
        """Idle connections kept between event loops (see the module's docstring)."""

        _is_asyncio = True
        cross_loop = True

        def __init__(self, creator: Any, **kwargs: Any) -> None:
            super().__init__(creator, **kwargs)
            self._idle: list[ConnectionPoolEntry] = []
            self._mutex = threading.Lock()

        def status(self) -> str:
            return f"CrossLoopPool size={size} idle={len(self._idle)}"

        def _do_get(self) -> ConnectionPoolEntry:
            with self._mutex:
                record = self._idle.pop() if self._idle else None
            return record if record is not None else self._create_connection()

        def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
            with self._mutex:
                if len(self._idle) < size:
                    self._idle.append(record)
                    return
            record.close()

        def dispose(self) -> None:
            with self._mutex:
                idle, self._idle = self._idle, []
            for record in idle:
                record.close()

        def recreate(self) -> Pool:
            return self.__class__(
                creator=self._creator,
                recycle=self._recycle,
                reset_on_return=self._reset_on_return,
                pre_ping=self._pre_ping,
                echo=self.echo,
                logging_name=self._orig_logging_name,
                _dispatch=self.dispatch,
                dialect=self._dialect,
            )

    return CrossLoopPool


def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Fresh asyncio locks for the loop now running; a connection left busy is replaced."""
    from psycopg.pq import TransactionStatus  # noqa: PLC0415 - only with this driver
    from sqlalchemy.exc import DisconnectionError  # noqa: PLC0415 - optional dependency, imported when used

    raw = dbapi_connection._connection
    if raw.closed or raw.broken or raw.info.transaction_status != TransactionStatus.IDLE:
        raise DisconnectionError("a connection left busy by an earlier event loop")
    raw.lock = asyncio.Lock()
    dbapi_connection._execute_mutex = asyncio.Lock()


def dispose(engine: AsyncEngine) -> None:
    """Close ``engine``'s idle connections from synchronous code, with or without a
    running loop (closing an async connection is a coroutine). Engines on another
    pool hold no idle connection: disposed as they are."""
    if not getattr(engine.sync_engine.pool, "cross_loop", False):
        engine.sync_engine.dispose()
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(engine.dispose())
        return
    # Called from inside a running loop: close them on a loop of their own.
    done = threading.Thread(target=lambda: asyncio.run(engine.dispose()), daemon=True)
    done.start()
    done.join(timeout=30)
