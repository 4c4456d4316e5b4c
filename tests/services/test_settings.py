"""Every setting, through each of CLI, env and ini: good values land, bad ones are usage errors."""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlsplit, urlunsplit

# Imported here, not first inside an in-process run: pytester drops modules first
# imported there, and alembic importing SQLAlchemy's dialects anew warns (an error here).
import alembic.config
import alembic.script
import pytest

from pytest_integration_kit.services import REGISTRY
from pytest_integration_kit.settings import (
    MAX_CLONE_POOL_SIZE,
    Setting,
    mask_url_password,
    settings_table,
)

SETTINGS = settings_table(REGISTRY.builtin())
SERVICES = tuple(REGISTRY.names())

PRELOADED = (alembic.config, alembic.script)
SOURCES = ("cli", "env", "ini")
FLAGS = [setting for setting in SETTINGS if setting.kind == "bool"]


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
    if source == "cli" and setting.kind == "bool":
        return [setting.cli if setting.parse(raw) else setting.no_cli]
    if source == "cli":
        return [f"{setting.cli}={raw}"]
    if source == "env":
        monkeypatch.setenv(setting.env, raw)
    else:
        pytester.makeini(f"[pytest]\n{setting.ini} = {raw}\n")
    return []


def make_example_project(pytester: pytest.Pytester) -> None:
    """What the settings' examples name: the schema, seed and alembic files are checked
    at start-up, so they must exist."""
    pytester.mkpydir("myapp")
    pytester.path.joinpath("myapp", "models.py").write_text(
        "from sqlalchemy.orm import DeclarativeBase\n\nclass Base(DeclarativeBase):\n    pass\n"
    )
    pytester.path.joinpath("myapp", "seed.py").write_text("def load(connection):\n    pass\n")
    pytester.mkdir("seed").joinpath("users.sql").write_text("SELECT 1;\n")
    pytester.mkdir("init").joinpath("roles.sql").write_text("CREATE ROLE reader;\n")
    pytester.mkdir("migrations").joinpath("versions").mkdir()
    pytester.path.joinpath("migrations", "env.py").write_text("")
    pytester.path.joinpath("alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/migrations\n"
    )


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
    make_example_project(pytester)
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--collect-only", "-v", *args)  # -v: the whole settings table
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    value = str(setting.parse(setting.example))
    shown = mask_url_password(value) if setting.secret else value
    service, _, key = setting.name.partition("_")
    prefix = f"integration {service}: " if service in SERVICES and key else "integration: "
    key = key if service in SERVICES and key else setting.name
    line = next(line for line in result.stdout.lines if line.startswith(prefix))
    assert f"{key}={shown} ({source})" in line, line


#: A flag takes no value, so a boolean has no bad value on the command line: see
#: test_a_flag_given_a_value_is_a_usage_error.
VALUED = [
    pytest.param(setting, source, id=f"{source}-{setting.name}")
    for setting in SETTINGS
    for source in SOURCES
    if not (source == "cli" and setting.kind == "bool")
]


@pytest.mark.parametrize(("setting", "source"), VALUED)
def test_bad_value_is_a_usage_error_naming_setting_value_and_allowed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setting: Setting, source: str
) -> None:
    args = _apply(pytester, monkeypatch, setting, setting.bad_example, source)
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert setting.ini in err
    shown = [repr(setting.bad_example)]
    if source == "ini" and setting.kind in ("int", "float"):
        # pytest 9.0 and 9.1 convert a typed ini value before the kit sees it: -1 -> -1.0
        shown.append(str({"int": int, "float": float}[setting.kind](setting.bad_example)))
    assert any(value in err for value in shown), err
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

    result = run(pytester, "--collect-only", "-v")
    assert "backend=auto (default)" in header()
    pytester.makeini("[pytest]\nintegration_backend = url\n")
    result = run(pytester, "--collect-only", "-v")
    assert "backend=url (ini)" in header()
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    result = run(pytester, "--collect-only", "-v")
    assert "backend=local (env)" in header()
    result = run(pytester, "--collect-only", "-v", "--integration-backend", "docker")
    assert "backend=docker (cli)" in header()


