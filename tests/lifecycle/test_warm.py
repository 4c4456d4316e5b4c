"""Warm local start: the second server of a kind copies the first's initialised data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from user_project import make_project

from pytest_integration_kit.backends.base import ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.lifecycle.warm import WarmDataDirs
from pytest_integration_kit.services import spec_for


@pytest.mark.parametrize("service", ["postgres", "mysql"])
def test_second_server_starts_from_the_cached_data_dir(service: str, cache_dir: Path) -> None:
    spec = spec_for(service)
    options = ServerOptions(
        spec=spec, image="", startup_timeout=60, session_id="warmtest", warm_dir=cache_dir
    )
    backend = LocalBackend()
    first = backend.start(options)
    try:
        key = WarmDataDirs(cache_dir).key(service, spec.find_binaries(None))
        cached = WarmDataDirs(cache_dir).credentials(key)
        second = backend.start(options)
        if service == "postgres":
            # The entry remembers the credentials initdb baked into it.
            assert cached is not None
            assert cached["password"] == first.endpoint.password
        else:
            # MariaDB's password is set at each start: the entry keeps none.
            assert not cached
        try:
            if service == "postgres":  # same initialised directory, same credentials
                assert second.endpoint.password == first.endpoint.password
            else:
                assert second.endpoint.password != first.endpoint.password
            assert second.endpoint.port != first.endpoint.port
            assert spec.probe(second.endpoint, timeout=5)
            assert spec.probe(first.endpoint, timeout=5)
        finally:
            second.stop()
    finally:
        first.stop()


def test_without_a_cache_every_server_has_its_own_password() -> None:
    spec = spec_for("postgres")
    options = ServerOptions(spec=spec, image="", startup_timeout=60, session_id="warmtest")
    servers = [LocalBackend().start(options) for _ in range(2)]
    try:
        assert servers[0].endpoint.password != servers[1].endpoint.password
    finally:
        for server in servers:
            server.stop()


def test_runs_share_the_warm_cache(
    pytester: pytest.Pytester, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    project = make_project(
        pytester.path / "app",
        "def test_pg(postgres_server, report):\n"
        "    report(service='postgres', port=postgres_server.port,"
        " password=postgres_server.password)\n",
    )
    outputs = []
    for _ in range(2):
        result = project.run("-rA")
        assert result.returncode == 0, result.stdout
        outputs.append(result.stdout)
    # The summary says which start copied the cached data dir.
    assert "(warm data dir)" not in outputs[0]
    assert "(warm data dir)" in outputs[1]
    passwords = {r["password"] for r in project.reports()}
    assert len(passwords) == 1
    assert list((cache_dir / "warm").glob("postgres-*/data/PG_VERSION"))


MARIADB_PASSWORDS = """
import os, pymysql, pytest

def test_mysql(mysql_server, report):
    report(service="mysql", password=mysql_server.password)
    old = os.environ.get("PIK_OLD_PASSWORD")
    if old:
        assert old != mysql_server.password
        with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
            pymysql.connect(host=mysql_server.host, port=mysql_server.port,
                            user=mysql_server.user, password=old)
    conn = pymysql.connect(host=mysql_server.host, port=mysql_server.port,
                           user=mysql_server.user, password=mysql_server.password)
    conn.close()
"""


def test_local_mariadb_has_a_new_password_every_session(
    pytester: pytest.Pytester, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm data dir (the second run copies the first's) carries no password."""
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    project = make_project(pytester.path / "app", MARIADB_PASSWORDS)
    first = project.run()
    assert first.returncode == 0, first.stdout
    (old,) = {r["password"] for r in project.reports()}
    assert list((cache_dir / "warm").glob("mysql-*/data"))
    monkeypatch.setenv("PIK_OLD_PASSWORD", old)
    second = project.run()
    assert second.returncode == 0, second.stdout
    assert len({r["password"] for r in project.reports()}) == 2
