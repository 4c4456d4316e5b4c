"""Shared fixtures: the kit does the rest (see pytest.ini)."""

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from pytest_integration_kit.isolation import bind_factories
from tests.factories import FACTORIES
from tests.leaks import LeakCheck


@pytest.fixture
def factories(postgres_session: Session) -> Iterator[None]:
    """factory_boy's factories create into this test's database (committed: the app sees them)."""
    with bind_factories(postgres_session, *FACTORIES):
        yield


@pytest.fixture(autouse=True, scope="session")
def leak_check(request: pytest.FixtureRequest) -> Iterator[LeakCheck]:
    """Strict: no test may leave rows, Redis keys or stream messages behind."""
    request.getfixturevalue("isolation_workspace")  # the databases outlive the last check
    check = LeakCheck()
    yield check
    leftovers, _ = check.leftovers(), check.close()
    assert not leftovers, f"the last test left {leftovers}"


@pytest.fixture(autouse=True)
def starts_clean(leak_check: LeakCheck, request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts from the seed; what the previous one left fails this one, naming it."""
    assert not (leftovers := leak_check.leftovers()), f"{leak_check.previous} left {leftovers}"
    yield
    leak_check.previous = request.node.nodeid