def test_service_backend_inherits_the_global_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(
        pytester,
        "--collect-only",
        "-v",
        "--integration-backend=local",
        "--integration-redis-backend=url",
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
    result = run(pytester, "--collect-only", "-v")
    result.stdout.fnmatch_lines(["*missing=fail (default: CI is set)*"])
    monkeypatch.setenv("CI", "false")
    result = run(pytester, "--collect-only", "-v")
    result.stdout.fnmatch_lines(["*missing=skip (default)*"])


def test_empty_env_var_counts_as_unset(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    monkeypatch.setenv("INTEGRATION_BACKEND", "")
    result = run(pytester, "--collect-only", "-v")
    result.stdout.fnmatch_lines(["*backend=auto (default)*"])


def test_url_password_never_shown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(
        pytester,
        "--collect-only",
        "-v",
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


# -- flags (issue 10.1) ---------------------------------------------------------------


def header(result: pytest.RunResult) -> str:
    """The report header's general line (``integration: …``)."""
    return next(line for line in result.stdout.lines if line.startswith("integration: "))


@pytest.mark.parametrize("setting", FLAGS, ids=lambda s: s.name)
def test_a_boolean_is_a_flag_that_takes_no_argument(
    pytester: pytest.Pytester, setting: Setting
) -> None:
    pytester.makepyfile(test_pg="def test_pg(): pass", test_other="def test_other(): pass")
    # The path after the flag is a path, not the flag's value.
    result = run(pytester, setting.cli, "test_pg.py")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.assert_outcomes(passed=1)
    assert f"{setting.name}=True (cli)" in header(result)


@pytest.mark.parametrize("setting", FLAGS, ids=lambda s: s.name)
def test_the_no_flag_turns_it_off_over_env_and_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setting: Setting
) -> None:
    pytester.makeini(f"[pytest]\n{setting.ini} = true\n")
    monkeypatch.setenv(setting.env, "yes")
    pytester.makepyfile("def test_nothing(): pass")
    assert f"{setting.name}=True (env)" in header(run(pytester, "--collect-only"))
    result = run(pytester, "--collect-only", setting.no_cli)
    assert f"{setting.name}=False (cli)" in header(result)


@pytest.mark.parametrize("setting", FLAGS, ids=lambda s: s.name)
def test_a_flag_given_a_value_is_a_usage_error(pytester: pytest.Pytester, setting: Setting) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, f"{setting.cli}=yes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert setting.cli in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_help_lists_choices_flags_and_what_is_allowed(pytester: pytest.Pytester) -> None:
    out = " ".join(run(pytester, "--help").stdout.str().split())
    assert "--integration-backend={auto,docker,local,url}" in out
    assert "--integration-isolation={rollback,truncate,clone}" in out
    for setting in FLAGS:
        assert setting.no_cli in out
        assert f"{setting.cli}=BOOL" not in out
    for setting in SETTINGS:
        assert " ".join(f"Allowed: {setting.allowed}.".split()) in out


# -- native TOML (issue 10.2) -----------------------------------------------------------


#: Each setting's example as a native TOML value, the way a pyproject.toml has it.
def _toml_value(setting: Setting) -> str:
    """The example as TOML writes it natively: a list, a boolean, a bare number."""
    if setting.kind == "list":
        return "[" + ", ".join(f"'{entry}'" for entry in setting.example.split(",")) + "]"
    if setting.kind == "bool":
        return "true" if setting.parse(setting.example) else "false"
    if setting.kind in ("int", "float"):
        return setting.example
    return f"'{setting.example}'"


def _expected(setting: Setting) -> str:
    value = setting.parse(setting.example)
    shown = mask_url_password(str(value)) if setting.secret else str(value)
    return f"={shown} (ini)"


@pytest.mark.skipif(
    pytest.version_tuple < (9, 0), reason="[tool.pytest] (native TOML) is read from pytest 9 on"
)
def test_native_toml_values_under_tool_pytest(pytester: pytest.Pytester) -> None:
    # integration_env starts the server it names before collection, and together the
    # examples ask for an image that does not exist under missing=fail: it has its own test.
    chosen = [setting for setting in SETTINGS if setting.name != "env"]
    lines = [f"{setting.ini} = {_toml_value(setting)}" for setting in chosen]
    pytester.makefile(".toml", pyproject="[tool.pytest]\n" + "\n".join(lines) + "\n")
    make_example_project(pytester)
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--collect-only", "-v")  # -v: every service's settings too
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    shown = "\n".join(result.stdout.lines)
    for setting in chosen:
        assert _expected(setting) in shown, setting.name


def test_typed_values_under_tool_pytest_ini_options(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml",
        pyproject="""
[tool.pytest.ini_options]
integration_reuse = false
integration_leak_check = true
integration_startup_timeout = 30
integration_clone_pool_size = 4
integration_seed = ["seed/users.sql", "myapp.seed:load"]
""",
    )
    make_example_project(pytester)
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--collect-only")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    line = header(result)
    for part in (
        "reuse=False (ini)",
        "leak_check=True (ini)",
        "startup_timeout=30.0 (ini)",
        "clone_pool_size=4 (ini)",
        "seed=('seed/users.sql', 'myapp.seed:load') (ini)",
    ):
        assert part in line


@pytest.mark.skipif(
    pytest.version_tuple < (9, 0), reason="[tool.pytest] (native TOML) is read from pytest 9 on"
)
def test_a_native_toml_value_of_the_wrong_type_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(
        ".toml",
        pyproject="""
[tool.pytest]
integration_backend = true
integration_startup_timeout = nan
integration_clone_pool_size = 1e3
integration_seed = 7
""",
    )
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    for name in ("backend", "startup_timeout", "clone_pool_size", "seed"):
        assert f"integration_{name}: " in err
    assert "Traceback" not in err


def test_clone_pool_size_is_bounded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, f"--integration-clone-pool-size={MAX_CLONE_POOL_SIZE}", "--collect-only")
    assert result.ret == pytest.ExitCode.OK
    result = run(pytester, f"--integration-clone-pool-size={MAX_CLONE_POOL_SIZE + 1}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"*integration_clone_pool_size: '{MAX_CLONE_POOL_SIZE + 1}' is not allowed*"
            f"from 1 to {MAX_CLONE_POOL_SIZE}*"
        ]
    )


