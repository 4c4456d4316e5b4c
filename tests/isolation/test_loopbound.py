"""asyncpg URLs without a TLS offer a server declines; idle connections closed without waiting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import isolation_project  # noqa: F401 - preloads the SQL dialects, see there
import pytest
from sqlalchemy import make_url

from pytest_integration_kit.isolation import loopbound


class _Server:
    """A stand-in admin engine: answers ``SHOW ssl`` and counts how often it is asked;
    its (psycopg) connection uses TLS or not."""

    def __init__(self, ssl: str, *, ssl_in_use: bool = False) -> None:
        self.ssl = ssl
        self.asked = 0
        self.connection = SimpleNamespace(
            driver_connection=SimpleNamespace(pgconn=SimpleNamespace(ssl_in_use=ssl_in_use))
        )

    @contextmanager
    def connect(self) -> Iterator[_Server]:
        yield self

    def exec_driver_sql(self, statement: str) -> _Server:
        assert statement == "SHOW ssl"
        self.asked += 1
        return self

    def scalar(self) -> str:
        return self.ssl


@pytest.fixture(autouse=True)
def _no_tls_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TLS asked by the environment, and no answer remembered from another test."""
    monkeypatch.delenv("PGSSLMODE", raising=False)
    monkeypatch.delenv("PGSSLNEGOTIATION", raising=False)
    monkeypatch.setattr(loopbound, "_SSL_OFF", {})


def test_plain_when_the_server_has_no_tls_asked_once_per_server() -> None:
    server = _Server("off")
    url = make_url("postgresql+asyncpg://u:p@127.0.0.1:5432/a")
    assert loopbound.plain_url(url, server).query == {"ssl": "disable"}  # type: ignore[arg-type]
    again = loopbound.plain_url(url.set(database="b"), server)  # type: ignore[arg-type]
    assert again.query == {"ssl": "disable"}
    assert server.asked == 1


@pytest.mark.parametrize("server", [_Server("on"), _Server("off", ssl_in_use=True)])
def test_tls_left_to_asyncpg_when_the_server_or_a_proxy_takes_it(server: _Server) -> None:
    url = make_url("postgresql+asyncpg://u:p@127.0.0.1:5432/a")
    assert loopbound.plain_url(url, server) == url  # type: ignore[arg-type]


@pytest.mark.parametrize("query", ["sslmode=require", "ssl=prefer", "direct_tls=true"])
def test_a_url_asking_for_tls_is_kept(query: str) -> None:
    server = _Server("off")
    url = make_url(f"postgresql+asyncpg://u:p@127.0.0.1:5432/a?{query}")
    assert loopbound.plain_url(url, server) == url  # type: ignore[arg-type]
    assert server.asked == 0


def test_libpq_environment_asking_for_tls_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGSSLMODE", "require")
    url = make_url("postgresql+asyncpg://u:p@127.0.0.1:5432/a")
    assert loopbound.plain_url(url, _Server("off")) == url  # type: ignore[arg-type]


class _Asyncpg:
    def __init__(self, *, in_transaction: bool) -> None:
        self.in_transaction = in_transaction
        self.terminated = False

    def is_closed(self) -> bool:
        return self.terminated

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    def terminate(self) -> None:
        self.terminated = True


class _Adapter:
    def __init__(self, raw: _Asyncpg) -> None:
        self.driver_connection = raw


@pytest.mark.parametrize(("in_transaction", "terminated"), [(False, True), (True, False)])
def test_only_an_idle_connection_is_closed_without_waiting(
    in_transaction: bool, terminated: bool
) -> None:
    raw = _Asyncpg(in_transaction=in_transaction)
    adapter: Any = _Adapter(raw)
    loopbound.close_without_waiting(adapter, None)
    assert raw.terminated is terminated
