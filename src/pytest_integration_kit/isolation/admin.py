"""Database administration per kind of server: create, clone, drop, lock, track writes.

PostgreSQL clones with ``CREATE DATABASE … TEMPLATE``. MySQL has no templates, so a
copy replays each table's ``SHOW CREATE TABLE`` and its rows, then recreates the
triggers. Both drop a database even while connections to it are open.

The engines tests use (:meth:`DatabaseAdmin.kit_engine`) identify themselves to the
write tracking and wait at most :data:`LOCK_TIMEOUT_SECONDS` for a lock: a test whose
second connection waits on its own session's transaction fails fast, with an
explanation, instead of hanging.
"""

# ruff: noqa: S608 - statements are built from identifiers we quote ourselves, never from input

from __future__ import annotations

import contextlib
import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pytest_integration_kit.isolation import tracking

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.interfaces import ExceptionContext
    from sqlalchemy.engine.url import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = [
    "ADMINS",
    "LOCK_TIMEOUT_SECONDS",
    "CleanReport",
    "DatabaseAdmin",
    "MySQLAdmin",
    "PostgresAdmin",
    "admin_for",
    "lock_timeout_setting",
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


def _names(value: object) -> tuple[str, ...]:
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

    def engine(self, endpoint: Endpoint, database: str | None = None, **kwargs: object) -> Engine:
        from sqlalchemy import create_engine  # noqa: PLC0415 - optional dependency, imported when used

        target = endpoint if database is None else endpoint.with_database(database)
        return create_engine(target.url, **kwargs)

    def admin_engine(self, endpoint: Endpoint) -> Engine:
        from sqlalchemy.pool import NullPool  # noqa: PLC0415 - optional dependency, imported when used

        return self.engine(endpoint, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    @abstractmethod
    def kit_connect_args(self, url: URL) -> dict[str, Any]:
        """Driver arguments marking a connection as the kit's, with the lock timeout."""

    def kit_engine(self, endpoint: Endpoint, database: str, **kwargs: Any) -> Engine:
        """An Engine for tests on ``database``: marked as the kit's, lock waits bounded."""
        from sqlalchemy import create_engine, event, make_url  # noqa: PLC0415 - optional dependency, imported when used

        url = make_url(endpoint.with_database(database).url)
        engine = create_engine(url, connect_args=self.kit_connect_args(url), **kwargs)
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


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresAdmin(DatabaseAdmin):
    service = "postgres"
    async_drivers = ("asyncpg", "psycopg_async")
    clean_statement = f"SELECT {tracking.POSTGRES_SCHEMA}.clean()"
    warm_statement = f"SELECT {tracking.POSTGRES_SCHEMA}.warm()"

    def kit_connect_args(self, url: URL) -> dict[str, Any]:
        settings = {"lock_timeout": f"{LOCK_TIMEOUT_SECONDS}s", tracking.KIT_MARKER: "on"}
        if url.get_driver_name() == "asyncpg":
            return {"server_settings": settings}
        # libpq (psycopg, psycopg2): start-up options, no extra round trip.
        given = url.query.get("options")
        given = given if isinstance(given, str) else " ".join(given or ())
        ours = " ".join(f"-c {name}={value}" for name, value in settings.items())
        return {"options": f"{given} {ours}".strip()}

    def database_defaults(self, conn: Connection, name: str) -> None:
        # Connections the kit does not make (the code's own engine, another process)
        # get the lock timeout too: none of them can hang on the test's transaction.
        conn.exec_driver_sql(
            f"ALTER DATABASE {_pg_ident(name)} SET lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'"
        )

    def clean_report(self, row: Any) -> CleanReport:
        return CleanReport(foreign=_names(row[0]) if row is not None else ())

    def lock(self, conn: Connection, key: str) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _lock_number(key)})

    def try_lock(self, conn: Connection, key: str) -> bool:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _lock_number(key)})
        return bool(got.scalar())

    def unlock(self, conn: Connection, key: str) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_number(key)})

    def template_state(self, conn: Connection, name: str) -> str:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        row = conn.execute(
            text("SELECT datistemplate FROM pg_database WHERE datname = :n"), {"n": name}
        ).first()
        if row is None:
            return "absent"
        return "ready" if row[0] else "incomplete"

    def create_empty(self, conn: Connection, name: str, *, kit_server: bool = False) -> None:
        base = "template1" if kit_server else "template0"
        conn.exec_driver_sql(f"CREATE DATABASE {_pg_ident(name)} TEMPLATE {base}")

    def install_tracking(self, engine: Engine) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        with engine.begin() as conn:
            tables = [
                (str(r[0]), str(r[1]))
                for r in conn.execute(
                    text(
                        "SELECT n.nspname, c.relname FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
                        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', :s) "
                        "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2"
                    ),
                    {"s": tracking.POSTGRES_SCHEMA},
                )
            ]
            edges = [
                ((str(r[0]), str(r[1])), (str(r[2]), str(r[3])))
                for r in conn.execute(
                    text(
                        "SELECT cn.nspname, cc.relname, pn.nspname, pc.relname "
                        "FROM pg_constraint k "
                        "JOIN pg_class cc ON cc.oid = k.conrelid "
                        "JOIN pg_namespace cn ON cn.oid = cc.relnamespace "
                        "JOIN pg_class pc ON pc.oid = k.confrelid "
                        "JOIN pg_namespace pn ON pn.oid = pc.relnamespace "
                        "WHERE k.contype = 'f'"
                    )
                )
            ]
            keyed = {f"{s}.{n}": (s, n) for s, n in tables}
            order_names = tracking.dependency_order(
                keyed, [(f"{c[0]}.{c[1]}", f"{p[0]}.{p[1]}") for c, p in edges]
            )
            order = {keyed[name]: i for i, name in enumerate(order_names)}
            seeded = [
                (s, n)
                for s, n in tables
                if conn.exec_driver_sql(
                    f"SELECT EXISTS (SELECT 1 FROM {_pg_ident(s)}.{_pg_ident(n)})"
                ).scalar()
            ]
            _run_raw(conn, tracking.postgres_tracking_statements(tables, order, seeded))

    def mark_ready(self, conn: Connection, name: str, fingerprint: str) -> None:
        conn.exec_driver_sql(f"ALTER DATABASE {_pg_ident(name)} IS_TEMPLATE true")

    def clone(
        self, conn: Connection, endpoint: Endpoint, template: str, name: str, *, label: str = ""
    ) -> None:
        from sqlalchemy.exc import OperationalError  # noqa: PLC0415 - optional dependency, imported when used

        statement = f"CREATE DATABASE {_pg_ident(name)} TEMPLATE {_pg_ident(template)}"
        for attempt in range(50):
            try:
                conn.exec_driver_sql(statement)
                if label:
                    self.label(conn, name, label)
                return
            except OperationalError as exc:
                # Someone (a stray client, an autovacuum) is connected to the template.
                if "being accessed by other users" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05)

    def drop(self, conn: Connection, name: str) -> None:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {_pg_ident(name)} WITH (FORCE)")

    def label(self, conn: Connection, name: str, text: str) -> None:
        conn.exec_driver_sql(
            f"COMMENT ON DATABASE {_pg_ident(name)} IS '{text.replace(chr(39), chr(39) * 2)}'"
        )

    def labelled(self, conn: Connection, prefix: str, *, templates: bool = False) -> dict[str, str]:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        rows = conn.execute(
            text(
                "SELECT d.datname, coalesce(shobj_description(d.oid, 'pg_database'), '') "
                "FROM pg_database d WHERE d.datistemplate = :t AND starts_with(d.datname, :p)"
            ),
            {"p": prefix, "t": templates},
        )
        return {str(r[0]): str(r[1]) for r in rows}

    def server_time(self, conn: Connection) -> float:
        now = conn.exec_driver_sql("SELECT extract(epoch FROM clock_timestamp())").scalar_one()
        return float(now)

    def drop_template(self, conn: Connection, name: str) -> None:
        conn.exec_driver_sql(f"ALTER DATABASE {_pg_ident(name)} IS_TEMPLATE false")
        self.drop(conn, name)

    def open_transactions(self, conn: Connection, name: str) -> list[str]:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        rows = conn.execute(
            text(
                "SELECT pid, coalesce(application_name, ''), state, left(query, 80) "
                "FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid() "
                "AND state LIKE 'idle in transaction%'"
            ),
            {"n": name},
        ).all()
        return [f"pid {r[0]} {r[1]!r} {r[2]} after {r[3]!r}" for r in rows]

    def end_transactions(self, conn: Connection, name: str) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid() "
                "AND state LIKE 'idle in transaction%'"
            ),
            {"n": name},
        )


