"""The isolation layer used directly, as from a script: no pytest in the way."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import isolation_project  # noqa: F401 - preloads the SQL dialects, see there
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pytest_integration_kit.backends.base import RunningServer, ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.isolation import (
    DatabaseLease,
    IsolationWorkspace,
    SchemaSource,
    database_name,
    owner_token,
    rollback_session,
)
from pytest_integration_kit.isolation.databases import IsolatedDatabases
from pytest_integration_kit.isolation.naming import MAX_NAME_BYTES, TEMPLATE_PREFIX
from pytest_integration_kit.isolation.ownership import owner_label
from pytest_integration_kit.isolation.sql_script import split_sql
from pytest_integration_kit.isolation.template_databases import template_label
from pytest_integration_kit.isolation.tracking import dependency_order, referencing_closure
from pytest_integration_kit.services import spec_for


def test_split_sql_respects_quotes_comments_and_dollar_bodies() -> None:
    script = """
    -- a comment; with a semicolon
    INSERT INTO t VALUES ('a;b', "c;d", `e;f`);  /* block; comment */
    CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
    INSERT INTO t VALUES ('it''s; fine')
    """
    assert split_sql(script) == [
        """INSERT INTO t VALUES ('a;b', "c;d", `e;f`)""",
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
        "INSERT INTO t VALUES ('it''s; fine')",
    ]


def test_dependency_order_puts_parents_first_and_survives_cycles() -> None:
    edges = [("orders", "users"), ("lines", "orders"), ("a", "b"), ("b", "a")]
    order = dependency_order(["lines", "orders", "users", "a", "b"], edges)
    assert order.index("users") < order.index("orders") < order.index("lines")
    assert sorted(order) == ["a", "b", "lines", "orders", "users"]
    closure = referencing_closure(["users", "lines"], edges)
    assert closure == {"users": {"orders", "lines"}, "lines": set()}


def test_names_stay_within_limits_and_apart() -> None:
    long_owner = owner_token("x" * 40, "gw" + "9" * 40)
    names = {database_name(long_owner, f"c{n}") for n in range(100)}
    assert len(names) == 100
    assert all(len(n.encode()) <= MAX_NAME_BYTES and n.startswith("pik_") for n in names)
    assert owner_token("S1", "gw0") == "s1_gw0"
    assert owner_token() != owner_token()  # a random session part when none is given


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A PostgreSQL, then a MySQL/MariaDB server of the local backend, for the module."""
    started = LocalBackend().start(
        ServerOptions(
            spec=spec_for(str(request.param)),
            image="",
            startup_timeout=60,
            session_id="tests-isolation-lib",
        )
    )
    yield started
    started.stop()


@pytest.fixture
def workspace(pytester: pytest.Pytester) -> Iterator[IsolationWorkspace]:
    """An isolation workspace over a two-table schema with seed rows, closed after the test."""
    pytester.makepyfile(
        lib_models="""
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table
metadata = MetaData()
parents = Table("parents", metadata, Column("id", Integer, primary_key=True))
children = Table(
    "children", metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("parents.id")),
)
def seed(conn):
    conn.execute(parents.insert(), [{"id": 1}, {"id": 2}])
    conn.execute(children.insert(), [{"id": 1, "parent_id": 1}])
"""
    )
    source = SchemaSource(
        schema="lib_models:metadata", seed=("lib_models:seed",), root=pytester.path
    )
    with IsolationWorkspace(source) as opened:
        yield opened


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        parents = conn.execute(text("SELECT count(*) FROM parents")).scalar_one()
        children = conn.execute(text("SELECT count(*) FROM children")).scalar_one()
        return int(parents), int(children)


def test_rollback_truncate_and_clone_from_a_script(
    server: RunningServer, workspace: IsolationWorkspace
) -> None:
    databases = workspace.databases(server.endpoint)
    engine = databases.engine()
    assert databases.template_built is not None  # built here, or by a test before on this server
    assert counts(engine) == (2, 1)

    with rollback_session(engine) as session:
        session.execute(text("DELETE FROM children"))
        session.commit()
        assert session.execute(text("SELECT count(*) FROM children")).scalar() == 0
    assert counts(engine) == (2, 1)

    # Deleting a seeded parent cascades nowhere; the clean restores parent and child.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM children"))
        conn.execute(text("DELETE FROM parents WHERE id = 1"))
        conn.execute(text("INSERT INTO parents VALUES (3)"))
    databases.clean()
    assert counts(engine) == (2, 1)

    # Past a few hundred kB the clean truncates instead; seed rows come back all the same.
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO children (id, parent_id) VALUES (:i, 2)"),
            [{"i": n} for n in range(10, 20010)],
        )
    assert counts(engine) == (2, 20001)
    databases.clean()
    assert counts(engine) == (2, 1)

    lease = DatabaseLease(databases, "clone").acquire()
    assert lease.database != databases.worker_database()
    assert counts(lease.engine) == (2, 1)
    with lease.engine.begin() as conn:
        conn.execute(text("DELETE FROM children"))
    assert lease.release()
    assert counts(engine) == (2, 1)

    # A second workspace (another session) finds the template ready.
    with IsolationWorkspace(workspace.source) as other:
        again = other.databases(server.endpoint)
        assert counts(again.engine()) == (2, 1)
        assert again.template_built is False
        assert again.worker_database() != databases.worker_database()


