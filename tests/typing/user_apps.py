"""User-style code for the apps layer that must type-check under mypy --strict (not collected)."""

from __future__ import annotations

import redis
from sqlalchemy.orm import Session

from pytest_integration_kit import (
    Endpoint,
    mysql_session_factory,
    postgres_async_session_factory,
    redis_async_client_factory,
    redis_client_factory,
)


class QueueRedis(redis.Redis):
    """An application's client class."""


class AppSession(Session):
    """An application's session class."""


app_session = mysql_session_factory(session_class=AppSession)
app_async_session = postgres_async_session_factory(session_class="sqlmodel:Session")
queue = redis_client_factory(client_class=QueueRedis)
queue_async = redis_async_client_factory(client_class="app.queue:AsyncQueueRedis")


def test_urls(postgres_database: Endpoint, redis_database: Endpoint) -> None:
    async_url: str = postgres_database.url_for("asyncpg")
    plain: str = postgres_database.url_for("postgresql")
    assert async_url != plain
    assert redis_database.database.isdigit()
