"""Write tracking for the truncate strategy: which tables did a test touch?

Code under test may open its own connections or run in another process, so the kit
cannot watch the writes from Python. Instead the template database carries a small
``_pik`` bookkeeping area: a trigger on every table records its name in a ``dirty``
table, and one server-side routine empties exactly the dirty tables (and the tables
referencing them), restores their seed rows and forgets the marks — one round trip.

A mark is a row per (table, server connection): two connections never write the same
mark, so the bookkeeping never makes one connection of a test wait on another (a
shared mark row, held by the session's open transaction, once did). Marks are
transactional: writes rolled back (the rollback strategy) roll back their marks too,
so the same template serves every strategy. A mark also says whether the writer was
one of the kit's own connections (they identify themselves when they connect, see
:data:`KIT_MARKER`): the clean routine names the tables that *other* connections
committed to, which the rollback strategy cannot undo and the kit reports.
"""

# ruff: noqa: S608 - statements are built from identifiers we quote ourselves, never from input

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pytest_integration_kit.isolation.clone_reset import postgres_reuse_statements

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "KIT_MARKER",
    "MYSQL_PREFIX",
    "POSTGRES_SCHEMA",
    "dependency_order",
    "mysql_tracking_statements",
    "postgres_tracking_statements",
    "referencing_closure",
]

#: A dirty table bigger than this makes the PostgreSQL clean TRUNCATE instead of DELETE.
TRUNCATE_FROM_BYTES = 256 * 1024

#: The schema holding the PostgreSQL bookkeeping; MySQL tables carry a name prefix.
POSTGRES_SCHEMA = "_pik"
MYSQL_PREFIX = "_pik_"
#: Bumped whenever the bookkeeping below changes: part of the template's name.
#: 6: MySQL's _pik_end (a rollback session's end in one call); 7: the clone strategy's
#: reset (:mod:`~pytest_integration_kit.isolation.clone_reset`); 8: MySQL's _pik_end
#: answers with no result set when there was nothing to clean; 9: PostgreSQL's marks
#: looked for through their primary key (``_pik.marked()``).
TRACKING_VERSION = "9"
#: What the kit's own connections set when they connect: the PostgreSQL setting
#: ``pik.kit`` (a custom placeholder, free in the start-up packet) and the MySQL user
#: variable ``@pik_kit``. Marks made by connections without it are "foreign".
KIT_MARKER = "pik.kit"


def dependency_order(tables: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Tables parents first: ``edges`` are (child, parent) foreign keys. Cycles keep name order."""
    names = sorted(set(tables))
    parents: dict[str, set[str]] = {name: set() for name in names}
    for child, parent in edges:
        if child in parents and parent in parents and child != parent:
            parents[child].add(parent)
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(names):
        ready = [n for n in names if n not in placed and parents[n] <= placed]
        if not ready:  # a cycle: take the first remaining name and go on
            ready = [next(n for n in names if n not in placed)]
        for name in ready:
            order.append(name)
            placed.add(name)
    return order


def referencing_closure(
    tables: Iterable[str], edges: Iterable[tuple[str, str]]
) -> dict[str, set[str]]:
    """For each table, every table that references it, directly or through others."""
    children: dict[str, set[str]] = {}
    for child, parent in edges:
        children.setdefault(parent, set()).add(child)
    closure: dict[str, set[str]] = {}
    for table in tables:
        seen: set[str] = set()
        stack = [table]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        seen.discard(table)
        closure[table] = seen
    return closure


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def postgres_tracking_statements(
    tables: Sequence[tuple[str, str]],
    order: Mapping[tuple[str, str], int],
    seeded: Iterable[tuple[str, str]],
) -> list[str]:
    """DDL installing tracking on ``tables`` ((schema, name) pairs) in a PostgreSQL database."""
    s = _pg_ident(POSTGRES_SCHEMA)
    statements = [
        f"CREATE SCHEMA {s}",
        # One row per (table, backend): a connection only ever meets its own mark, so
        # ON CONFLICT never waits on another transaction.
        f"CREATE UNLOGGED TABLE {s}.dirty (rel oid NOT NULL, pid integer NOT NULL, "
        "kit boolean NOT NULL, PRIMARY KEY (rel, pid))",
        f"CREATE TABLE {s}.tables (rel oid PRIMARY KEY, ord integer NOT NULL, seed regclass, "
        "cols text)",
        f"""CREATE FUNCTION {s}.mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {s}.dirty VALUES
    (TG_RELID, pg_backend_pid(), current_setting('{KIT_MARKER}', true) IS NOT NULL)
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$""",
        # Whether any mark is there. Every rolled-back write leaves its mark's row dead
        # in `dirty` till autovacuum comes by (its naptime is a minute: 20,000 tests at
        # full speed). A seq scan of them all made each test's end about 65 µs dearer
        # by 10,000 dead rows; the primary key skips them (a dead entry is marked as
        # such when first met), and the planner, seeing a table vacuumed empty, would
        # pick the seq scan. Only here: the clean's other statements keep their plans
        # (without seq scans the clone strategy's reset took 40 times as long).
        # PL/pgSQL, not SQL: its plan is made once per connection, not at every call.
        f"""CREATE FUNCTION {s}.marked() RETURNS boolean LANGUAGE plpgsql STABLE
SET enable_seqscan = off AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM {s}.dirty);
END $$""",
        # Returns the tables written by connections other than the kit's (NULL if none).
        f"""CREATE FUNCTION {s}.clean() RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  r record;
  targets regclass[];
  foreign_tables text[];
