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

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.url import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
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
) -> Iterator[None]:
    """Reconfigure each ``(sessionmaker, bind, savepoints)`` for the block; restore after.

    ``savepoints`` makes the sessions join the bind's transaction with
    ``join_transaction_mode="create_savepoint"``. A ``binds`` mapping the application
    configured is set aside meanwhile: every session goes to ``bind``.
    """
    saved = [(maker, dict(maker.kw)) for maker, _, _ in makers]
    try:
        for maker, bind, savepoints in makers:
            maker.kw.pop("binds", None)
            options: dict[str, Any] = {"bind": bind}
            if savepoints:
                options["join_transaction_mode"] = "create_savepoint"
            maker.configure(**options)
        yield
    finally:
        for maker, kw in saved:
            maker.kw.clear()
            maker.kw.update(kw)
