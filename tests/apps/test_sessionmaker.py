"""integration_sessionmaker: the app's own SessionLocal inside each test's rollback."""

from __future__ import annotations

import pytest
from app_project import run, write_app, write_service

SESSIONMAKERS = "integration_sessionmaker = app.db:SessionLocal, app.adb:AsyncSessionLocal"

CONFTEST_TAIL = """

def pytest_sessionfinish(session):
    from app.adb import AsyncSessionLocal, engine as async_engine
    from app.db import SessionLocal, engine
    restored = SessionLocal.kw["bind"] is engine and AsyncSessionLocal.kw["bind"] is async_engine
    restored = restored and "join_transaction_mode" not in SessionLocal.kw
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.path.join(os.path.dirname(__file__), f"restored-{worker}.txt"), "w") as f:
        f.write(str(restored))
"""

TESTS = """
import asyncio

import pytest
from sqlalchemy import text

from app.db import SessionLocal, engine
from app.service import add_note, add_note_async, count_notes, count_notes_async


@pytest.mark.parametrize("n", range(6))
def test_code_under_test_commits(n):
    assert count_notes() == 0  # nothing leaked from any other test
    add_note(1, f"note {n}")
    add_note(2, "another")
    assert count_notes() == 2
    assert SessionLocal.kw["bind"] is not engine  # bound for the test


@pytest.mark.parametrize("n", range(6))
def test_the_app_sees_what_the_test_session_wrote(n, postgres_session):
    assert count_notes() == 0
    postgres_session.execute(text("INSERT INTO notes (user_id, body) VALUES (1, 'mine')"))
    postgres_session.commit()
    assert count_notes() == 1  # one connection, one transaction
    add_note(2, "the app's")
    assert postgres_session.execute(text("SELECT count(*) FROM notes")).scalar() == 2


@pytest.mark.isolation("truncate")
@pytest.mark.parametrize("n", range(4))
def test_under_truncate(n):
    assert count_notes() == 0
    add_note(1, "kept until the test ends")
    assert count_notes() == 1


@pytest.mark.parametrize("n", range(4))
def test_async_sessionmaker_from_another_loop(n):
    assert asyncio.run(count_notes_async()) == 0
    asyncio.run(add_note_async(1, f"async {n}"))
    assert asyncio.run(count_notes_async()) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("n", range(4))
async def test_async_sessionmaker_in_the_tests_loop(n):
    assert await count_notes_async() == 0
    await add_note_async(2, f"async {n}")
    assert await count_notes_async() == 1
"""


def test_app_sessions_commit_inside_the_tests_rollback_no_leaks(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_app(pytester, extra=SESSIONMAKERS)
    write_service(pytester)
    conftest = pytester.path / "conftest.py"
    conftest.write_text(conftest.read_text() + CONFTEST_TAIL)
    pytester.makepyfile(test_app=TESTS)
    result = run(pytester, "-n", "2", "-p", "xdist", "-p", "randomly")
    result.assert_outcomes(passed=24)
    restored = [p.read_text() for p in pytester.path.glob("restored-gw*.txt")]
    assert restored == ["True", "True"]


@pytest.mark.parametrize(
    ("reference", "complaint"),
    [
        ("app.db:nothing", "has no attribute 'nothing'"),
        ("app.db:engine", "expected a sqlalchemy.orm.sessionmaker"),
        ("app.nomodule:SessionLocal", "cannot import 'app.nomodule'"),
    ],
)
def test_a_bad_reference_is_a_usage_error(
    pytester: pytest.Pytester, backend_env: str, reference: str, complaint: str
) -> None:
    write_app(pytester, extra=f"integration_sessionmaker = {reference}")
    pytester.makepyfile(test_app="def test_plain(): pass")
    result = run(pytester, "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "integration_sessionmaker" in err
    assert complaint in err, err
    assert "Traceback" not in err + result.stdout.str()


def test_a_sessionmaker_on_no_kit_server_fails_its_tests_clearly(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_app(pytester, extra="integration_sessionmaker = elsewhere:SessionLocal")
    pytester.makepyfile(
        elsewhere="""
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

SessionLocal = sessionmaker(bind=create_engine("postgresql+psycopg://u:p@127.0.0.1:9/x"))
""",
        test_app="def test_plain(): pass",
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*integration_sessionmaker: elsewhere:SessionLocal is bound to *127.0.0.1:9/x*"]
    )
    assert "u:p@" not in result.stdout.str()