# -- passwords in URLs are masked everywhere (issue 8.11) -------------------------------

#: URLs whose password (``hun…ter2``) an earlier mask let through; ``service`` first.
SECRET_URLS = {
    "query password": ("postgres", "postgresql://app@127.0.0.1:5432/app?password=hunter2"),
    "query password, later": (
        "postgres",
        "postgresql://app@127.0.0.1:5432/app?sslmode=disable&password=hunter2&x=1",
    ),
    "slash in password": ("postgres", "postgresql://app:hun/ter2@127.0.0.1:5432/app"),
    "at in password": ("mysql", "mysql://root:hun@ter2@127.0.0.1:3306/app"),
    "hash in password": ("mysql", "mysql://root:hun#ter2@127.0.0.1:3306/app"),
    "question mark in password": ("redis", "redis://:hun?ter2@127.0.0.1:6379/0"),
    "redis query password": ("redis", "redis://127.0.0.1:6379/0?password=hunter2"),
    "no scheme": ("postgres", "app:hun/ter2@127.0.0.1/app"),
}


@pytest.mark.parametrize("url", [url for _, url in SECRET_URLS.values()], ids=SECRET_URLS.keys())
def test_mask_url_password_leaves_no_part_of_the_password(url: str) -> None:
    masked = mask_url_password(url)
    assert "ter2" not in masked
    assert "***" in masked


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("service", "url"), SECRET_URLS.values(), ids=SECRET_URLS.keys())
def test_no_part_of_a_url_password_is_ever_printed(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    url: str,
    source: str,
) -> None:
    setting = next(s for s in SETTINGS if s.name == f"{service}_url")
    args = _apply(pytester, monkeypatch, setting, url, source)
    pytester.makepyfile("def test_nothing(): pass")
    # Accepted (the header shows it) or refused (the usage error shows it): masked both ways.
    result = run(pytester, f"--integration-{service}-backend=url", "-v", *args)
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.USAGE_ERROR)
    everything = result.stdout.str() + result.stderr.str()
    assert "ter2" not in everything
    assert "***" in everything


