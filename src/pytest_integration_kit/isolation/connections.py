"""Raw driver connections whose every write is undone afterwards: psycopg, asyncpg, PyMySQL.

The SQLAlchemy sessions join an outer transaction with savepoints; a raw DB-API
connection has no such mode, so each driver gets the trick that fits it:

* **psycopg 3** — the connection is a subclass of :class:`psycopg.Connection` whose
  ``commit()`` releases and re-opens a savepoint and whose ``rollback()`` rolls back to
  it; ``with conn.transaction():`` blocks are savepoints already (the connection is
  always inside the outer transaction). The outer transaction is rolled back at the end.
* **asyncpg** — an outer :meth:`asyncpg.Connection.transaction` is started first, so
  every ``async with conn.transaction():`` of the code under test is a nested one: a
  savepoint, released on success and rolled back on error. Rolled back at the end.
* **PyMySQL** — a subclass of :class:`pymysql.connections.Connection` whose ``begin()``
  and ``commit()`` set a fresh savepoint (a ``BEGIN`` would commit in MySQL) and whose
  ``rollback()`` rolls back to it; ``autocommit(True)`` is refused.

What no driver can intercept — ``COMMIT`` sent as SQL, DDL that commits implicitly in
MySQL — is still undone: the connections identify themselves as the kit's (see
:data:`~pytest_integration_kit.isolation.tracking.KIT_MARKER`) and the write tracking
empties the tables written after the test, as it does for the ``truncate`` strategy.

Nothing here imports pytest: a script can use :func:`psycopg_rollback_connection` and
friends with :func:`driver_arguments` of an :class:`~pytest_integration_kit.Endpoint`.
"""

from __future__ import annotations

import importlib
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Final

from pytest_integration_kit.errors import MissingExtra
from pytest_integration_kit.isolation.admin import LOCK_TIMEOUT_SECONDS
from pytest_integration_kit.isolation.tracking import KIT_MARKER
from pytest_integration_kit.services.mysql import pymysql_transport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from types import ModuleType

    import psycopg

    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = [
    "DRIVERS",
    "SAVEPOINT",
    "asyncpg_connection",
    "driver_arguments",
    "psycopg_connection",
    "pymysql_connection",
    "require_driver",
]

#: The savepoint the test's ``commit()`` and ``rollback()`` move.
SAVEPOINT: Final = "pik_test"
#: driver → (importable module, the extra that installs it, the service it talks to).
DRIVERS: Final = {
    "psycopg": ("psycopg", "postgres", "postgres"),
    "asyncpg": ("asyncpg", "postgres", "postgres"),
    "pymysql": ("pymysql", "mysql", "mysql"),
}


def require_driver(driver: str, user: str = "") -> ModuleType:
    """Import ``driver``'s module; :class:`MissingExtra` naming the extra when absent."""
    module, extra, _ = DRIVERS[driver]
    try:
        return importlib.import_module(module)
    except ImportError:
        who = f"{user} needs" if user else "this needs"
        raise MissingExtra(
            f"{who} the {driver} driver, which is not installed: "
            f"pip install 'pytest-integration-kit[{extra}]'"
        ) from None


def driver_arguments(endpoint: Endpoint, driver: str) -> dict[str, Any]:
    """Keyword arguments for ``driver``'s connect function reaching ``endpoint``'s database.

    The connection is marked as the kit's (its writes are not reported as foreign) and
    waits at most :data:`~pytest_integration_kit.isolation.admin.LOCK_TIMEOUT_SECONDS`
    for a lock, like the kit's engines.
    """
    if driver not in DRIVERS:
        raise ValueError(f"driver={driver!r} is not one of {', '.join(DRIVERS)}")
    address = {"host": endpoint.host, "port": endpoint.port, "user": endpoint.user}
    if endpoint.password:
        address["password"] = endpoint.password
    settings = {"lock_timeout": f"{LOCK_TIMEOUT_SECONDS}s", KIT_MARKER: "on"}
    if driver == "psycopg":
        options = " ".join(f"-c {name}={value}" for name, value in settings.items())
        return {**address, "dbname": endpoint.database, "options": options}
    if driver == "asyncpg":
        return {**address, "database": endpoint.database, "server_settings": settings}
    return {
        **address,
        **pymysql_transport(endpoint),
        "database": endpoint.database,
        "charset": "utf8mb4",
        "init_command": f"SET @pik_kit = 1, SESSION innodb_lock_wait_timeout = "
        f"{LOCK_TIMEOUT_SECONDS}, SESSION lock_wait_timeout = {LOCK_TIMEOUT_SECONDS}",
    }


# -- psycopg ----------------------------------------------------------------------------

_CLASSES: dict[str, type] = {}