def test_orphans_of_dead_processes_are_reaped(
    server: RunningServer, workspace: IsolationWorkspace
) -> None:
    databases = workspace.databases(server.endpoint)
    databases.worker_database()
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(ended.stdout)
    token = uuid.uuid4().hex[:8]
    orphan, alive, foreign, reused = (
        database_name(kind, token) for kind in ("orphan", "alive", "far", "reused")
    )
    labels = {
        orphan: owner_label(pid=dead_pid),
        alive: owner_label(),  # this very process
        foreign: owner_label(host="another-host", pid=dead_pid),
        # A dead worker's pid now held by another process (this one): its start differs.
        reused: owner_label(pid=os.getpid(), started="1000000000.00"),
    }
    admin = databases.admin
    with databases.admin_engine.connect() as conn:
        for name, label in labels.items():
            admin.create_empty(conn, name)
            admin.label(conn, name, label)
    try:
        reaped = databases.reap_orphans()
        assert orphan in reaped
        assert reused in reaped
        assert alive not in reaped
        assert foreign not in reaped
        with databases.admin_engine.connect() as conn:
            assert not admin.exists(conn, orphan)
            assert admin.exists(conn, alive)
    finally:
        with databases.admin_engine.connect() as conn:
            for name in labels:
                admin.drop(conn, name)


def test_a_copy_cut_short_by_kill_9_is_reaped(
    server: RunningServer, workspace: IsolationWorkspace
) -> None:
    """A worker killed while its database is being made leaves one its reaper knows.

    MySQL copies table by table, so a kill lands mid-copy; the database must carry its
    owner's label from its first moment, or no later run ever drops it.
    """
    workspace.databases(server.endpoint).template()  # built here, not in the child
    owner = "cut_" + uuid.uuid4().hex[:8]
    pid = os.fork()
    if pid == 0:  # the worker about to be killed
        try:
            child = IsolatedDatabases(server.endpoint, workspace.source, owner=owner)
            step = "_copy_views" if server.endpoint.service == "mysql" else "database_defaults"
            setattr(child.admin, step, lambda *args: os.kill(os.getpid(), signal.SIGKILL))
            child.worker_database()
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGKILL
    name = database_name(owner)
    databases = workspace.databases(server.endpoint)
    admin = databases.admin
    try:
        with databases.admin_engine.connect() as conn:
            assert admin.exists(conn, name)  # the kill came after the CREATE
        assert name in databases.reap_orphans()
        with databases.admin_engine.connect() as conn:
            assert not admin.exists(conn, name)
    finally:
        with databases.admin_engine.connect() as conn:
            admin.drop(conn, name)


def test_templates_unused_for_a_week_are_pruned_when_another_is_built(
    server: RunningServer, workspace: IsolationWorkspace, pytester: pytest.Pytester
) -> None:
    databases = workspace.databases(server.endpoint)
    admin = databases.admin
    token = uuid.uuid4().hex[:8]
    stale, recent = f"{TEMPLATE_PREFIX}stale{token}", f"{TEMPLATE_PREFIX}recent{token}"
    with databases.admin_engine.connect() as conn:
        for name, day in ((stale, datetime.date(2000, 1, 1)), (recent, datetime.date.today())):
            admin.create_empty(conn, name)
            admin.mark_ready(conn, name, "0" * 64)
            admin.label(conn, name, template_label(day))
    pytester.makepyfile(
        lib_other=f"""
from sqlalchemy import text

def create(connection):
    connection.execute(text("CREATE TABLE other_{token} (id INTEGER PRIMARY KEY)"))
"""
    )
    source = SchemaSource(schema="lib_other:create", root=pytester.path)
    try:
        with IsolationWorkspace(source) as other:
            built = other.databases(server.endpoint)
            built.worker_database()
            assert built.template_built is True
            with databases.admin_engine.connect() as conn:
                assert admin.template_state(conn, stale) == "absent"
                assert admin.template_state(conn, recent) == "ready"
                labels = admin.labelled(conn, TEMPLATE_PREFIX, templates=True)
                assert labels[built.template()] == template_label()
    finally:
        with databases.admin_engine.connect() as conn:
            for name in (stale, recent):
                if admin.exists(conn, name):
                    admin.drop_template(conn, name)


MYSQL_OBJECTS = '''
from sqlalchemy import text

STATEMENTS = [
    "CREATE TABLE items (id INTEGER PRIMARY KEY, price INTEGER NOT NULL)",
    "CREATE TABLE audit (id INTEGER AUTO_INCREMENT PRIMARY KEY, item_id INTEGER)",
    "CREATE VIEW v_second AS SELECT id FROM v_first",
    "CREATE VIEW v_first AS SELECT id, price FROM items WHERE price > 0",
    "CREATE FUNCTION doubled(x INTEGER) RETURNS INTEGER DETERMINISTIC RETURN x * 2",
    """CREATE PROCEDURE add_item(IN i INTEGER)
BEGIN
  INSERT INTO items VALUES (i, doubled(i));
END""",
    """CREATE TRIGGER audit_items AFTER INSERT ON items FOR EACH ROW
INSERT INTO audit (item_id) VALUES (NEW.id)""",
]


def create(connection):
    for statement in STATEMENTS:
        if statement.startswith("CREATE VIEW v_second"):
            continue  # made last below, on purpose after the view it reads
        connection.exec_driver_sql(statement)
    connection.exec_driver_sql(STATEMENTS[2])
    connection.exec_driver_sql("INSERT INTO items VALUES (1, 10)")  # seed, audited once
'''