BEGIN
  IF NOT {s}.marked() THEN
    RETURN NULL;
  END IF;
  SELECT array_agg(DISTINCT d.rel::regclass::text) INTO foreign_tables
  FROM {s}.dirty d WHERE NOT d.kit;
  WITH RECURSIVE affected(rel) AS (
    SELECT rel FROM {s}.dirty
    UNION
    SELECT c.conrelid FROM pg_constraint c JOIN affected a ON c.confrelid = a.rel
    WHERE c.contype = 'f')
  SELECT array_agg(t.rel::regclass ORDER BY t.ord DESC) INTO targets
  FROM {s}.tables t JOIN affected a USING (rel);
  -- DELETE is cheapest for the few rows a test writes; past {TRUNCATE_FROM_BYTES} bytes
  -- in one table, one TRUNCATE of them all (the set is closed under references).
  IF EXISTS (SELECT 1 FROM unnest(targets) AS x(rel)
             WHERE pg_relation_size(x.rel) > {TRUNCATE_FROM_BYTES}) THEN
    EXECUTE 'TRUNCATE ' || array_to_string(targets, ', ');
  ELSE
    FOR r IN SELECT x.rel FROM unnest(targets) WITH ORDINALITY AS x(rel, i) ORDER BY x.i LOOP
      EXECUTE 'DELETE FROM ' || r.rel::text;
    END LOOP;
  END IF;
  FOR r IN
    SELECT t.rel::regclass AS rel, t.seed, t.cols FROM {s}.tables t
    WHERE t.rel = ANY (targets::oid[]) AND t.seed IS NOT NULL ORDER BY t.ord
  LOOP
    -- Named columns: a column a test added (with a default) does not break the restore.
    EXECUTE 'INSERT INTO ' || r.rel::text || ' (' || r.cols || ') OVERRIDING SYSTEM VALUE '
      || 'SELECT ' || r.cols || ' FROM ' || r.seed::text;
  END LOOP;
  DELETE FROM {s}.dirty;
  RETURN foreign_tables;
END $$""",
        # Opens every table (and runs the mark trigger once) in this connection, so a
        # fresh clone's first statements do not pay for loading catalogs and plans.
        f"""CREATE FUNCTION {s}.warm() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT rel::regclass AS rel FROM {s}.tables LOOP
    EXECUTE 'DELETE FROM ' || r.rel::text || ' WHERE false';
  END LOOP;
  DELETE FROM {s}.dirty;
