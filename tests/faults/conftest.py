"""Real servers for the fault proxy's tests, started with the library's own local backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_integration_kit.backends.base import ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.services import spec_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pytest_integration_kit.services.endpoint import Endpoint


def _local(service: str) -> Iterator[Endpoint]:
    server = LocalBackend().start(
        ServerOptions(
            spec=spec_for(service), image="", startup_timeout=60, session_id="tests-faults"
        )
    )
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def local_redis() -> Iterator[Endpoint]:
    """A Redis server of the local backend, shared by the module's proxies."""
    yield from _local("redis")


@pytest.fixture(scope="session")
def local_postgres() -> Iterator[Endpoint]:
    """A PostgreSQL server of the local backend, shared by the module's proxies."""
    yield from _local("postgres")


@pytest.fixture(scope="session")
def local_mysql() -> Iterator[Endpoint]:
    """A MySQL/MariaDB server of the local backend, shared by the module's proxies."""
    yield from _local("mysql")
