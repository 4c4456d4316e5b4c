"""MySQL / MariaDB database administration: no templates, so a clone is a copy.

A copy replays each table's ``SHOW CREATE TABLE`` and its rows, then recreates the views,
routines and triggers (:mod:`~pytest_integration_kit.isolation.tracking`'s among them).
"""

# ruff: noqa: S608 - statements are built from identifiers we quote ourselves, never from input

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.isolation import tracking
from pytest_integration_kit.isolation.admin import (
    LOCK_TIMEOUT_SECONDS,
    CleanReport,
    DatabaseAdmin,
    report_names,
    run_raw,
)
from pytest_integration_kit.services.mysql import pymysql_transport

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.url import URL

    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["ADMIN", "MySQLAdmin"]


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

    def transport_args(self, endpoint: Endpoint) -> dict[str, Any]:
        """No TLS through PyMySQL to a server the kit started on the loopback
        (:func:`~pytest_integration_kit.services.mysql.pymysql_transport`)."""
        if endpoint.scheme.partition("+")[2] != "pymysql":
            return {}
        return pymysql_transport(endpoint)

    def database_defaults(self, conn: Connection, name: str) -> None:
        """None: MySQL keeps no per-database settings (only the kit's connections get them)."""

    def clean_report(self, row: Any) -> CleanReport:
        if row is None:
            return CleanReport()
        return CleanReport(foreign=report_names(row[0]), changed=report_names(row[1]))

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
            run_raw(conn, tracking.mysql_bookkeeping_statements(tables, order, seeded, closure))
            run_raw(conn, tracking.mysql_tracking_statements(tables))

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
            run_raw(target, self._routine_and_trigger_ddl(conn, template))
            run_raw(target, tracking.mysql_tracking_statements(tracked))
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


def _lock_name(key: str) -> str:
    """MySQL lock names are at most 64 characters."""
    return "pik_" + hashlib.sha256(key.encode()).hexdigest()[:40]


ADMIN = MySQLAdmin()