class MySQLAdmin(DatabaseAdmin):
    service = "mysql"
    async_drivers = ("aiomysql", "asyncmy")
    clean_statement = f"CALL {tracking.MYSQL_PREFIX}clean()"
    warm_statement = f"CALL {tracking.MYSQL_PREFIX}warm()"

    def kit_connect_args(self, url: URL) -> dict[str, Any]:
        if "init_command" in url.query:  # the user's own; ours would replace it
            return {}
        return {
            "init_command": f"SET @pik_kit = 1, "
            f"SESSION innodb_lock_wait_timeout = {LOCK_TIMEOUT_SECONDS}, "
            f"SESSION lock_wait_timeout = {LOCK_TIMEOUT_SECONDS}"
        }

    def database_defaults(self, conn: Connection, name: str) -> None:
        """None: MySQL keeps no per-database settings (only the kit's connections get them)."""

    def clean_report(self, row: Any) -> CleanReport:
        if row is None:
            return CleanReport()
        return CleanReport(foreign=_names(row[0]), changed=_names(row[1]))

    def lock(self, conn: Connection, key: str) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        got = conn.execute(text("SELECT GET_LOCK(:k, 600)"), {"k": _lock_name(key)}).scalar()
        if got != 1:
            raise TimeoutError(f"could not take the MySQL lock {key!r} in 600 s")

    def try_lock(self, conn: Connection, key: str) -> bool:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        return conn.execute(text("SELECT GET_LOCK(:k, 0)"), {"k": _lock_name(key)}).scalar() == 1

    def unlock(self, conn: Connection, key: str) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": _lock_name(key)})

    def template_state(self, conn: Connection, name: str) -> str:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        exists = conn.execute(
            text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :n"), {"n": name}
        ).first()
        if exists is None:
            return "absent"
        ready = conn.execute(
            text(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = :n "
                "AND TABLE_NAME = :t"
            ),
            {"n": name, "t": f"{tracking.MYSQL_PREFIX}template"},
        ).first()
        return "ready" if ready is not None else "incomplete"

    def create_empty(self, conn: Connection, name: str, *, kit_server: bool = False) -> None:
        conn.exec_driver_sql(
            f"CREATE DATABASE {_my_ident(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )

    @staticmethod
    def _tables_and_edges(conn: Connection, name: str) -> tuple[list[str], list[tuple[str, str]]]:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        tables = [
            str(r[0])
            for r in conn.execute(
                text(
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :n "
                    "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
                ),
                {"n": name},
            )
        ]
        edges = [
            (str(r[0]), str(r[1]))
            for r in conn.execute(
                text(
                    "SELECT TABLE_NAME, REFERENCED_TABLE_NAME FROM "
                    "information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = :n "
                    "AND REFERENCED_TABLE_SCHEMA = :n AND REFERENCED_TABLE_NAME IS NOT NULL"
                ),
                {"n": name},
            )
        ]
        return tables, edges

    def install_tracking(self, engine: Engine) -> None:
        with engine.begin() as conn:
            name = str(engine.url.database)
            all_tables, edges = self._tables_and_edges(conn, name)
            tables = [t for t in all_tables if not t.startswith(tracking.MYSQL_PREFIX)]
            order = {t: i for i, t in enumerate(tracking.dependency_order(tables, edges))}
            closure = tracking.referencing_closure(tables, edges)
            seeded = [
                t
                for t in tables
                if conn.exec_driver_sql(f"SELECT 1 FROM {_my_ident(t)} LIMIT 1").first()
            ]
            _run_raw(conn, tracking.mysql_bookkeeping_statements(tables, order, seeded, closure))
            _run_raw(conn, tracking.mysql_tracking_statements(tables))

    def mark_ready(self, conn: Connection, name: str, fingerprint: str) -> None:
        conn.exec_driver_sql(
            f"CREATE TABLE {_my_ident(name)}.{tracking.MYSQL_PREFIX}template "
            f"(fingerprint VARCHAR(64)) ENGINE=InnoDB"
        )

    def clone(
        self, conn: Connection, endpoint: Endpoint, template: str, name: str, *, label: str = ""
    ) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        self.create_empty(conn, name)
        if label:  # before the copy, which a kill -9 can cut short
            self.label(conn, name, label)
        all_tables, _ = self._tables_and_edges(conn, template)
        tracked = [
            str(r[0])
            for r in conn.execute(
                text(f"SELECT name FROM {_my_ident(template)}.{tracking.MYSQL_PREFIX}tables")
            )
        ]
        from sqlalchemy.pool import NullPool  # noqa: PLC0415 - optional dependency, imported when used

        # Pool-less: the copy's connection is closed with it, never left to the GC.
        with self.engine(endpoint, name, poolclass=NullPool).connect() as target:
            target.exec_driver_sql("SET foreign_key_checks = 0")
            for table in all_tables:
                row = conn.exec_driver_sql(
                    f"SHOW CREATE TABLE {_my_ident(template)}.{_my_ident(table)}"
                ).first()
                assert row is not None
                target.exec_driver_sql(str(row[1]))
                if table in tracked or table.startswith(tracking.MYSQL_PREFIX):
                    # Seed rows and bookkeeping; tracked tables hold rows only when seeded.
                    target.exec_driver_sql(
                        f"INSERT INTO {_my_ident(table)} SELECT * FROM "
                        f"{_my_ident(template)}.{_my_ident(table)}"
                    )
            self._copy_views(conn, target, template)
            # Routines before triggers (which may call them); triggers after the rows,
            # so copying fires none of them.
            _run_raw(target, self._routine_and_trigger_ddl(conn, template))
            _run_raw(target, tracking.mysql_tracking_statements(tracked))
            target.exec_driver_sql("SET foreign_key_checks = 1")
            target.commit()

    @staticmethod
    def _copy_views(conn: Connection, target: Connection, template: str) -> None:
        """Views in an order that works: one on another waits for it."""
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used
        from sqlalchemy.exc import DBAPIError  # noqa: PLC0415 - optional dependency, imported when used

        pending = {
            str(name): str(definition).replace(f"{_my_ident(template)}.", "")
            for name, definition in conn.execute(
                text(
                    "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS "
                    "WHERE TABLE_SCHEMA = :n"
                ),
                {"n": template},
            )
        }
        while pending:
            failures: list[DBAPIError] = []
            before = len(pending)
            for name, body in list(pending.items()):
                try:
                    target.exec_driver_sql(f"CREATE VIEW {_my_ident(name)} AS {body}")
                    del pending[name]
                except DBAPIError as exc:
                    failures.append(exc)
            if len(pending) == before:  # a round without progress: a real error
                raise failures[0]

    @staticmethod
    def _routine_and_trigger_ddl(conn: Connection, template: str) -> list[str]:
        """The template's own procedures, functions and triggers (not the kit's)."""
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        statements: list[str] = []
        like = tracking.MYSQL_PREFIX.replace("_", "\\_") + "%"
        for name, kind in conn.execute(
            text(
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES "
                "WHERE ROUTINE_SCHEMA = :n AND ROUTINE_NAME NOT LIKE :p"
            ),
            {"n": template, "p": like},
        ):
            row = conn.exec_driver_sql(
                f"SHOW CREATE {kind} {_my_ident(template)}.{_my_ident(str(name))}"
            ).first()
            if row is not None and row[2]:
                statements.append(str(row[2]))
        for (name,) in conn.execute(
            text(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                "WHERE TRIGGER_SCHEMA = :n AND TRIGGER_NAME NOT LIKE :p "
                "ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER"
            ),
            {"n": template, "p": like},
        ):
            row = conn.exec_driver_sql(
                f"SHOW CREATE TRIGGER {_my_ident(template)}.{_my_ident(str(name))}"
            ).first()
            if row is not None and row[2]:
                statements.append(str(row[2]))
        return statements

    def label(self, conn: Connection, name: str, text: str) -> None:
        from sqlalchemy.exc import DBAPIError  # noqa: PLC0415 - optional dependency, imported when used

        # MariaDB keeps schema comments; Oracle MySQL has none, and goes unlabelled. The
        # bound wait: ALTER DATABASE queues behind DDL running in that database.
        with contextlib.suppress(DBAPIError):
            conn.exec_driver_sql(
                "SET STATEMENT lock_wait_timeout=10 FOR "
                f"ALTER DATABASE {_my_ident(name)} COMMENT {_my_literal(text)}"
            )

    def server_time(self, conn: Connection) -> float:
        now = conn.exec_driver_sql("SELECT UNIX_TIMESTAMP(NOW(6))").scalar_one()
        return float(now)

    def labelled(self, conn: Connection, prefix: str, *, templates: bool = False) -> dict[str, str]:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used
        from sqlalchemy.exc import DBAPIError  # noqa: PLC0415 - optional dependency, imported when used

        try:
            rows = conn.execute(
                text(
                    "SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA "
                    "WHERE SCHEMA_NAME LIKE :p"
                ),
                {"p": prefix.replace("_", "\\_") + "%"},
            ).all()
        except DBAPIError:  # no SCHEMA_COMMENT column: Oracle MySQL
            return {}
        return {str(r[0]): str(r[1] or "") for r in rows}

    def drop(self, conn: Connection, name: str) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used
        from sqlalchemy.exc import DBAPIError  # noqa: PLC0415 - optional dependency, imported when used

        ids = [
            int(r[0])
            for r in conn.execute(
                text(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :n "
                    "AND ID <> CONNECTION_ID()"
                ),
                {"n": name},
            )
        ]
        for pid in ids:
            with contextlib.suppress(DBAPIError):  # it ended by itself meanwhile
                conn.exec_driver_sql(f"KILL {pid}")
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {_my_ident(name)}")

    def open_transactions(self, conn: Connection, name: str) -> list[str]:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used

        rows = conn.execute(
            text(
                "SELECT p.ID, p.USER, t.trx_started FROM information_schema.INNODB_TRX t "
                "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                "WHERE p.DB = :n AND p.ID <> CONNECTION_ID()"
            ),
            {"n": name},
        ).all()
        return [f"connection {r[0]} ({r[1]}) in a transaction since {r[2]}" for r in rows]

    def end_transactions(self, conn: Connection, name: str) -> None:
        from sqlalchemy import text  # noqa: PLC0415 - optional dependency, imported when used
        from sqlalchemy.exc import DBAPIError  # noqa: PLC0415 - optional dependency, imported when used

        ids = conn.execute(
            text(
                "SELECT p.ID FROM information_schema.INNODB_TRX t "
                "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                "WHERE p.DB = :n AND p.ID <> CONNECTION_ID()"
            ),
            {"n": name},
        ).scalars()
        for pid in list(ids):
            with contextlib.suppress(DBAPIError):  # it ended by itself meanwhile
                conn.exec_driver_sql(f"KILL {int(pid)}")


def _my_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _my_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _run_raw(conn: Connection, statements: Iterable[str]) -> None:
    """Run statements on the driver's cursor: no parameter markers, so % and $ stay as written."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()


def _lock_number(key: str) -> int:
    """A signed 64-bit advisory lock number for ``key``."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def _lock_name(key: str) -> str:
    """MySQL lock names are at most 64 characters."""
    return "pik_" + hashlib.sha256(key.encode()).hexdigest()[:40]


ADMINS: dict[str, DatabaseAdmin] = {"postgres": PostgresAdmin(), "mysql": MySQLAdmin()}


def admin_for(service: str) -> DatabaseAdmin:
    try:
        return ADMINS[service]
    except KeyError:
        raise ValueError(
            f"isolation supports {', '.join(ADMINS)} databases, not {service!r}"
        ) from None