END $$""",
    ]
    seeded_set = set(seeded)
    for schema, name in tables:
        qualified = f"{_pg_ident(schema)}.{_pg_ident(name)}"
        seed = "NULL"
        if (schema, name) in seeded_set:
            copy = f"seed_{hashlib.sha256(f'{schema}.{name}'.encode()).hexdigest()[:16]}"
            statements.append(f"CREATE TABLE {s}.{copy} AS SELECT * FROM {qualified}")
            seed = f"'{s}.{copy}'::regclass"
        regclass = f"'{qualified.replace(chr(39), chr(39) * 2)}'::regclass"
        statements += [
            # The insertable columns (not generated ones), quoted, in table order.
            f"INSERT INTO {s}.tables SELECT {regclass}::oid, {order[(schema, name)]}, {seed}, "
            "string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
            f"WHERE attrelid = {regclass} AND attnum > 0 AND NOT attisdropped "
            "AND attgenerated = ''",
            f"CREATE TRIGGER _pik_mark AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {qualified} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.mark()",
        ]
    return statements + postgres_reuse_statements(s)


def _my_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _my_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def mysql_trigger_name(table: str, event: str) -> str:
    """≤ 64 characters, unique per table and event."""
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    return f"{MYSQL_PREFIX}{table[:40]}_{digest}_{event[0].lower()}"


#: The columns of a table as information_schema lists them now: insertable names
#: (quoted, for the seed restore) and a signature (names and types, for change checks).
_MY_COLUMNS = """SELECT
    GROUP_CONCAT(IF(ic.EXTRA LIKE '%GENERATED%', NULL,
                    CONCAT('`', REPLACE(ic.COLUMN_NAME, '`', '``'), '`'))
                 ORDER BY ic.ORDINAL_POSITION SEPARATOR ', '),
    GROUP_CONCAT(CONCAT(ic.COLUMN_NAME, ' ', ic.COLUMN_TYPE) ORDER BY ic.ORDINAL_POSITION
                 SEPARATOR ', ')
  FROM information_schema.COLUMNS ic
  WHERE ic.TABLE_SCHEMA = DATABASE() AND ic.TABLE_NAME = {table}"""

#: Ends with one row: the tables written by connections other than the kit's, and the
#: tables whose columns differ from the template's (their seed rows are not restored:
#: the caller rebuilds the database), each comma-separated or NULL.
MYSQL_CLEAN_PROCEDURE = f"""CREATE PROCEDURE {MYSQL_PREFIX}clean()
BEGIN
  DECLARE done INT DEFAULT 0;
  DECLARE t VARCHAR(64);
  DECLARE s VARCHAR(64);
  DECLARE c TEXT;
  DECLARE g TEXT;
  DECLARE now_c TEXT;
  DECLARE now_g TEXT;
  DECLARE foreign_tables TEXT DEFAULT NULL;
  DECLARE changed TEXT DEFAULT NULL;
  DECLARE marks INT DEFAULT 0;
  DECLARE cur CURSOR FOR
    SELECT tb.name, tb.seed, tb.cols, tb.sig FROM {MYSQL_PREFIX}tables tb
    WHERE tb.name IN (SELECT d.name FROM {MYSQL_PREFIX}dirty d)
       OR tb.name IN (SELECT r.ref FROM {MYSQL_PREFIX}refs r JOIN {MYSQL_PREFIX}dirty d
                      ON r.name = d.name)
    ORDER BY tb.ord;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  -- Plain SELECTs only (consistent reads, no locks): IF EXISTS (…) would be a locking
  -- read, waiting on the marks of a transaction the test left open.
  SELECT COUNT(*) INTO marks FROM {MYSQL_PREFIX}dirty;
  IF marks > 0 THEN
    SET SESSION group_concat_max_len = 1048576;
    SELECT GROUP_CONCAT(DISTINCT d.name ORDER BY d.name SEPARATOR ', ') INTO foreign_tables
      FROM {MYSQL_PREFIX}dirty d WHERE d.kit = 0;
    SET @pik_fk = @@foreign_key_checks;
    SET foreign_key_checks = 0;
    OPEN cur;
    each_table: LOOP
      FETCH cur INTO t, s, c, g;
      IF done THEN
        LEAVE each_table;
      END IF;
      SET @pik_q = CONCAT('DELETE FROM `', REPLACE(t, '`', '``'), '`');
      PREPARE pik_stmt FROM @pik_q;
      EXECUTE pik_stmt;
      DEALLOCATE PREPARE pik_stmt;
      -- Literal names: information_schema then opens this one table, not them all.
      SET @pik_q = CONCAT(
        {_my_literal(_MY_COLUMNS.format(table="?").replace(chr(10), " "))}, ' INTO @pik_c, @pik_g');
      SET @pik_t = t;
      PREPARE pik_stmt FROM @pik_q;
      EXECUTE pik_stmt USING @pik_t;
      DEALLOCATE PREPARE pik_stmt;
      SET now_c = @pik_c, now_g = @pik_g;
      SET done = 0;
      IF NOT (now_g <=> g) THEN
        SET changed = CONCAT_WS(', ', changed, t);
      ELSEIF s IS NOT NULL THEN
        SET @pik_q = CONCAT('INSERT INTO `', REPLACE(t, '`', '``'), '` (', c, ') SELECT ', c,
                            ' FROM `', s, '`');
        PREPARE pik_stmt FROM @pik_q;
        EXECUTE pik_stmt;
        DEALLOCATE PREPARE pik_stmt;
      END IF;
    END LOOP;
    CLOSE cur;
    -- Forget the marks read, one key at a time: a DELETE of them all would wait on the
    -- marks of a transaction still open.
    forget: BEGIN
      DECLARE m_done INT DEFAULT 0;
      DECLARE m_name VARCHAR(64);
      DECLARE m_conn BIGINT UNSIGNED;
      DECLARE m_cur CURSOR FOR SELECT name, conn FROM {MYSQL_PREFIX}dirty;
      DECLARE CONTINUE HANDLER FOR NOT FOUND SET m_done = 1;
      OPEN m_cur;
      each_mark: LOOP
        FETCH m_cur INTO m_name, m_conn;
        IF m_done THEN
          LEAVE each_mark;
        END IF;
        DELETE FROM {MYSQL_PREFIX}dirty WHERE name = m_name AND conn = m_conn;
      END LOOP;
      CLOSE m_cur;
    END forget;
    SET foreign_key_checks = @pik_fk;
  END IF;
  SELECT foreign_tables, changed;
