"""Hostile values for every setting, through CLI, env, ini and TOML: a usage error or a
clean accept — never a traceback, an INTERNALERROR, or a server started (issue 8.9).

Each run sets every setting of the table to the same hostile value at once; which of
them must be refused is worked out setting by setting with :func:`resolve_settings`,
and each refused one must be named in the usage error.
"""

from __future__ import annotations

import re

import pytest

from pytest_integration_kit.errors import ConfigError
from pytest_integration_kit.services import REGISTRY
from pytest_integration_kit.settings import Setting, resolve_settings, settings_table

HOSTILE = {
    "empty": "",
    "blank": "   ",
    "tilde user": "~nosuchuser/x",
    "nul byte": "a\0b",
    "10 kB": "x" * 10_240,
    "10 kB path": "/" + "x" * 10_240,
    "unicode": "ünïcødé ☃/ß",
    "percent": "%(here)s%",
    "newline": "a\nb",
    "negative": "-1",
    "huge": "9" * 400,
    "huge float": "1e400",
    "nan": "nan",
    "inf": "inf",
    "zero": "0",
}

#: Native TOML values (pytest 9's ``[tool.pytest]``) of every kind.
HOSTILE_TOML = {
    "nan": "nan",
    "-inf": "-inf",
    "negative": "-1",
    "huge int": str(2**63 - 1),
    "float": "1e300",
    "bool": "false",
    "empty list": "[]",
    "list": '["a", "~nosuchuser/x"]',
    "table": "{ a = 1 }",
    "empty string": '""',
}

PROJECT = """
def test_plain():
    pass

def test_db(postgres_server):
    pass
"""

SETTINGS = settings_table(REGISTRY.builtin())
FLAGS = [s for s in SETTINGS if s.kind == "bool"]
VALUED = [s for s in SETTINGS if s.kind != "bool"]


def refused(setting: Setting, raw: object, source: str) -> bool:
    """Whether the resolver refuses ``raw`` for ``setting`` given through ``source``."""
    values = {setting.name: raw}
    try:
        resolve_settings(
            cli=values if source == "cli" else {},
            ini=values if source == "ini" else {},
            env={setting.env: str(raw)} if source == "env" else {},
            table=[s for s in SETTINGS if s.name in (setting.name, "backend")]
            if setting.name.endswith("_backend")
            else [setting],
        )
    except ConfigError:
        return True
    return False


def check(result: pytest.RunResult, expected_refused: list[Setting]) -> None:
    out, err = result.stdout.str(), result.stderr.str()
    for text in (out, err):
        assert "Traceback" not in text
        assert "INTERNALERROR" not in text
    # No server started (a server's line says how it came up). Not the section's title:
    # it also reports dead sessions' leftovers the run reaped, which any run on the host
    # may have left (CI, 2026-12-07: a run dir of a run killed beside the suite).
    assert not re.search(r"(ready|attached) in \d+\.\d+ s|stopped \d+ server", out), out
    if expected_refused:
        assert result.ret == pytest.ExitCode.USAGE_ERROR, out + err
        for setting in expected_refused:
            assert f"{setting.ini}: " in err, setting.name
    else:
        assert result.ret == pytest.ExitCode.OK, out + err
        result.assert_outcomes(passed=1, deselected=1)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(PROJECT)
    return pytester.runpytest(
        "-p", "no:asyncio", "-p", "no:randomly", "-m", "not requires_db", *args
    )


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_value_on_the_command_line(pytester: pytest.Pytester, raw: str) -> None:
    args = [f"{setting.cli}={raw}" for setting in VALUED]
    check(run(pytester, *args), [s for s in VALUED if refused(s, raw, "cli")])


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_value_given_to_a_flag(pytester: pytest.Pytester, raw: str) -> None:
    for setting in FLAGS:
        result = run(pytester, f"{setting.cli}={raw}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert setting.cli in result.stderr.str()
        assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize(
    "raw",
    [v for v in HOSTILE.values() if "\0" not in v],
    ids=[k for k in HOSTILE if k != "nul byte"],
)
def test_hostile_value_in_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    # An environment variable cannot hold a NUL byte: the OS refuses it before we see it.
    for setting in SETTINGS:
        monkeypatch.setenv(setting.env, raw)
    check(run(pytester), [s for s in SETTINGS if refused(s, raw, "env")])


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_value_in_the_ini_file(pytester: pytest.Pytester, raw: str) -> None:
    # A line break in an ini value is a continuation line, as a user would write one.
    written = raw.replace("\n", "\n    ")
    lines = "".join(f"{setting.ini} = {written}\n" for setting in SETTINGS)
    pytester.path.joinpath("pytest.ini").write_text(f"[pytest]\n{lines}", encoding="utf-8")
    result = run(pytester)
    # What pytest hands over: the ini text as read (continuation lines joined by \n).
    read = raw.strip()
    expected = [
        s for s in SETTINGS if read and refused(s, [read] if s.kind == "list" else read, "ini")
    ]
    if not read:  # an empty ini value is an empty string, refused but by the list ones
        expected = [s for s in SETTINGS if s.kind != "list" and refused(s, "", "ini")]
    check(result, expected)


@pytest.mark.skipif(
    pytest.version_tuple < (9, 0), reason="[tool.pytest] (native TOML) is read from pytest 9 on"
)
@pytest.mark.parametrize("raw", HOSTILE_TOML.values(), ids=HOSTILE_TOML.keys())
def test_hostile_native_toml_value(pytester: pytest.Pytester, raw: str) -> None:
    lines = "".join(f"{setting.ini} = {raw}\n" for setting in SETTINGS)
    pytester.path.joinpath("pyproject.toml").write_text(f"[tool.pytest]\n{lines}")
    result = run(pytester)
    out, err = result.stdout.str(), result.stderr.str()
    assert "Traceback" not in out + err
    assert "INTERNALERROR" not in out + err
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.USAGE_ERROR)
    assert "integration services" not in out
