"""Local binaries installed by Homebrew are found, in a fake Homebrew prefix.

Keg-only formulae (``postgresql@17``, ``mariadb@11.4``) are never linked onto PATH, so
discovery looks in ``<prefix>/opt/<formula>/bin`` itself, newest version first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_integration_kit.services.spec import find_executable, homebrew_dirs


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def brew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Homebrew prefix, and a PATH on which nothing is found."""
    prefix = tmp_path / "homebrew"
    (prefix / "opt").mkdir(parents=True)
    monkeypatch.setenv("HOMEBREW_PREFIX", str(prefix))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-on-path"))
    return prefix


def test_keg_only_postgres_newest_version_first(brew: Path) -> None:
    for version in ("9.6", "15", "17", "16"):
        executable(brew / f"opt/postgresql@{version}/bin/postgres")
    executable(brew / "opt/postgresql/bin/postgres")
    found, _ = find_executable(["postgres"], bin_dir=None)
    assert found == brew / "opt/postgresql@17/bin/postgres"
    dirs = homebrew_dirs(["postgres"])
    assert [d.parent.name for d in dirs[:5]] == [
        "postgresql@17",
        "postgresql@16",
        "postgresql@15",
        "postgresql@9.6",
        "postgresql",
    ]


def test_mariadb_and_valkey_kegs(brew: Path) -> None:
    executable(brew / "opt/mariadb@11.4/bin/mariadbd")
    executable(brew / "opt/valkey/bin/valkey-server")
    assert find_executable(["mariadbd", "mysqld"], bin_dir=None)[0] == (
        brew / "opt/mariadb@11.4/bin/mariadbd"
    )
    assert find_executable(["redis-server", "valkey-server"], bin_dir=None)[0] == (
        brew / "opt/valkey/bin/valkey-server"
    )


def test_the_prefix_bin_when_not_on_path(brew: Path) -> None:
    executable(brew / "bin/redis-server")
    assert find_executable(["redis-server"], bin_dir=None)[0] == brew / "bin/redis-server"


def test_the_places_looked_in_name_the_prefix(brew: Path) -> None:
    found, searched = find_executable(["postgres"], bin_dir=None, extra_dirs=[])
    assert found is None
    assert str(brew / "bin") in searched


def test_paths_and_extra_dirs_come_first(brew: Path, tmp_path: Path) -> None:
    executable(brew / "opt/redis/bin/redis-server")
    mine = executable(tmp_path / "mine/redis-server")
    assert find_executable(["redis-server"], bin_dir=None, extra_dirs=[mine.parent])[0] == mine


def test_a_prefix_without_opt_is_not_homebrew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEBREW_PREFIX", str(tmp_path))
    executable(tmp_path / "bin/postgres")
    assert tmp_path / "bin" not in homebrew_dirs(["postgres"])
