"""The clone strategy hands a used PostgreSQL clone out again only once it is the
template's again (issue 11): rows, sequences and session state are reset; a changed
schema or a connection the test left open gets the database dropped instead."""

from __future__ import annotations

import pytest
from isolation_project import run, write_project

REUSE_TESTS = """
import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.isolation("clone")

NAMES = []  # the database of each test, in order
# database → its place in NAMES, for tests that changed the schema or left a connection
NOT_REUSABLE = {}
LEFT_OPEN = []  # kept referenced: never closed, never collected during the run


def pool(workspace, server):
    return workspace.databases(server).clone_pool()


@pytest.fixture(autouse=True)
def is_the_template(postgres_session, postgres_engine):
    s = postgres_session
    NAMES.append(postgres_engine.url.database)
    assert s.execute(text("SELECT id, name FROM users ORDER BY id")).all() == [
        (1, "ada; lovelace"),
        (2, "100% grace"),
    ]
    assert s.execute(text("SELECT count(*) FROM orders")).scalar() == 0
    columns = s.execute(
        text("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'")
    ).scalar()
    assert columns == 2
    assert s.execute(text("SELECT to_regclass('scratch')")).scalar() is None
    assert s.execute(text("SELECT to_regclass('pg_temp.tmp')")).scalar() is None
    assert s.execute(text("SELECT current_setting('search_path')")).scalar() == '"$user", public'
    assert s.execute(text("SELECT current_setting('lock_timeout')")).scalar() == "5s"
    assert s.execute(text("SELECT pg_try_advisory_lock(42)")).scalar() is True
    assert s.execute(text("SELECT pg_advisory_unlock(42)")).scalar() is True
    s.commit()
    yield


@pytest.mark.parametrize("n", range(8))
def test_rows_sequences_and_session_state(n, postgres_session):
    s = postgres_session
    # The sequences are the template's: the seed rows gave their ids explicitly.
    assert s.execute(text("SELECT nextval('users_id_seq')")).scalar() == 1
    assert s.execute(text("SELECT nextval('users_id_seq')")).scalar() == 2
    s.execute(text("SELECT setval('orders_id_seq', 500)"))
    s.execute(text("INSERT INTO users (id, name) VALUES (7, 'mine')"))
    s.execute(text("UPDATE users SET name = 'renamed' WHERE id = 1"))
    s.execute(text("INSERT INTO orders (user_id, total) VALUES (7, 3)"))
    s.execute(text("DELETE FROM users WHERE id = 2"))
    s.commit()
    s.execute(text("SET search_path = pg_catalog"))
    s.execute(text("SET lock_timeout = '1s'"))
    s.execute(text("SELECT pg_advisory_lock(42)"))
    s.commit()
    # Left for the reset's own connection: undone before the reset writes anything.
    s.execute(text("SET default_transaction_read_only = on"))
    s.commit()


@pytest.mark.parametrize(
    "ddl",
    [
        "ALTER TABLE users ADD COLUMN extra integer",
        "CREATE TABLE scratch (id integer)",
        "CREATE TEMPORARY TABLE tmp (id integer)",
        "TRUNCATE orders, users",
    ],
)
def test_schema_changes(ddl, postgres_session, postgres_engine):
    postgres_session.execute(text(ddl))
    postgres_session.commit()
    NOT_REUSABLE[postgres_engine.url.database] = len(NAMES) - 1


def test_a_connection_left_open(postgres_engine):
    own = create_engine(postgres_engine.url.render_as_string(hide_password=False))
    conn = own.connect()  # never closed: the clone is dropped, which ends it
    conn.execute(text("INSERT INTO users (id, name) VALUES (8, 'left')"))
    conn.commit()
    LEFT_OPEN.append((own, conn))
    NOT_REUSABLE[postgres_engine.url.database] = len(NAMES) - 1


@pytest.mark.parametrize("n", range(6))
def test_after_them(n, postgres_session):
    pass


def test_zz_reused_where_it_could_be(isolation_workspace, postgres_server):
    clones = pool(isolation_workspace, postgres_server)
    assert clones.wait_idle()
    assert clones.reset_count >= 10, (clones.reset_count, NAMES)
    assert clones.dropped_count >= len(NOT_REUSABLE) == 5
    # A database whose test changed its schema or left a connection is not handed out again.
    for name, place in NOT_REUSABLE.items():
        assert name not in NAMES[place + 1 :], (name, NAMES)
    assert len(set(NAMES)) < len(NAMES)
"""


def test_a_used_clone_is_the_templates_again_or_dropped(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_project(pytester, extra="integration_clone_pool_size = 1")
    pytester.makepyfile(test_reuse=REUSE_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=20)


MYSQL_TESTS = """
import pytest
from sqlalchemy import text

pytestmark = pytest.mark.isolation("clone")
NAMES = []


@pytest.mark.parametrize("n", range(4))
def test_each_gets_a_new_database(n, mysql_session, mysql_engine):
    NAMES.append(mysql_engine.url.database)
    assert len(set(NAMES)) == len(NAMES)
    assert mysql_session.execute(text("SELECT count(*) FROM users")).scalar() == 2
    mysql_session.execute(text("INSERT INTO users (id, name) VALUES (3, 'mine')"))
    mysql_session.commit()
"""


def test_mysql_clones_are_not_reused(pytester: pytest.Pytester, backend_env: str) -> None:
    write_project(pytester, extra="integration_clone_pool_size = 1")
    pytester.makepyfile(test_mysql=MYSQL_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=4)
