"""The header: one line by default (the services the selected tests need, their backend,
the settings the user changed and where from); the whole table with ``-v``; no secret."""

from __future__ import annotations

import pytest
from reporting_project import PG_TESTS, run


def header_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if line.startswith("integration")]


def test_one_line_with_only_what_the_user_changed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nintegration_backend = local\n")
    monkeypatch.setenv("INTEGRATION_ISOLATION", "truncate")
    monkeypatch.setenv("INTEGRATION_POSTGRES_IMAGE", "postgres:16")  # unused on local
    monkeypatch.setenv("INTEGRATION_REDIS_IMAGE", "redis:7")  # no test needs Redis
    pytester.makepyfile(PG_TESTS)
    result = run(pytester, "--collect-only")
    assert header_lines(result) == [
        "integration: postgres local (from ini), isolation=truncate (env)"
    ]


def test_nothing_when_nothing_is_needed_or_changed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert header_lines(result) == []


def test_every_needed_service_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "def test_a(postgres_server, redis_server): pass\ndef test_b(postgres_server): pass\n"
    )
    result = run(pytester, "--collect-only")
    assert header_lines(result) == ["integration: postgres auto, redis auto"]


def test_the_whole_table_with_v_and_never_a_password(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_BACKEND", "url")
    monkeypatch.setenv("INTEGRATION_POSTGRES_URL", "postgresql://app:hunter2@127.0.0.1:1/app")
    pytester.makepyfile(PG_TESTS)
    result = run(pytester, "--collect-only")
    assert header_lines(result) == [
        "integration: postgres url (from env), "
        "postgres_url=postgresql://app:***@127.0.0.1:1/app (env)"
    ]
    verbose = run(pytester, "--collect-only", "-v")
    lines = header_lines(verbose)
    assert lines[0].startswith("integration: backend=url (env), missing=skip (default)")
    # One line per registered service, in the registry's (name) order.
    assert [line.split(":", 1)[0] for line in lines[1:5]] == [
        "integration mysql",
        "integration postgres",
        "integration rabbitmq",
        "integration redis",
    ]
    assert "url=postgresql://app:***@127.0.0.1:1/app (env)" in lines[2]
    assert "hunter2" not in result.stdout.str() + verbose.stdout.str()


def test_xdist_controller_shows_the_changed_settings(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_ISOLATION", "clone")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=1)
    assert header_lines(result) == ["integration: isolation=clone (env)"]
