"""User-style code that must type-check under mypy --strict (not collected by pytest)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from pytest_integration_kit import (
    Endpoint,
    mysql_server_factory,
    postgres_server_factory,
    redis_server_factory,
)

pg_local: Callable[..., Endpoint] = postgres_server_factory(backend="local", startup_timeout=30)
mysql_pinned = mysql_server_factory(image="mysql:8.4")
cache = redis_server_factory(backend="url", url="redis://:pw@127.0.0.1:6379/1")


def count_tables(server: Endpoint) -> int:
    engine = sa.create_engine(server.url)
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT count(*) FROM information_schema.tables")).scalar()
    engine.dispose()
    port: int = server.port
    assert port > 0
    return int(found or 0)


def describe(server: Endpoint) -> str:
    return f"{server.backend}: {server.safe_url} ({server.version})"
