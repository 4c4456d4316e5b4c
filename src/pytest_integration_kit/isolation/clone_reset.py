"""Reuse of a used PostgreSQL clone: back to the template's state, or proven not to be.

Dropping a used clone and cloning the template again costs tens of milliseconds of
server work per test. Most tests only write rows, which the write tracking already
knows how to undo, so the clone pool resets a used clone instead, one round trip:

* the session of the clone's pooled connection is reset (settings, role, temporary
  objects, cursors, listeners, advisory locks, sequence caches), as a new session's;
* ``_pik.reset(expected)`` compares a fingerprint of the database's catalogs with the
  one taken when the clone was fresh: the ``(ctid, xmin)`` of every catalog row of an
  object made after initdb (OID from 16384: the schema, the kit's bookkeeping, what a
  test creates), of the schemas, extensions and languages, and of the database's own
  ``pg_database`` and ``pg_db_role_setting`` rows. DDL, ``GRANT``, ``COMMENT``,
  ``TRUNCATE`` (a new file), a large object: each writes a catalog row, so it shows;
* it checks that no other client is connected (what the test opened and left) and that
  no SQL-level prepared statement survives;
* then it empties the written tables, restores their seed rows (``_pik.clean()``) and
  puts every sequence back where the template had it.

Anything else — a changed fingerprint, another connection, an error — and the clone is
dropped and a new one made, as before. Statistics (``pg_statistic``) are not compared:
ANALYZE writes them, and they change no result. Changes to objects that come with
PostgreSQL itself (OIDs below 16384) other than schemas, extensions and languages — a
``COMMENT ON`` a built-in function, say — are not seen.
"""

# ruff: noqa: S608 - statements are built from identifiers we quote ourselves, never from input

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["FIRST_USER_OID", "PostgresCloneReset", "postgres_reuse_statements"]

#: PostgreSQL's FirstNormalObjectId: objects made after initdb have OIDs from here on.
FIRST_USER_OID: Final = 16384
#: The column naming the object, for catalogs without an ``oid`` column of their own.
_OBJECT_COLUMNS: Final = {
    "pg_attribute": "attrelid",
    "pg_index": "indexrelid",
    "pg_inherits": "inhrelid",
    "pg_description": "objoid",
    "pg_seclabel": "objoid",
    "pg_init_privs": "objoid",
    "pg_sequence": "seqrelid",
    "pg_aggregate": "aggfnoid",
    "pg_range": "rngtypid",
    "pg_partitioned_table": "partrelid",
    "pg_depend": "objid",
    "pg_largeobject": "loid",
    "pg_foreign_table": "ftrelid",
    "pg_subscription_rel": "srrelid",
    "pg_ts_config_map": "mapcfg",
}
#: Compared whole: the built-in ones (``public``, ``plpgsql``) are below 16384 and a
#: test may drop, rename or re-own them.
_WHOLE: Final = ("pg_namespace", "pg_extension", "pg_language")
#: Written by ANALYZE (autovacuum's too): statistics, not schema.
_UNCOMPARED: Final = ("pg_statistic", "pg_statistic_ext_data")
#: How long a reset waits for the test's other connections to be gone (they are
#: closed by then; their server processes may take a moment to leave).
OTHERS_WAIT_SECONDS: Final = 0.2


