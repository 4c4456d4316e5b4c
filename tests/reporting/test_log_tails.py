"""A server's log tail only where the failure involves the server: its driver's error,
a server that died, or ``-v``. ``assert 0`` gets none."""

from __future__ import annotations

import pytest
from reporting_project import run

TESTS = """
import os, signal, psycopg

def test_plain_failure(postgres_server):
    assert 0

def test_driver_error(postgres_server):
    psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                    user=postgres_server.user, password=postgres_server.password,
                    dbname="no_such_database")
"""

DIES = """
import os, signal, time, psycopg

def test_server_died(postgres_server):
    with psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                         user=postgres_server.user, password=postgres_server.password,
                         dbname=postgres_server.database) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # Read while the connection (its backend process) is still there.
        with open(f"/proc/{backend}/status") as status:
            postmaster = next(int(l.split()[1]) for l in status if l.startswith("PPid:"))
    os.kill(postmaster, signal.SIGKILL)
    time.sleep(0.5)
    assert 0, "the app broke"
"""

TITLE = "integration postgres server log (last 40 lines)"


def sections(result: pytest.RunResult) -> dict[str, str]:
    """Each failing test's report text, by test name."""
    out = result.stdout.str().split("= FAILURES =", 1)[1].split("short test summary")[0]
    parts = out.split("_____ ")
    return {p.split(" _", 1)[0].strip(): p for p in parts[1:]}


def test_only_a_failure_involving_the_server_gets_its_log(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TESTS)
    result = run(pytester, "--integration-backend=local")
    result.assert_outcomes(failed=2)
    reports = sections(result)
    assert TITLE not in reports["test_plain_failure"]
    assert TITLE in reports["test_driver_error"]
    assert 'database "no_such_database" does not exist' in reports["test_driver_error"]


def test_verbose_gets_it_for_any_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TESTS)
    result = run(pytester, "-v", "--integration-backend=local", "-k", "plain")
    result.assert_outcomes(failed=1, deselected=1)
    assert TITLE in sections(result)["test_plain_failure"]


def test_a_server_that_died_gets_its_log(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DIES)
    result = run(pytester, "--integration-backend=local")
    result.assert_outcomes(failed=1)
    assert TITLE in sections(result)["test_server_died"]