def test_mysql_copies_keep_views_routines_and_triggers(pytester: pytest.Pytester) -> None:
    server = LocalBackend().start(
        ServerOptions(
            spec=spec_for("mysql"), image="", startup_timeout=60, session_id="tests-iso-objects"
        )
    )
    try:
        pytester.makepyfile(mysql_objects=MYSQL_OBJECTS)
        source = SchemaSource(schema="mysql_objects:create", root=pytester.path)
        with IsolationWorkspace(source) as workspace:
            engine = workspace.databases(server.endpoint).engine()
            with engine.begin() as conn:
                assert conn.execute(text("SELECT count(*) FROM audit")).scalar() == 1
                conn.execute(text("CALL add_item(3)"))
                assert conn.execute(text("SELECT price FROM items WHERE id = 3")).scalar() == 6
                assert conn.execute(text("SELECT count(*) FROM audit")).scalar() == 2
                assert conn.execute(text("SELECT count(*) FROM v_second")).scalar() == 2
    finally:
        server.stop()


def test_a_session_whose_connection_died_is_still_cleaned(
    server: RunningServer, workspace: IsolationWorkspace
) -> None:
    """The one-round-trip end fails on a connection the server ended: the connection is
    discarded, the clean runs on its own, and a foreign commit is still named."""
    from sqlalchemy import create_engine  # noqa: PLC0415 - beside the others it would shadow nothing

    databases = workspace.databases(server.endpoint)
    engine = databases.engine()
    postgres = server.endpoint.service == "postgres"
    lease = DatabaseLease(databases, "rollback").acquire()
    with lease.session() as session:
        session.execute(text("DELETE FROM children"))
        session.commit()
        backend = session.execute(
            text("SELECT pg_backend_pid()" if postgres else "SELECT CONNECTION_ID()")
        ).scalar_one()
        foreign = create_engine(engine.url.render_as_string(hide_password=False))
        with foreign.begin() as conn:
            conn.execute(text("INSERT INTO parents VALUES (7)"))
        foreign.dispose()
        with databases.admin_engine.connect() as admin:
            admin.execute(
                text(
                    f"SELECT pg_terminate_backend({int(backend)})"
                    if postgres
                    else f"KILL {int(backend)}"
                )
            )
    assert lease.release()
    assert lease.foreign_tables == ("parents",)
    assert counts(engine) == (2, 1)


def test_the_one_round_trip_end_answers_only_with_something_to_report(
    server: RunningServer, workspace: IsolationWorkspace
) -> None:
    """A test whose writes all rolled back gets no row back from the end statement (on
    MySQL no result set at all: making one cost the server more than the CALL); a
    foreign commit comes back named, and cleaned."""
    from sqlalchemy import create_engine  # noqa: PLC0415 - beside the others it would shadow nothing

    from pytest_integration_kit.isolation.rollback_clean import end_statement  # noqa: PLC0415

    databases = workspace.databases(server.endpoint)
    engine = databases.engine()
    statement = end_statement(databases.admin, engine.dialect.driver)
    assert statement is not None

    def end(foreign_row: int | None) -> tuple[bool, object]:
        with engine.connect() as conn:
            conn.begin()
            conn.execute(text("DELETE FROM children"))
            if foreign_row is not None:
                other = create_engine(engine.url.render_as_string(hide_password=False))
                with other.begin() as foreign:
                    foreign.execute(text(f"INSERT INTO parents VALUES ({foreign_row})"))
                other.dispose()
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(statement)
            if server.endpoint.service == "postgres":
                cursor.nextset()  # the ROLLBACK's answer first, then the clean's row
            answered = cursor.description is not None
            row = cursor.fetchone() if answered else None
            cursor.close()
            conn.invalidate()  # the end left the server outside any transaction
        return answered, row

    answered, row = end(None)
    if server.endpoint.service == "mysql":
        assert (answered, row) == (False, None)
    else:
        assert row == (None,)
        # Every test's end looks for marks: through the index, never by reading the
        # dead rows that rolled-back marks leave in the heap (see tracking.py).
        with engine.begin() as conn:
            conn.execute(text("SELECT _pik.clean()"))
            scans = conn.execute(
                text(
                    "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables "
                    "WHERE relid = '_pik.dirty'::regclass"
                )
            ).one()
        assert tuple(scans) == (0, 1)
    assert counts(engine) == (2, 1)
    answered, row = end(8)
    assert answered
    assert databases.admin.clean_report(row).foreign == ("parents",)
    assert counts(engine) == (2, 1)
