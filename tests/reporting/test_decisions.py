"""Decisions said once: why tests were skipped, why ``auto`` chose what it chose.

A skipped run explains itself in one summary line per service and one
IntegrationKitWarning; a missing extra or a backend chosen by name that cannot run is
an error, not a skip.
"""

from __future__ import annotations

import pytest
from reporting_project import DEAD_DOCKER, PG_TESTS, docker_answers, run, summary


@pytest.fixture
def no_binaries(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty directory to point integration_<service>_bin_dir at, on a laptop: these
    tests are about skipping, which CI's strict default (CI set) turns into errors."""
    monkeypatch.delenv("CI", raising=False)
    return str(tmp_path_factory.mktemp("no-binaries"))


def test_no_docker_no_binaries_says_why_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_binaries: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEAD_DOCKER)
    monkeypatch.setenv("INTEGRATION_POSTGRES_BIN_DIR", no_binaries)
    pytester.makepyfile(PG_TESTS)
    result = run(pytester)
    result.assert_outcomes(skipped=2, warnings=1)
    out = result.stdout.str()
    # One line in the summary, with the fix and the reason of each backend under it...
    result.stdout.fnmatch_lines(
        [
            "*= integration services =*",
            "2 tests skipped: PostgreSQL unavailable — fix: start Docker*"
            "integration_postgres_bin_dir*integration_postgres_url*",
            f"  docker: the Docker engine did not answer at {DEAD_DOCKER}*",
            f"  local: no PostgreSQL server binaries (postgres, initdb) found; looked in "
            f"{no_binaries}*",
        ]
    )
    # ...and one warning: said twice in all, not once per test.
    result.stdout.fnmatch_lines(
        ["*IntegrationKitWarning: 2 tests skipped: PostgreSQL unavailable*"]
    )
    assert out.count("PostgreSQL unavailable") == 2
    assert result.ret == pytest.ExitCode.OK


def test_the_count_covers_every_xdist_worker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_binaries: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEAD_DOCKER)
    monkeypatch.setenv("INTEGRATION_POSTGRES_BIN_DIR", no_binaries)
    pytester.makepyfile(PG_TESTS + PG_TESTS.replace("_one", "_three").replace("_two", "_four"))
    result = run(pytester, "-n", "2")
    result.assert_outcomes(skipped=4)
    assert summary(result).count("4 tests skipped: PostgreSQL unavailable") == 1


def test_warning_made_an_error_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_binaries: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEAD_DOCKER)
    monkeypatch.setenv("INTEGRATION_POSTGRES_BIN_DIR", no_binaries)
    pytester.makepyfile(PG_TESTS)
    result = run(pytester, "-W", "error::pytest_integration_kit.errors.IntegrationKitWarning")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["error (IntegrationKitWarning made an error): 2 tests skipped: PostgreSQL unavailable*"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_backend_chosen_by_name_that_cannot_run_is_an_error(
    pytester: pytest.Pytester, no_binaries: str
) -> None:
    pytester.makeini(
        f"[pytest]\nintegration_backend = local\nintegration_postgres_bin_dir = {no_binaries}\n"
    )
    pytester.makepyfile(PG_TESTS)
    result = run(pytester)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*PostgreSQL unavailable: no PostgreSQL server binaries*",
            "*integration_backend=local was chosen (from ini), so it must run*",
        ]
    )
    assert (
        "2 tests errored: PostgreSQL unavailable — fix: install PostgreSQL's server binaries"
        in summary(result)
    )


def test_a_missing_driver_is_an_error_under_auto_too(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEAD_DOCKER)  # auto falls back to local, then the probe
    pytester.makeconftest("import sys\nsys.modules['psycopg'] = None\n")
    pytester.makepyfile(PG_TESTS)
    result = run(pytester, "--integration-missing=skip")
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "PostgreSQL needs the Python driver 'psycopg'" in out
    fix = "pip install 'pytest-integration-kit[postgres]'"
    assert f"2 tests errored: PostgreSQL unavailable — fix: {fix}" in out


def test_auto_says_why_docker_lost_when_the_engine_is_down(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEAD_DOCKER)
    pytester.makepyfile(PG_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=2, warnings=1)
    line = (
        "postgres: auto chose local — docker could not: the Docker engine did not answer at "
        f"{DEAD_DOCKER}*(set integration_backend=local or integration_postgres_backend to "
        "choose it and silence this)"
    )
    result.stdout.fnmatch_lines([f"*IntegrationKitWarning: {line}", "*integration services*", line])


def test_auto_says_why_docker_lost_when_testcontainers_is_missing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest("import sys\nsys.modules['testcontainers'] = None\n")
    pytester.makepyfile(PG_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=2, warnings=1)
    # Plain substrings: fnmatch reads [docker] as a character class.
    assert (
        "postgres: auto chose local — docker could not: the docker backend needs "
        "testcontainers, which is not installed: pip install 'pytest-integration-kit[docker]'"
    ) in summary(result)


def test_auto_says_why_docker_lost_when_the_image_cannot_be_pulled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not docker_answers():
        pytest.skip("needs a Docker engine (CI runs with one)")
    monkeypatch.setenv("INTEGRATION_POSTGRES_IMAGE", "pytest-integration-kit/absent:1")
    pytester.makepyfile(PG_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*integration services*",
            "postgres: auto chose local — docker could not: the image "
            "pytest-integration-kit/absent:1 is not present and could not be pulled*",
        ]
    )