def _psycopg_class() -> type[psycopg.Connection[Any]]:
    if "psycopg" in _CLASSES:
        return _CLASSES["psycopg"]
    psycopg_module = require_driver("psycopg")
    base = psycopg_module.Connection
    status = psycopg_module.pq.TransactionStatus

    class RollbackConnection(base):  # type: ignore[valid-type,misc]
        """A psycopg connection kept inside one transaction: commits are savepoints."""

        def commit(self) -> None:
            """Keep what was done so far (a savepoint), inside the test's transaction."""
            if self.info.transaction_status == status.INERROR:
                self.rollback()  # what a failed transaction's COMMIT does
            elif self.info.transaction_status == status.IDLE:  # COMMIT was sent as SQL
                self.execute(f"SAVEPOINT {SAVEPOINT}")  # psycopg begins a transaction first
            else:
                self.execute(f"RELEASE SAVEPOINT {SAVEPOINT}; SAVEPOINT {SAVEPOINT}")

        def rollback(self) -> None:
            """Undo what was done since the last ``commit()``."""
            if self.info.transaction_status == status.IDLE:
                self.execute(f"SAVEPOINT {SAVEPOINT}")
                return
            try:
                self.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
            except psycopg_module.errors.InvalidSavepointSpecification:
                # COMMIT sent as SQL took the savepoint along (the tracking undoes what
                # it committed): roll back the rest and carry on.
                self.rollback_everything()
                self.execute(f"SAVEPOINT {SAVEPOINT}")

        def rollback_everything(self) -> None:
            """End the test's transaction, undoing all of it."""
            base.rollback(self)

    _CLASSES["psycopg"] = RollbackConnection
    return RollbackConnection


@contextmanager
def psycopg_connection(
    conninfo: str = "", *, rollback: bool = True, **kwargs: Any
) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg 3 connection (``psycopg.connect`` arguments), rolled back when the block ends.

    With ``rollback=False`` a plain connection, closed at the end (its commits are real).
    """
    if not rollback:
        psycopg_module = require_driver("psycopg")
        with psycopg_module.connect(conninfo, **kwargs) as plain:
            yield plain
        return
    cls = _psycopg_class()
    conn = cls.connect(conninfo, **kwargs)
    try:
        conn.execute(f"SAVEPOINT {SAVEPOINT}")  # opens the outer transaction too
        yield conn
    finally:
        try:
            if not conn.closed:
                conn.rollback_everything()  # type: ignore[attr-defined]
        finally:
            conn.close()


# -- asyncpg ----------------------------------------------------------------------------


@asynccontextmanager
async def asyncpg_connection(*, rollback: bool = True, **kwargs: Any) -> AsyncIterator[Any]:
    """An asyncpg connection (``asyncpg.connect`` arguments), rolled back when the block ends.

    The code's ``conn.transaction()`` blocks nest in an outer transaction (savepoints).
    With ``rollback=False`` a plain connection, closed at the end.
    """
    asyncpg = require_driver("asyncpg")
    conn = await asyncpg.connect(**kwargs)
    try:
        if rollback:
            await conn.transaction().start()
        yield conn
    finally:
        try:
            if rollback and not conn.is_closed():
                # Before the kit cleans the database: a close alone would leave the
                # server rolling back after the connection is gone.
                await conn.execute("ROLLBACK")
        finally:
            await conn.close(timeout=10)


# -- PyMySQL ----------------------------------------------------------------------------


def _pymysql_class() -> type:
    if "pymysql" in _CLASSES:
        return _CLASSES["pymysql"]
    pymysql = require_driver("pymysql")
    base = pymysql.connections.Connection

    class RollbackConnection(base):  # type: ignore[valid-type,misc]
        """A PyMySQL connection kept inside one transaction: commits are savepoints."""

        _pik_inside = False

        def begin(self) -> None:
            """Start a unit of work: a savepoint (``BEGIN`` would commit the test's)."""
            if not self._pik_inside:
                super().begin()
                return
            self.query(f"SAVEPOINT {SAVEPOINT}")

        def commit(self) -> None:
            """Keep what was done so far (a new savepoint), inside the test's transaction."""
            if not self._pik_inside:
                super().commit()
                return
            # Setting a savepoint of the same name replaces the old one.
            self.query(f"SAVEPOINT {SAVEPOINT}")

        def rollback(self) -> None:
            """Undo what was done since the last ``commit()``."""
            if not self._pik_inside:
                super().rollback()
                return
            try:
                self.query(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
            except pymysql.err.OperationalError as exc:
                if exc.args[0] != 1305:  # not "SAVEPOINT does not exist"
                    raise
                # DDL committed implicitly and took the savepoint with it: the tracking
                # undoes what that committed; roll back the rest and carry on.
                super().rollback()
                self.query(f"SAVEPOINT {SAVEPOINT}")

        def autocommit(self, value: object) -> None:
            """Refused inside the test's transaction: every statement would commit."""
            if self._pik_inside and value:
                raise pymysql.err.ProgrammingError(
                    "autocommit(True) on mysql_connection would commit the test's "
                    "transaction; the connection stays inside it until the test ends"
                )
            super().autocommit(value)

        def rollback_everything(self) -> None:
            """End the test's transaction, undoing all of it."""
            self._pik_inside = False
            super().rollback()

    _CLASSES["pymysql"] = RollbackConnection
    return RollbackConnection


@contextmanager
def pymysql_connection(*, rollback: bool = True, **kwargs: Any) -> Iterator[Any]:
    """A PyMySQL connection (``pymysql.connect`` arguments), rolled back when the block ends.

    With ``rollback=False`` a plain connection, closed at the end (its commits are real).
    """
    if not rollback:
        pymysql = require_driver("pymysql")
        plain = pymysql.connect(**kwargs)
        try:
            yield plain
        finally:
            plain.close()
        return
    conn = _pymysql_class()(**kwargs)
    try:
        conn.begin()
        conn.query(f"SAVEPOINT {SAVEPOINT}")
        conn._pik_inside = True
        yield conn
    finally:
        try:
            if conn.open:
                conn.rollback_everything()
        finally:
            if conn.open:
                conn.close()