def test_a_query_password_is_used_and_not_printed_by_a_url_run(
    pytester: pytest.Pytester, url_servers: dict[str, str]
) -> None:
    """``?password=`` (libpq's spelling) is how the server is logged into, and masked."""
    real = urlsplit(url_servers["postgres"])
    password = real.password or ""
    assert len(password) >= 8
    hidden = real._replace(netloc=f"{real.username}@{real.hostname}:{real.port}")
    url = urlunsplit(hidden._replace(query=f"password={password}"))
    pytester.makepyfile(
        """
from sqlalchemy import text

def test_fails(postgres_engine):
    with postgres_engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    raise AssertionError("failed after connecting")
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-v", "--integration-backend=url", f"--integration-postgres-url={url}"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "failed after connecting" in result.stdout.str()
    assert password not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("service", ["postgres", "mysql", "redis"])
def test_a_wrong_password_fails_at_once_and_is_not_printed(
    pytester: pytest.Pytester, url_servers: dict[str, str], service: str
) -> None:
    """A refused login is not a server still starting: no wait for the start-up timeout."""
    real = urlsplit(url_servers[service])
    wrong = "Wr0ng" + secrets.token_hex(8)
    netloc = f"{real.username or ''}:{wrong}@{real.hostname}:{real.port}"
    url = urlunsplit(real._replace(netloc=netloc))
    pytester.makepyfile(f"def test_uses({service}_server):\n    pass\n")
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p",
        "no:randomly",
        "--integration-backend=url",
        f"--integration-{service}-url={url}",
        "--integration-startup-timeout=120",
    )
    seconds = time.monotonic() - started
    output = result.stdout.str() + result.stderr.str()
    assert result.ret != pytest.ExitCode.OK
    assert "answered but refused" in output, output
    assert wrong not in output
    assert seconds < 60, f"{seconds:.1f} s: it waited for the start-up timeout"


# -- settings with no effect are said (issue 8.12) --------------------------------------


@pytest.mark.parametrize("backend", ["local", "docker", "auto"])
def test_a_url_the_backend_does_not_use_is_warned_once(
    pytester: pytest.Pytester, backend: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess(
        "-p",
        "no:randomly",
        "-n",
        "2",
        f"--integration-backend={backend}",
        "--integration-postgres-url=postgresql://app:hunter2@127.0.0.1:5432/app",
    )
    assert result.ret == pytest.ExitCode.OK
    out = result.stdout.str()
    assert out.count("IntegrationKitWarning: integration_postgres_url is set (cli) but") == 1
    assert f"integration_postgres_backend is {backend}" in out
    assert "hunter2" not in out


def test_no_warning_when_the_url_is_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(
        pytester,
        "--integration-postgres-backend=url",
        "--integration-postgres-url=postgresql://app:hunter2@127.0.0.1:5432/app",
    )
    assert result.ret == pytest.ExitCode.OK
    assert "IntegrationKitWarning" not in result.stdout.str()


def test_the_warning_under_filterwarnings_error_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = run(
        pytester,
        "--integration-backend=local",
        "--integration-redis-url=redis://127.0.0.1:6379/0",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*integration_redis_url is set (cli) but*is local*"])
    assert "Traceback" not in result.stderr.str()
