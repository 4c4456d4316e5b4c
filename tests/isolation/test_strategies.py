"""The truncate and clone strategies, chosen by marker or by setting."""

from __future__ import annotations

import pytest
from isolation_project import run, write_project

TRUNCATE_TESTS = """
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.isolation("truncate")

DB = pytest.mark.parametrize("db", ["postgres", "mysql"])


@DB
def test_code_with_its_own_connection_and_process(db, request):
    engine = request.getfixturevalue(f"{db}_engine")
    url = engine.url.render_as_string(hide_password=False)
    # The code under test opens its own engine...
    own = create_engine(url)
    with own.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name) VALUES (3, 'own')"))
        conn.execute(text("UPDATE users SET name = 'changed' WHERE id = 1"))
    own.dispose()
    # ...and another process writes too.
    script = (
        "import sys; from sqlalchemy import create_engine, text; "
        "e = create_engine(sys.argv[1]); c = e.connect(); "
        "c.execute(text('INSERT INTO orders (id, user_id, total) VALUES (1, 3, 9)')); "
        "c.commit(); c.close(); e.dispose()"
    )
    subprocess.run([sys.executable, "-c", script, url], check=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == 1


@DB
def test_all_back_to_the_seed(db, request):
    session = request.getfixturevalue(f"{db}_session")
    rows = session.execute(text("SELECT id, name FROM users ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, "ada; lovelace"), (2, "100% grace")]
    assert session.execute(text("SELECT count(*) FROM orders")).scalar() == 0


@DB
def test_session_commits_for_real(db, request):
    session = request.getfixturevalue(f"{db}_session")
    session.execute(text("DELETE FROM users WHERE id = 2"))
    session.commit()
    engine = request.getfixturevalue(f"{db}_engine")
    with engine.connect() as conn:  # another connection sees it: no outer transaction
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 1


@DB
def test_seed_row_restored(db, request):
    session = request.getfixturevalue(f"{db}_session")
    assert session.execute(text("SELECT count(*) FROM users")).scalar() == 2
"""

CLONE_TESTS = """
import pytest
from sqlalchemy import text

DB = pytest.mark.parametrize("db", ["postgres", "mysql"])
SEEN = {}


@DB
@pytest.mark.parametrize("n", range(4))
def test_each_test_gets_a_fresh_database(db, n, request):
    session = request.getfixturevalue(f"{db}_session")
    engine = request.getfixturevalue(f"{db}_engine")
    name = engine.url.database
    assert session.get_bind().url.database == name
    assert name not in SEEN.setdefault(db, set())
    assert len(name.encode()) <= 63
    SEEN[db].add(name)
    assert session.execute(text("SELECT count(*) FROM users")).scalar() == 2
    session.execute(text("INSERT INTO users (id, name) VALUES (3, 'mine')"))
    session.commit()
    # DDL too: a clone can take what a rolled-back transaction could not.
    session.execute(text("CREATE TABLE scratch (id INTEGER)"))
    session.commit()
"""


def test_truncate_empties_what_any_connection_wrote(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_project(pytester)
    pytester.makepyfile(test_user=TRUNCATE_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=8)


def test_clone_gives_each_test_a_fresh_database(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_project(pytester, extra="integration_isolation = clone")
    pytester.makepyfile(test_user=CLONE_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=8)


def test_a_bad_strategy_in_the_marker_names_the_choices(pytester: pytest.Pytester) -> None:
    write_project(pytester, extra="integration_backend = local")
    pytester.makepyfile(
        test_user="""
import pytest

@pytest.mark.isolation("savepoint")
def test_it(postgres_session):
    pass
"""
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.isolation('savepoint'): expected one of rollback, truncate, clone*"]
    )
