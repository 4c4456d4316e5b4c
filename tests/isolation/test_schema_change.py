"""A test that changes a tracked table's columns (issue 8, item 5).

MySQL commits DDL at once, so neither rollback nor truncate can undo an ``ALTER
TABLE``. The cleaner used to restore seed rows with ``INSERT … SELECT *``: after one
test added a column, every later clean on that worker failed with ``(1136, "Column
count doesn't match value count")`` and rows leaked into every later test. Now the
test that changed the schema fails, named, and the worker database is rebuilt.
"""

from __future__ import annotations

import pytest
from isolation_project import run, write_project

ALTER_TESTS = """
import pytest
from sqlalchemy import inspect, text


def columns(engine, table):
    return [c["name"] for c in inspect(engine).get_columns(table)]


def test_a_adds_a_column_and_writes(mysql_engine):
    with mysql_engine.begin() as conn:
        conn.execute(text("ALTER TABLE users ADD COLUMN nickname VARCHAR(20) NULL"))
        conn.execute(text("INSERT INTO users (id, name, nickname) VALUES (5, 'x', 'y')"))


@pytest.mark.parametrize("n", range(3))
def test_b_later_tests_are_clean(n, mysql_engine, mysql_session):
    assert columns(mysql_engine, "users") == ["id", "name"]
    with mysql_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name) VALUES (:i, 'later')"), {"i": 10 + n})
    assert mysql_session.execute(text("SELECT count(*) FROM users")).scalar() == 3


@pytest.mark.isolation("truncate")
def test_c_truncate_session_adds_a_defaulted_column(mysql_session):
    mysql_session.execute(text("ALTER TABLE orders ADD COLUMN note INT NOT NULL DEFAULT 3"))
    mysql_session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 1)"))
    mysql_session.commit()


def test_d_nothing_leaked(mysql_engine, mysql_session):
    assert columns(mysql_engine, "orders") == ["id", "user_id", "total"]
    assert mysql_session.execute(text("SELECT count(*) FROM orders")).scalar() == 0
    rows = mysql_session.execute(text("SELECT id, name FROM users ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, "ada; lovelace"), (2, "100% grace")]
"""


def test_a_schema_change_is_named_and_does_not_leak(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_project(pytester)
    pytester.makepyfile(test_alter=ALTER_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=6, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_a_adds_a_column_and_writes*",
            "test_alter.py::test_a_adds_a_column_and_writes: the columns of users changed "
            "during the test*rebuilt from the template*isolation('clone')*",
            "*ERROR at teardown of test_c_truncate_session_adds_a_defaulted_column*",
            "test_alter.py::test_c_truncate_session_adds_a_defaulted_column: the columns of "
            "orders changed*",
        ]
    )
    assert "Column count doesn't match" not in result.stdout.str()
