"""Database administration per kind of server: create, clone, drop, lock, track writes.

This module holds what every kind shares and finds each kind's admin by service name
(:func:`admin_for`); the kinds are :mod:`~pytest_integration_kit.isolation.postgres_admin`
(``CREATE DATABASE … TEMPLATE``) and :mod:`~pytest_integration_kit.isolation.mysql_admin`
(no templates: a copy). Both drop a database even while connections to it are open.

The engines tests use (:meth:`DatabaseAdmin.kit_engine`) identify themselves to the
write tracking and wait at most :data:`LOCK_TIMEOUT_SECONDS` for a lock: a test whose
second connection waits on its own session's transaction fails fast, with an
explanation, instead of hanging.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.interfaces import ExceptionContext
    from sqlalchemy.engine.url import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = [
    "ADMIN_MODULES",
    "LOCK_TIMEOUT_SECONDS",
    "CleanReport",
    "DatabaseAdmin",
    "admin_for",
    "lock_timeout_setting",
    "report_names",
    "run_raw",
]

#: How long the kit's connections (and, on PostgreSQL, any connection to a database
#: the kit made) wait for a lock before the statement fails. Long enough for real
#: contention between a test's threads, short enough that a test waiting on its own
#: open transaction fails in seconds instead of hanging.
LOCK_TIMEOUT_SECONDS = 5

LOCK_TIMEOUT_EXPLANATION = (
    "pytest-integration-kit: this statement waited {seconds} s for a lock and was "
    "cancelled ({setting} = {seconds} s, set by the kit so that a test cannot hang on "
    "itself). The lock is most likely held by another connection of this same test: "
    "under the rollback strategy the session's transaction stays open until the test "
    "ends, so a second connection (the engine fixture, an engine of the test's own, "
    "another process) that touches the same rows waits for it. Write through the "
    "session only, or use @pytest.mark.isolation('truncate') for this test."
)


@dataclass(frozen=True)
class CleanReport:
    """What a clean found: tables written by connections other than the kit's
    (``foreign``), and tables whose columns changed since the template was built."""

    foreign: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


def report_names(value: object) -> tuple[str, ...]:
    """Table names as a clean routine reports them (a comma-separated text or an array)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(sorted(n.strip() for n in value.split(",") if n.strip()))
    return tuple(sorted(str(n) for n in value))  # type: ignore[attr-defined]


def lock_timeout_setting(error: BaseException) -> str | None:
    """The setting that ended ``error``'s lock wait, if it is a lock timeout."""
    text = str(getattr(error, "orig", None) or error)
    if "lock timeout" in text:
        return "lock_timeout"
    if "Lock wait timeout exceeded" in text:
        return "innodb_lock_wait_timeout / lock_wait_timeout"
    return None


def _explain_lock_timeout(context: ExceptionContext) -> None:
    """Add the kit's explanation to a lock timeout on one of its connections."""
    error = context.sqlalchemy_exception
    setting = lock_timeout_setting(context.original_exception)
    if error is None or not hasattr(error, "add_detail") or setting is None:
        return
    error.add_detail(LOCK_TIMEOUT_EXPLANATION.format(seconds=LOCK_TIMEOUT_SECONDS, setting=setting))


