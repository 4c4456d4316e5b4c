"""Pooled AsyncEngines that live as long as their event loop, and no longer.

Async connections belong to the loop that opened them. Tests in a function-scoped
loop cannot share any, but tests sharing a module- or session-scoped loop can: one
pooled engine per (loop, database, driver) spares each of them a new connection. The
engine is disposed when its loop shuts down — through an async generator registered
with the loop, which ``loop.shutdown_asyncgens()`` (run by ``asyncio.Runner`` and so
by pytest-asyncio) closes before the loop does.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncEngine

    from pytest_integration_kit.isolation.databases import IsolatedDatabases

__all__ = ["LoopEngines"]


async def _dispose_at_shutdown(engine: AsyncEngine) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await engine.dispose()


class LoopEngines:
    """One pooled AsyncEngine per running loop, database and driver."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, str], AsyncEngine]
        ] = weakref.WeakKeyDictionary()
        # The loop holds its async generators only weakly: we keep them alive.
        self._closers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[AsyncIterator[None]]
        ] = weakref.WeakKeyDictionary()

    async def engine(
        self, databases: IsolatedDatabases, database: str, driver: str | None = None
    ) -> AsyncEngine:
        """The running loop's pooled engine on ``database``, made on first use."""
        loop = asyncio.get_running_loop()
        chosen = driver or databases.async_driver()
        key = (database, chosen)
        with self._lock:
            engine = self._engines.setdefault(loop, {}).get(key)
        if engine is not None:
            return engine
        url = databases.async_engine(database, chosen).url
        engine = databases.admin.kit_async_engine(url, pool_size=2, max_overflow=8)
        closer = _dispose_at_shutdown(engine)
        await anext(closer)  # now registered with the loop's shutdown_asyncgens
        with self._lock:
            self._engines.setdefault(loop, {})[key] = engine
            self._closers.setdefault(loop, []).append(closer)
        return engine
