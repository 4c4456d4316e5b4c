"""Every setting, through each of CLI, env and ini: good values land, bad ones are usage errors."""

from __future__ import annotations

import pytest

from pytest_integration_kit.services import REGISTRY
from pytest_integration_kit.settings import Setting, mask_url_password, settings_table

SETTINGS = settings_table(REGISTRY.builtin())
SERVICES = tuple(REGISTRY.names())

SOURCES = ("cli", "env", "ini")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # These inner runs need no event loop; without pytest-asyncio they stay quiet.
    return pytester.runpytest("-p", "no:asyncio", "-p", "no:randomly", *args)


def _apply(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    setting: Setting,
    raw: str,
    source: str,
) -> list[str]:
    """Set ``setting`` to ``raw`` the way a user would through ``source``; return CLI args."""
    if source == "cli":
        return [f"{setting.cli}={raw}"]
    if source == "env":
        monkeypatch.setenv(setting.env, raw)
    else:
        pytester.makeini(f"[pytest]\n{setting.ini} = {raw}\n")
    return []


def test_every_setting_documents_examples() -> None:
    for setting in SETTINGS:
        assert setting.example, f"{setting.name} needs an example"
        assert setting.bad_example, f"{setting.name} needs a bad_example"
        assert setting.help.endswith("."), setting.name


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_good_value_is_used_and_its_source_shown(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setting: Setting, source: str
) -> None:
    args = _apply(pytester, monkeypatch, setting, setting.example, source)
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--collect-only", *args)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    value = str(setting.parse(setting.example))
    shown = mask_url_password(value) if setting.secret else value
    service, _, key = setting.name.partition("_")
    prefix = f"integration {service}: " if service in SERVICES and key else "integration: "
    key = key if service in SERVICES and key else setting.name
    line = next(line for line in result.stdout.lines if line.startswith(prefix))
    assert f"{key}={shown} ({source})" in line, line


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_bad_value_is_a_usage_error_naming_setting_value_and_allowed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setting: Setting, source: str
) -> None:
    args = _apply(pytester, monkeypatch, setting, setting.bad_example, source)
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert setting.ini in err
    assert repr(setting.bad_example) in err
    assert setting.allowed in err
    where = {"cli": setting.cli, "env": setting.env, "ini": setting.ini}[source]
    assert f"set by {where}" in err
    assert "Traceback" not in err + result.stdout.str()
    assert "passed" not in result.stdout.str()  # nothing ran


def test_precedence_is_cli_then_env_then_ini_then_default(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_nothing(): pass")

    def header() -> str:
        lines = result.stdout.lines
        return next(line for line in lines if line.startswith("integration: "))

    result = run(pytester, "--collect-only")
    assert "backend=auto (default)" in header()
    pytester.makeini("[pytest]\nintegration_backend = url\n")
    result = run(pytester, "--collect-only")
    assert "backend=url (ini)" in header()
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    result = run(pytester, "--collect-only")
    assert "backend=local (env)" in header()
    result = run(pytester, "--collect-only", "--integration-backend", "docker")
    assert "backend=docker (cli)" in header()


def test_service_backend_inherits_the_global_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(
        pytester, "--collect-only", "--integration-backend=local", "--integration-redis-backend=url"
    )
    result.stdout.fnmatch_lines(
        [
            "integration postgres: backend=local (from integration_backend)*",
            "integration redis: backend=url (cli)*",
        ],
        consecutive=False,
    )


def test_missing_policy_defaults_to_fail_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    monkeypatch.setenv("CI", "true")
    result = run(pytester, "--collect-only")
    result.stdout.fnmatch_lines(["*missing=fail (default: CI is set)*"])
    monkeypatch.setenv("CI", "false")
    result = run(pytester, "--collect-only")
    result.stdout.fnmatch_lines(["*missing=skip (default)*"])


def test_empty_env_var_counts_as_unset(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    monkeypatch.setenv("INTEGRATION_BACKEND", "")
    result = run(pytester, "--collect-only")
    result.stdout.fnmatch_lines(["*backend=auto (default)*"])


def test_url_password_never_shown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(
        pytester,
        "--collect-only",
        "--integration-postgres-url=postgresql://app:hunter2@db:5432/app",
    )
    assert "hunter2" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*url=postgresql://app:***@db:5432/app (cli)*"])
    result = run(pytester, "--integration-redis-url=http://:hunter2@db:6379/0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "hunter2" not in result.stderr.str()


def test_several_bad_settings_are_reported_together(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nintegration_missing = maybe\n")
    result = run(pytester, "--integration-backend=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "integration_backend: 'nope'" in err
    assert "integration_missing: 'maybe'" in err


def test_options_are_listed_in_help(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    for setting in SETTINGS:
        assert setting.cli in result.stdout.str()
        assert setting.ini in result.stdout.str()
