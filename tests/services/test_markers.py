"""Markers are registered and applied from the fixtures a test uses; unused services never start."""

from __future__ import annotations

import inspect

import pytest

from pytest_integration_kit.fixtures.mocks import http_mock_factory, mock_server_factory
from pytest_integration_kit.plugin import MARKERS

PROJECT = """
import pytest


@pytest.fixture
def repository(postgres_server):
    return postgres_server.database


@pytest.fixture
def cache(redis_server):
    return redis_server


def test_direct_db(mysql_server):
    assert mysql_server.port > 0


def test_db_through_a_user_fixture(repository):
    assert repository


def test_cache(cache):
    assert cache.port > 0


def test_plain():
    assert True
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio", *args)


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--markers")
    for name in ("requires_db", "requires_redis", "requires_network", "slow"):
        result.stdout.fnmatch_lines([f"@pytest.mark.{name}:*"])


def test_markers_are_applied_from_the_fixture_closure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_project=PROJECT)
    result = run(pytester, "--collect-only", "-q", "-m", "requires_db")
    result.stdout.fnmatch_lines(
        [
            "*test_direct_db",
            "*test_db_through_a_user_fixture",
            "*2/4 tests collected (2 deselected)*",
        ]
    )
    result = run(pytester, "--collect-only", "-q", "-m", "requires_redis")
    result.stdout.fnmatch_lines(["*test_cache", "*1/4 tests collected (3 deselected)*"])


def test_strict_markers_accept_them_by_hand(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = --strict-markers\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.slow
        @pytest.mark.requires_network
        def test_marked():
            pass
        """
    )
    run(pytester, "-m", "slow").assert_outcomes(passed=1)


def test_not_requires_db_starts_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_project=PROJECT)
    # A temp dir of its own: the host's, shared with runs other tests kill, may hold a
    # dead session's run dir, whose reaping the summary would rightly report.
    private = pytester.mkdir("tmp")
    monkeypatch.setenv("TMPDIR", str(private))
    # local would start in about a second; nothing may start at all.
    result = run(
        pytester, "-m", "not requires_db and not requires_redis", "--integration-backend=local"
    )
    result.assert_outcomes(passed=1, deselected=3)
    assert "integration services" not in result.stdout.str()


def test_only_the_needed_service_starts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_project=PROJECT)
    result = run(pytester, "-m", "requires_redis", "--integration-backend=local")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["*integration services*", "redis*local*"])
    assert "postgres " not in result.stdout.str()
    assert "mysql " not in result.stdout.str()


def test_every_marker_is_documented_with_the_real_defaults(pytester: pytest.Pytester) -> None:
    """`pytest --markers` explains each of the kit's markers; http_mock's defaults are real."""
    text = run(pytester, "--markers").stdout.str()
    for name in MARKERS:
        line = next((x for x in text.splitlines() if x.startswith(f"@pytest.mark.{name}")), "")
        assert line, f"marker {name} is not listed"
        assert len(line.split(":", 1)[1].strip()) > 20, f"marker {name} has no description"
    http_line = next(x for x in text.splitlines() if x.startswith("@pytest.mark.http_mock"))
    for factory in (http_mock_factory, mock_server_factory):
        for param in inspect.signature(factory).parameters.values():
            if param.name in ("assert_all_called", "assert_all_mocked", "https", "base_url"):
                assert f"{param.name}={param.default!r}" in http_line, (param.name, http_line)


def test_every_fixture_of_the_kit_has_a_docstring(pytester: pytest.Pytester) -> None:
    """`pytest --fixtures` says what each of the kit's fixtures is (none undocumented)."""
    result = run(pytester, "--fixtures")
    lines = result.stdout.str().splitlines()
    ours: dict[str, str] = {}
    for index, line in enumerate(lines):
        if " -- " in line and "pytest_integration_kit" in line.split(" -- ", 1)[1]:
            name = line.split(" ", 1)[0]
            ours[name] = lines[index + 1].strip() if index + 1 < len(lines) else ""
    expected = {
        "postgres_server",
        "mysql_server",
        "redis_server",
        "http_mock",
        "mock_server",
        "fault_proxy",
        "integration_network_guard",
        "isolation_workspace",
        "postgres_engine",
        "mysql_engine",
        "postgres_session",
        "mysql_session",
        "postgres_async_session",
        "mysql_async_session",
        "redis_client",
        "redis_async_client",
    }
    assert expected <= set(ours), expected - set(ours)
    undocumented = sorted(name for name, doc in ours.items() if doc == "no docstring available")
    assert not undocumented
    assert "PostgreSQL" in ours["postgres_server"]
    assert "Redis" in ours["redis_server"]


def test_autouse_fixtures_only_with_their_setting(pytester: pytest.Pytester) -> None:
    """Unset, integration_block_network and integration_sessionmaker cost a test no
    autouse fixture of the kit; on, their fixture is there."""
    pytester.makepyfile(test_it="def test_it(request):\n    print('USES', request.fixturenames)\n")
    off = run(pytester, "-s").stdout.str()
    assert "USES" in off
    assert "integration_network_guard" not in off
    assert "integration_sessionmaker_binding" not in off
    on = run(pytester, "-s", "-o", "integration_block_network=true").stdout.str()
    assert "integration_network_guard" in on
