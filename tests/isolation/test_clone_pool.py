"""The clone strategy over many tests (issue 8, item 6).

Used clones kept their connection until a background drop that never came while
tests were quick: about one connection per test piled up until PostgreSQL refused
more (``FATAL: sorry, too many clients already``, after about 200 tests), and from
then on every test failed.
"""

from __future__ import annotations

import pytest
from isolation_project import run, write_project

MANY_CLONES = """
import pytest
from sqlalchemy import text

SEEN = {}
COUNT = (
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
    "AND starts_with(datname, :p)"
)


@pytest.mark.parametrize("n", range(320))
def test_clone(n, postgres_session, isolation_workspace, postgres_server):
    postgres_session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 5)"))
    postgres_session.commit()
    if n in (20, 319):
        admin = isolation_workspace.databases(postgres_server).admin_engine
        # This run's own: the url server is shared with other runs (xdist's other worker).
        mine = "pik_" + isolation_workspace.databases(postgres_server).owner
        with admin.connect() as conn:
            SEEN[n] = conn.execute(text(COUNT), {"p": mine}).scalar()
            databases = conn.execute(
                text("SELECT count(*) FROM pg_database WHERE starts_with(datname, :p)"),
                {"p": mine},
            ).scalar()
        print(f"CONNECTIONS at {n}: {SEEN[n]}, databases: {databases}")
    if n == 319:
        assert SEEN[319] <= SEEN[20] + 2, SEEN
        assert databases <= 7, databases  # the worker's, ready and doomed clones
"""


def test_connections_stay_flat_over_hundreds_of_clones(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_project(pytester, extra="integration_isolation = clone")
    pytester.makepyfile(test_many=MANY_CLONES)
    result = run(pytester, "-p", "no:randomly", "-s", "-q")
    result.assert_outcomes(passed=320)
    result.stdout.fnmatch_lines(["*CONNECTIONS at 20: *", "*CONNECTIONS at 319: *"])


FAILED_CLONE = """
import pytest
from sqlalchemy import text

pytestmark = pytest.mark.isolation("clone")
MOVED = "pik_moved_template"


def rename(workspace, server, old, new):
    admin = workspace.databases(server).admin_engine
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{old}" RENAME TO "{new}"')


def test_a_template_goes_away(postgres_session, isolation_workspace, postgres_server):
    # A changed schema: this clone is dropped, not reset, so the pool clones the template
    # again for the next test — and fails.
    postgres_session.execute(text("CREATE TABLE scratch (id INTEGER)"))
    postgres_session.commit()
    databases = isolation_workspace.databases(postgres_server)
    assert databases.clone_pool().wait_idle()
    rename(isolation_workspace, postgres_server, databases.template(), MOVED)


def test_b_the_next_clone_fails_in_the_background(
    postgres_session, isolation_workspace, postgres_server
):
    databases = isolation_workspace.databases(postgres_server)
    assert databases.clone_pool().wait_idle()  # the refill after this test's clone failed
    rename(isolation_workspace, postgres_server, MOVED, databases.template())


@pytest.mark.parametrize("n", range(6))
def test_c_later_tests_get_clones(n, postgres_session):
    postgres_session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 5)"))
    postgres_session.commit()
    assert postgres_session.execute(text("SELECT count(*) FROM orders")).scalar() == 1
"""


def test_a_failed_clone_does_not_fail_later_tests(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    if backend_env == "url":
        pytest.skip("renames a template on a server shared with other tests")
    write_project(pytester)
    pytester.makepyfile(test_failed_clone=FAILED_CLONE)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=8)


#: A CREATE DATABASE that takes long (a big template, a busy server): every clone the
#: pool makes after its first two waits for the last test, or 30 s.
SLOW_MAKES = """
import threading

from pytest_integration_kit.isolation.databases import IsolatedDatabases

RELEASE = threading.Event()
WAITED_OUT = []
_create = IsolatedDatabases.create_from_template
_made = []


def create_from_template(self, name, conn=None):
    _made.append(name)
    if len(_made) > 2 and not RELEASE.wait(30):
        WAITED_OUT.append(name)
    return _create(self, name, conn)


IsolatedDatabases.create_from_template = create_from_template
"""

BEHIND_A_SLOW_MAKE = """
import pytest
from sqlalchemy import text

import conftest

pytestmark = pytest.mark.isolation("clone")


@pytest.mark.parametrize("n", range(8))
def test_clone(n, postgres_session):
    postgres_session.execute(text("INSERT INTO orders (id, user_id, total) VALUES (1, 1, 5)"))
    postgres_session.commit()
    assert postgres_session.execute(text("SELECT count(*) FROM orders")).scalar() == 1


def test_no_test_waited_for_the_slow_make():
    conftest.RELEASE.set()
    assert conftest.WAITED_OUT == []
"""


def test_a_used_clone_is_not_reset_behind_a_new_one_being_made(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    # The pool's one thread made clones and reset used ones: a test that gave its
    # clone back while the pool was making another (the third, right at the start)
    # waited for that CREATE DATABASE before the reset could begin.
    write_project(pytester)
    pytester.makeconftest(SLOW_MAKES)
    pytester.makepyfile(test_behind=BEHIND_A_SLOW_MAKE)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=9)
