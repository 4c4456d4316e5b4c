"""PostgreSQL's database administration: clones by ``CREATE DATABASE … TEMPLATE``.

Tracking is installed in the template (:mod:`~pytest_integration_kit.isolation.tracking`)
and copied with it; advisory locks serialise the template's making across processes.
"""

# ruff: noqa: S608 - statements are built from identifiers we quote ourselves, never from input

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.isolation import tracking
from pytest_integration_kit.isolation.admin import (
    LOCK_TIMEOUT_SECONDS,
    CleanReport,
    DatabaseAdmin,
    report_names,
    run_raw,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.engine.url import URL

    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["ADMIN", "PostgresAdmin"]


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
        return CleanReport(foreign=report_names(row[0]) if row is not None else ())

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
            run_raw(conn, tracking.postgres_tracking_statements(tables, order, seeded))

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


def _lock_number(key: str) -> int:
    """A signed 64-bit advisory lock number for ``key``."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


ADMIN = PostgresAdmin()
