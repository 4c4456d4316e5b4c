"""The strict leak check: what a test leaves open fails it, by name."""

from __future__ import annotations

import pytest
from isolation_project import run, write_project

TESTS = """
from sqlalchemy import text

KEPT = []


def test_leaves_a_connection_checked_out(postgres_engine):
    conn = postgres_engine.connect()
    conn.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 1)"))
    KEPT.append(conn)  # never closed, transaction still open


def test_runs_after_the_leak(postgres_engine):
    with postgres_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == 0


def test_tidy(postgres_session):
    postgres_session.execute(text("SELECT 1"))
"""


def test_a_leaked_connection_fails_the_test_by_name(pytester: pytest.Pytester) -> None:
    write_project(pytester, extra="integration_backend = local\nintegration_leak_check = true")
    pytester.makepyfile(test_user=TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_connection_checked_out*",
            "*the test left behind (strict leak check, integration_leak_check):*",
            "*1 connection(s) of the engine on 'pik_*' checked out*",
            "*idle in transaction*",
        ]
    )


def test_without_the_check_the_same_test_passes(pytester: pytest.Pytester) -> None:
    write_project(pytester, extra="integration_backend = local")
    pytester.makepyfile(
        test_user=TESTS.replace(
            "KEPT.append(conn)  # never closed, transaction still open",
            "conn.commit()\n    KEPT.append(conn)",
        )
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=3)


def test_leaks_from_a_clone_are_named_too(pytester: pytest.Pytester) -> None:
    write_project(
        pytester,
        extra="integration_backend = local\nintegration_leak_check = true\n"
        "integration_isolation = clone",
    )
    pytester.makepyfile(
        test_user="""
KEPT = []

def test_leaks(mysql_engine):
    KEPT.append(mysql_engine.connect())

def test_tidy(mysql_session):
    pass
"""
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*1 connection(s) of the engine on 'pik_*_c*' checked out*"])