class DatabaseAdmin(ABC):
    """What isolation needs from a SQL server, on an autocommit admin connection."""

    service: ClassVar[str]
    #: SQLAlchemy drivers for AsyncEngines, in order of preference.
    async_drivers: ClassVar[tuple[str, ...]]
    #: The statement that empties what a test wrote (truncate strategy).
    clean_statement: ClassVar[str]
    #: The statement that opens every table in a new connection (clones, ahead of use).
    warm_statement: ClassVar[str]

    def engine(self, endpoint: Endpoint, database: str | None = None, **kwargs: Any) -> Engine:
        from sqlalchemy import create_engine  # noqa: PLC0415 - optional dependency, imported when used

        target = endpoint if database is None else endpoint.with_database(database)
        connect_args = {**self.transport_args(target), **kwargs.pop("connect_args", {})}
        if connect_args:
            kwargs["connect_args"] = connect_args
        return create_engine(target.url, **kwargs)

    def admin_engine(self, endpoint: Endpoint) -> Engine:
        from sqlalchemy.pool import NullPool  # noqa: PLC0415 - optional dependency, imported when used

        return self.engine(endpoint, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    @abstractmethod
    def kit_connect_args(self, url: URL) -> dict[str, Any]:
        """Driver arguments marking a connection as the kit's, with the lock timeout."""

    def transport_args(self, endpoint: Endpoint) -> dict[str, Any]:
        """Driver arguments for how the kit's connections reach ``endpoint`` (its URL's
        driver): none by default."""
        return {}

    def kit_engine(self, endpoint: Endpoint, database: str, **kwargs: Any) -> Engine:
        """An Engine for tests on ``database``: marked as the kit's, lock waits bounded."""
        from sqlalchemy import create_engine, event, make_url  # noqa: PLC0415 - optional dependency, imported when used

        target = endpoint.with_database(database)
        url = make_url(target.url)
        connect_args = {**self.kit_connect_args(url), **self.transport_args(target)}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "handle_error", _explain_lock_timeout)
        return engine

    def kit_async_engine(self, url: URL, **kwargs: Any) -> AsyncEngine:
        """The asyncio counterpart of :meth:`kit_engine`, for ``url`` (an async driver);
        ``connect_args`` are added to the kit's."""
        from sqlalchemy import event  # noqa: PLC0415 - optional dependency, imported when used
        from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415 - optional dependency, imported when used

        connect_args = {**self.kit_connect_args(url), **kwargs.pop("connect_args", {})}
        engine = create_async_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine.sync_engine, "handle_error", _explain_lock_timeout)
        return engine

    @abstractmethod
    def database_defaults(self, conn: Connection, name: str) -> None:
        """Settings for every connection to ``name``, where the server keeps them."""

    @abstractmethod
    def clean_report(self, row: Any) -> CleanReport:
        """Read the row :attr:`clean_statement` returns."""

    @abstractmethod
    def lock(self, conn: Connection, key: str) -> None:
        """Wait for a server-wide lock named ``key`` (held by this connection)."""

    @abstractmethod
    def try_lock(self, conn: Connection, key: str) -> bool:
        """Take the server-wide lock ``key`` without waiting; False when someone holds it.

        Held by ``conn`` until :meth:`unlock` or until the connection ends (a process
        that dies gives its locks back with its connections).
        """

    @abstractmethod
    def unlock(self, conn: Connection, key: str) -> None: ...

    @abstractmethod
    def template_state(self, conn: Connection, name: str) -> str:
        """``"absent"``, ``"ready"`` or ``"incomplete"`` (a builder died half-way)."""

    @abstractmethod
    def create_empty(self, conn: Connection, name: str, *, kit_server: bool = False) -> None:
        """Create ``name`` empty. ``kit_server``: the kit started this server, so its own
        template database (PostgreSQL's template1, carrying ``integration_postgres_init``
        and ``_extensions``) is the starting point; else a pristine one."""

    @abstractmethod
    def install_tracking(self, engine: Engine) -> None:
        """Add the write tracking of :mod:`~pytest_integration_kit.isolation.tracking`."""

    @abstractmethod
    def mark_ready(self, conn: Connection, name: str, fingerprint: str) -> None:
        """Declare the template complete: the last step of a build."""

    @abstractmethod
    def clone(
        self, conn: Connection, endpoint: Endpoint, template: str, name: str, *, label: str = ""
    ) -> None:
        """Create ``name`` as a copy of ``template`` (schema, seed rows, tracking).

        ``label`` is attached as soon as the database exists, before any copying: a
        process killed half-way leaves a database its reaper can recognise.
        """

    @abstractmethod
    def drop(self, conn: Connection, name: str) -> None:
        """Drop ``name`` if it exists, even with connections still open to it."""

    @abstractmethod
    def open_transactions(self, conn: Connection, name: str) -> list[str]:
        """Sessions on ``name`` left inside a transaction, described for people."""

    @abstractmethod
    def end_transactions(self, conn: Connection, name: str) -> None:
        """End the sessions :meth:`open_transactions` lists (their work is rolled back)."""

    @abstractmethod
    def label(self, conn: Connection, name: str, text: str) -> None:
        """Attach ``text`` to database ``name`` (who made it), where the server allows."""

    @abstractmethod
    def labelled(self, conn: Connection, prefix: str, *, templates: bool = False) -> dict[str, str]:
        """Databases whose names start with ``prefix`` and their labels.

        PostgreSQL tells templates apart (``templates``); MySQL has none, and the
        callers tell them by name.
        """

    def drop_template(self, conn: Connection, name: str) -> None:
        self.drop(conn, name)

    def exists(self, conn: Connection, name: str) -> bool:
        return self.template_state(conn, name) != "absent"

    @abstractmethod
    def server_time(self, conn: Connection) -> float:
        """The server's clock, in seconds since the epoch: leases are on it, so hosts
        whose clocks disagree still agree on when one ran out."""


def run_raw(conn: Connection, statements: Iterable[str]) -> None:
    """Run statements on the driver's cursor: no parameter markers, so % and $ stay as written."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()


#: The admin of each kind of server: its module, imported when a server of that kind is
#: first isolated (a run on PostgreSQL alone never imports MySQL's).
ADMIN_MODULES: dict[str, str] = {
    "postgres": "pytest_integration_kit.isolation.postgres_admin",
    "mysql": "pytest_integration_kit.isolation.mysql_admin",
}
_ADMINS: dict[str, DatabaseAdmin] = {}


def admin_for(service: str) -> DatabaseAdmin:
    """The one admin of ``service``'s kind of server (ValueError for one isolation
    does not support)."""
    admin = _ADMINS.get(service)
    if admin is None:
        try:
            module = ADMIN_MODULES[service]
        except KeyError:
            raise ValueError(
                f"isolation supports {', '.join(ADMIN_MODULES)} databases, not {service!r}"
            ) from None
        admin = _ADMINS[service] = importlib.import_module(module).ADMIN
    return admin
