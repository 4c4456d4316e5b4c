"""What pytest's fixture machinery costs a test of the kit's sync fixtures (issue 11).

pytest 9 builds a new FixtureDef (reading a signature) every time a fixture that names
``request`` — or ``pytestconfig``, which names it — is resolved: twice per test for a
function fixture, once per test for each session fixture under it, cached or not. The
kit's sync fixtures and the session fixtures they stand on name neither: they take the
request from the plugin's ``pytest_fixture_setup`` (``fixtures.setup_request``).
"""

from __future__ import annotations

import json

import pytest
from isolation_project import write_project

from pytest_integration_kit.fixtures.setup_request import current_request

#: Counts, per test, the FixtureDefs pytest builds for a ``request`` lookup.
COUNTING_CONFTEST = """
import json

import pytest
from _pytest import fixtures

BUILT = [0]
PER_TEST = {}
_init = fixtures.RequestFixtureDef.__init__


def _counting(self, request):
    BUILT[0] += 1
    _init(self, request)


fixtures.RequestFixtureDef.__init__ = _counting


@pytest.fixture
def plain():
    yield 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = BUILT[0]
    result = yield
    PER_TEST[item.name] = BUILT[0] - before
    return result


def pytest_sessionfinish(session):
    with open("built.json", "w") as out:
        json.dump(PER_TEST, out)
"""

#: Each fixture twice (the first test of a fixture also sets up its session fixtures).
COUNTED_TESTS = """
import pytest

FIXTURES = [
    "plain", "postgres_session", "postgres_engine", "postgres_connection",
    "mysql_session", "redis_client",
]


@pytest.mark.parametrize("n", range(2))
@pytest.mark.parametrize("name", FIXTURES)
def test_uses(name, n, request):
    assert request.getfixturevalue(name) is not None


def test_plain_direct(plain):
    pass


def test_postgres_session_direct(postgres_session):
    postgres_session.connection()


def test_redis_client_direct(redis_client):
    redis_client.ping()
"""


def test_kit_fixtures_cost_no_request_lookups(pytester: pytest.Pytester, backend_env: str) -> None:
    """A test of postgres_session, postgres_engine, postgres_connection, mysql_session or
    redis_client makes pytest build no more request FixtureDefs than one of a plain
    fixture of the user's (before: 3 to 5 more per test)."""
    pytest.importorskip("_pytest.fixtures").RequestFixtureDef  # noqa: B018 - pytest >= 8.x
    write_project(pytester)
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(test_counted=COUNTED_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=15)
    built = json.loads(pytester.path.joinpath("built.json").read_text())
    plain = built["test_uses[plain-1]"]
    again = {name: count for name, count in built.items() if name.endswith("-1]")}
    assert again == dict.fromkeys(again, plain), built
    assert built["test_postgres_session_direct"] == built["test_plain_direct"], built
    assert built["test_redis_client_direct"] == built["test_plain_direct"], built


def test_current_request_outside_a_fixture_setup_says_why() -> None:
    with pytest.raises(RuntimeError, match="outside pytest's fixture setup"):
        current_request()
