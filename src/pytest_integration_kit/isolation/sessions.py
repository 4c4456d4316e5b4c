"""SQLAlchemy sessions whose every write is undone afterwards, sync and async.

The session is bound to a connection inside an outer transaction and joins it with
``join_transaction_mode="create_savepoint"``: the code under test may ``commit()`` and
``rollback()`` as it likes — those act on savepoints — and the outer transaction is
rolled back when the block ends.
"""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["async_rollback_session", "rollback_session"]


@contextmanager
def rollback_session(engine: Engine, **session_options: Any) -> Iterator[Session]:
    """A Session on ``engine`` whose work is rolled back at the end, commits included."""
    from sqlalchemy.orm import Session  # noqa: PLC0415 - optional dependency, imported when used

    with engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint", **session_options)
        try:
            yield session
        finally:
            session.close()
            if outer.is_active:
                outer.rollback()


@asynccontextmanager
async def async_rollback_session(
    engine: AsyncEngine,
    *,
    session_class: type | None = None,
    end: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    batch_savepoints: bool = False,
    **session_options: Any,
) -> AsyncIterator[AsyncSession]:
    """The AsyncSession counterpart of :func:`rollback_session` (of ``session_class``).

    ``end(connection)``, if given, is awaited with the transaction still open: it may
    end it on the server (and clean, in the same round trip or hand-over, see
    :mod:`~pytest_integration_kit.isolation.rollback_clean`). On a driver error the
    connection is discarded (its state is unknown). The outer transaction is rolled
    back before the session closes: that drops the session's savepoints without a
    statement (closing the session first sent a ``ROLLBACK TO SAVEPOINT`` the rollback
    makes moot). ``batch_savepoints``: the session's savepoints go to the server as
    :func:`~pytest_integration_kit.isolation.batched_savepoints.batched_savepoints`
    sends them (psycopg: with its ``BEGIN``, and a release with the next savepoint).
    """
    from sqlalchemy.ext.asyncio import AsyncSession  # noqa: PLC0415 - optional dependency, imported when used

    from pytest_integration_kit.isolation.batched_savepoints import (  # noqa: PLC0415 - a server's layer: not at the plugin's import
        batched_savepoints,
    )

    async with engine.connect() as conn:
        sync_connection = conn.sync_connection
        batching = (
            batched_savepoints(sync_connection)
            if batch_savepoints and sync_connection is not None
            else nullcontext()
        )
        with batching:
            outer = await conn.begin()
            session: AsyncSession = (session_class or AsyncSession)(
                bind=conn, join_transaction_mode="create_savepoint", **session_options
            )
            try:
                yield session
            finally:
                try:
                    if end is not None and outer.is_active and not conn.invalidated:
                        try:
                            await end(conn)
                        except conn.dialect.loaded_dbapi.Error:
                            await conn.invalidate()
                    if outer.is_active:
                        await outer.rollback()
                finally:
                    await session.close()