def _sql_list(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def postgres_reuse_statements(schema: str) -> list[str]:
    """DDL adding ``fingerprint()``, ``sequences`` and ``reset(expected)`` to ``schema``
    (quoted), run last when the template is built: the sequences are as seeded then."""
    keys = " ".join(f"WHEN '{name}' THEN '{column}'" for name, column in _OBJECT_COLUMNS.items())
    return [
        # Built here, from this server's catalogs: one static query, planned once per
        # connection by PL/pgSQL and cached (a 50-way UNION costs more to plan than to run).
        f"""DO $do$
DECLARE
  parts text;
BEGIN
  SELECT string_agg(format('SELECT hashtext(ctid::text || '':'' || xmin::text) AS h FROM '
                           'pg_catalog.%I%s', c.relname,
           CASE WHEN c.relname IN ({_sql_list(_WHOLE)}) THEN ''
                WHEN k.col IS NOT NULL THEN format(' WHERE %I >= {FIRST_USER_OID}', k.col)
                ELSE '' END), ' UNION ALL ' ORDER BY c.relname) INTO parts
  FROM pg_class c
  LEFT JOIN LATERAL (SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_attribute a
                                              WHERE a.attrelid = c.oid AND a.attname = 'oid')
                            THEN 'oid' ELSE CASE c.relname {keys} END END AS col) k ON true
  WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
    AND NOT c.relisshared AND c.relname NOT IN ({_sql_list(_UNCOMPARED)});
  EXECUTE format($f$CREATE FUNCTION {schema}.fingerprint() RETURNS bigint[] LANGUAGE plpgsql
    STABLE AS $b$
DECLARE
  result bigint[];
BEGIN
  SELECT ARRAY[count(*), coalesce(sum(h), 0)] INTO result FROM (%s
    UNION ALL SELECT hashtext(ctid::text || ':' || xmin::text) FROM pg_catalog.pg_database
      WHERE datname = current_database()
    UNION ALL SELECT hashtext(s.ctid::text || ':' || s.xmin::text)
      FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d
      ON d.oid = s.setdatabase WHERE d.datname = current_database()) f;
  RETURN result;
END $b$$f$, parts);
END $do$""",
        f"CREATE TABLE {schema}.sequences (rel regclass PRIMARY KEY, value bigint NOT NULL, "
        "called boolean NOT NULL)",
        f"""DO $do$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c WHERE c.relkind = 'S'
           AND c.relnamespace <> '{schema}'::regnamespace LOOP
    EXECUTE format('INSERT INTO {schema}.sequences SELECT %L, last_value, is_called FROM %s',
                   r.rel, r.rel);
  END LOOP;
END $do$""",
        # NULL when the database is the template's again; else why it cannot be.
        f"""CREATE FUNCTION {schema}.reset(expected bigint[]) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF {schema}.fingerprint() IS DISTINCT FROM expected THEN
    RETURN 'schema';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
             AND pid <> pg_backend_pid() AND backend_type = 'client backend') THEN
    RETURN 'connections';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_prepared_statements WHERE from_sql) THEN
    RETURN 'prepared statements';
  END IF;
  PERFORM {schema}.clean();
  PERFORM setval(s.rel, s.value, s.called) FROM {schema}.sequences s;
  RETURN NULL;
END $$""",
    ]


#: What a new session would not have: the state a test may leave on a pooled connection.
SESSION_RESET: Final = (
    "RESET ALL; SET SESSION AUTHORIZATION DEFAULT; CLOSE ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)


class PostgresCloneReset:
    """Takes a fresh clone's fingerprint, and later resets the used clone to it."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def reference(self, engine: Engine) -> tuple[int, ...]:
        """The fingerprint of the fresh clone ``engine`` is on."""
        with engine.connect() as conn:
            value = conn.exec_driver_sql(f"SELECT {self.schema}.fingerprint()").scalar_one()
            conn.commit()
        return tuple(int(v) for v in value)

    def reset(self, engine: Engine, reference: tuple[int, ...]) -> str | None:
        """Bring the database back to the template's state: None when done, else why not.

        The test's engine is kept, with its one connection (more would count as other
        clients: they are closed first, and a new one is made).
        """
        if engine.pool.checkedin() > 1:  # type: ignore[attr-defined]
            engine.dispose()
        expected = "ARRAY[" + ", ".join(str(int(v)) for v in reference) + "]::bigint[]"
        # One round trip: the session's reset, then the database's (multiple statements,
        # no parameters: the simple query protocol).
        # The session first, committed: the reset then runs in a transaction of its own
        # that a setting the test left (read-only transactions, a statement timeout)
        # no longer governs.
        batch = f"{SESSION_RESET}; COMMIT; SELECT {self.schema}.reset({expected})"
        deadline = time.monotonic() + OTHERS_WAIT_SECONDS
        while True:
            with engine.connect() as conn:
                driver_connection: Any = conn.connection.dbapi_connection
                # Autocommit for the batch: psycopg sends no BEGIN of its own first (a
                # round trip, and a statement for the server); the batch's statements
                # run in the server's implicit transaction, which its COMMIT ends.
                autocommit = driver_connection.autocommit
                driver_connection.autocommit = True
                # The driver's cursor: no parameters, so psycopg keeps to the simple protocol.
                cursor = driver_connection.cursor()
                try:
                    cursor.execute(batch)
                    while cursor.nextset():  # to the last statement's result
                        pass
                    row = cursor.fetchone()
                    reason = row[0] if row is not None else "no answer"
                finally:
                    cursor.close()
                    # Not on a broken connection (the error is the reset's answer).
                    with contextlib.suppress(Exception):
                        driver_connection.autocommit = autocommit
            if reason != "connections" or time.monotonic() >= deadline:
                return None if reason is None else str(reason)
            time.sleep(0.01)