END"""


#: The end of a rollback session in one round trip: roll the caller's transaction back,
#: clean, commit (:mod:`~pytest_integration_kit.isolation.rollback_clean`). With no
#: marks left (a test whose writes all rolled back) it sends no result set, which the
#: caller reads as "nothing to report": an empty one (``SELECT NULL, NULL``) cost the
#: server about 50 µs, more than the rest of the call.
MYSQL_END_STATEMENT = f"CALL {MYSQL_PREFIX}end()"
MYSQL_END_PROCEDURE = f"""CREATE PROCEDURE {MYSQL_PREFIX}end()
BEGIN
  DECLARE marks INT DEFAULT 0;
  ROLLBACK;
  -- A consistent read, as in the clean: no wait on another transaction's marks.
  SELECT COUNT(*) INTO marks FROM {MYSQL_PREFIX}dirty;
  IF marks > 0 THEN
    CALL {MYSQL_PREFIX}clean();
  END IF;
  COMMIT;
END"""


MYSQL_WARM_PROCEDURE = f"""CREATE PROCEDURE {MYSQL_PREFIX}warm()
BEGIN
  DECLARE done INT DEFAULT 0;
  DECLARE t VARCHAR(64);
  DECLARE cur CURSOR FOR SELECT name FROM {MYSQL_PREFIX}tables;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  OPEN cur;
  each_table: LOOP
    FETCH cur INTO t;
    IF done THEN
      LEAVE each_table;
    END IF;
    SET @pik_q = CONCAT('DELETE FROM `', REPLACE(t, '`', '``'), '` WHERE 1 = 0');
    PREPARE pik_stmt FROM @pik_q;
    EXECUTE pik_stmt;
    DEALLOCATE PREPARE pik_stmt;
  END LOOP;
  CLOSE cur;
END"""


def mysql_bookkeeping_statements(
    tables: Sequence[str],
    order: Mapping[str, int],
    seeded: Iterable[str],
    closure: Mapping[str, set[str]],
) -> list[str]:
    """The bookkeeping tables, their rows and seed copies (copied along with the data)."""
    p = MYSQL_PREFIX
    statements = [
        # One row per (table, connection), in the clustered index alone: an INSERT IGNORE
        # only ever meets its own connection's mark and takes no gap lock, so it never
        # waits on another connection's transaction.
        f"CREATE TABLE {p}dirty (name VARCHAR(64) NOT NULL, conn BIGINT UNSIGNED NOT NULL, "
        "kit TINYINT NOT NULL, PRIMARY KEY (name, conn)) ENGINE=InnoDB",
        f"CREATE TABLE {p}tables (name VARCHAR(64) PRIMARY KEY, ord INT NOT NULL, "
        "seed VARCHAR(64) NULL, cols TEXT NULL, sig TEXT NULL) ENGINE=InnoDB",
        "SET SESSION group_concat_max_len = 1048576",
        f"CREATE TABLE {p}refs (name VARCHAR(64) NOT NULL, ref VARCHAR(64) NOT NULL, "
        "PRIMARY KEY (name, ref)) ENGINE=InnoDB",
    ]
    seeded_set = set(seeded)
    for table in tables:
        seed = "NULL"
        if table in seeded_set:
            copy = f"{p}seed_{hashlib.sha256(table.encode()).hexdigest()[:16]}"
            statements.append(f"CREATE TABLE {copy} AS SELECT * FROM {_my_ident(table)}")
            seed = _my_literal(copy)
        statements.append(
            f"INSERT INTO {p}tables SELECT {_my_literal(table)}, {order[table]}, {seed}, cols.* "
            f"FROM ({_MY_COLUMNS.format(table=_my_literal(table))}) cols"
        )
        statements += [
            f"INSERT INTO {p}refs VALUES ({_my_literal(table)}, {_my_literal(ref)})"
            for ref in sorted(closure.get(table, ()))
        ]
    return statements


def mysql_tracking_statements(tables: Sequence[str]) -> list[str]:
    """Triggers and the clean procedure: not copied with tables, so made on every copy."""
    statements = [MYSQL_CLEAN_PROCEDURE, MYSQL_END_PROCEDURE, MYSQL_WARM_PROCEDURE]
    for table in tables:
        for event in ("INSERT", "UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER {_my_ident(mysql_trigger_name(table, event))} AFTER {event} "
                f"ON {_my_ident(table)} FOR EACH ROW "
                f"INSERT IGNORE INTO {MYSQL_PREFIX}dirty VALUES ({_my_literal(table)}, "
                "CONNECTION_ID(), @pik_kit IS NOT NULL)"
            )
    return statements
