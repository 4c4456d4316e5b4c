"""User-style isolation code that must type-check under mypy --strict (not collected)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from pytest_integration_kit import (
    postgres_async_session_factory,
    postgres_engine_factory,
    postgres_server_factory,
    postgres_session_factory,
    redis_client_factory,
)
from pytest_integration_kit.isolation import (
    IsolationWorkspace,
    SchemaSource,
    bind_factories,
    rollback_session,
)

reports_server = postgres_server_factory(backend="local")
reports_engine = postgres_engine_factory(server="reports_server")
reports_session = postgres_session_factory(server="reports_server", strategy="truncate")
reports_async = postgres_async_session_factory(server="reports_server", loop_scope="module")
cache_client = redis_client_factory(decode_responses=True)


@pytest.fixture
def bound(postgres_session: Session) -> Iterator[Session]:
    with bind_factories(postgres_session):
        yield postgres_session


def test_sync(postgres_session: Session, postgres_engine: Engine) -> None:
    assert postgres_session.execute(select(1)).scalar() == 1
    with postgres_engine.connect() as conn:
        conn.execute(text("SELECT 1"))


async def test_async(postgres_async_session: AsyncSession) -> None:
    assert (await postgres_async_session.execute(select(1))).scalar() == 1


def test_redis(redis_client: redis.Redis) -> None:
    redis_client.set("k", "v")


def script(workspace_source: SchemaSource) -> int:
    with IsolationWorkspace(workspace_source) as workspace:
        del workspace
    with rollback_session(postgres_engine_for_script()) as session:
        return int(session.execute(text("SELECT 1")).scalar_one())


def postgres_engine_for_script() -> Engine:
    from sqlalchemy import create_engine  # noqa: PLC0415 - a script's own import

    return create_engine("postgresql+psycopg://u:p@127.0.0.1/db")
