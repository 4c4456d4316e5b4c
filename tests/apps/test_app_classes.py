"""The app's own classes: sqlmodel.Session for the session fixtures, a redis.Redis subclass."""

from __future__ import annotations

import textwrap

import pytest

MODELS = """
from sqlmodel import Field, SQLModel


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
"""

QUEUE = """
import redis
import redis.asyncio


class QueueRedis(redis.Redis):
    def enqueue(self, job):
        return self.rpush("queue", job)


class AsyncQueueRedis(redis.asyncio.Redis):
    async def enqueue(self, job):
        return await self.rpush("queue", job)
"""

DB = """
import os

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

engine = create_engine(os.environ["DATABASE_URL"])
SessionLocal = sessionmaker(bind=engine, class_=Session)
"""

INI = """
[pytest]
integration_schema = app.models:SQLModel
integration_env = DATABASE_URL={postgres.url}
integration_sessionmaker = app.db:SessionLocal
integration_session_class = sqlmodel:Session
integration_redis_client_class = app.queue:QueueRedis
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
"""

CONFTEST = """
from sqlmodel.ext.asyncio.session import AsyncSession

from pytest_integration_kit import (
    mysql_session_factory,
    postgres_async_session_factory,
    redis_async_client_factory,
)

# The factories take the class (or module:attr) directly.
sqlmodel_async_session = postgres_async_session_factory(session_class=AsyncSession)
queue_async = redis_async_client_factory(client_class="app.queue:AsyncQueueRedis")
mysql_sqlmodel_session = mysql_session_factory(session_class="sqlmodel:Session")
"""

TESTS = """
import pytest
import sqlmodel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from app.db import SessionLocal
from app.models import Hero
from app.queue import AsyncQueueRedis, QueueRedis


def add_hero(name):  # code under test: the app's own session, committed
    with SessionLocal() as session:
        session.add(Hero(name=name))
        session.commit()


@pytest.mark.parametrize("n", range(4))
def test_sqlmodel_session(n, postgres_session):
    assert isinstance(postgres_session, sqlmodel.Session)
    assert postgres_session.exec(select(Hero)).all() == []  # nothing leaked
    postgres_session.add(Hero(name=f"test {n}"))
    postgres_session.commit()
    add_hero(f"app {n}")
    names = sorted(h.name for h in postgres_session.exec(select(Hero)))
    assert names == [f"app {n}", f"test {n}"]


def test_mysql_factory_with_a_class(mysql_sqlmodel_session):
    assert isinstance(mysql_sqlmodel_session, sqlmodel.Session)
    mysql_sqlmodel_session.add(Hero(name="on mysql"))
    mysql_sqlmodel_session.commit()
    assert len(mysql_sqlmodel_session.exec(select(Hero)).all()) == 1


@pytest.mark.asyncio
async def test_async_setting_becomes_the_sync_session_class(postgres_async_session):
    assert type(postgres_async_session) is AsyncSession
    assert postgres_async_session.sync_session_class is sqlmodel.Session


@pytest.mark.asyncio
@pytest.mark.parametrize("n", range(2))
async def test_async_factory_with_sqlmodels_async_session(n, sqlmodel_async_session):
    assert (await sqlmodel_async_session.exec(select(Hero))).all() == []
    sqlmodel_async_session.add(Hero(name="async"))
    await sqlmodel_async_session.commit()
    assert len((await sqlmodel_async_session.exec(select(Hero))).all()) == 1


@pytest.mark.parametrize("n", range(3))
def test_redis_client_class(n, redis_client):
    assert isinstance(redis_client, QueueRedis)
    assert redis_client.llen("queue") == 0
    redis_client.enqueue(f"job {n}")
    assert redis_client.llen("queue") == 1


@pytest.mark.asyncio
async def test_async_redis_client_class(queue_async, redis_async_client):
    assert isinstance(queue_async, AsyncQueueRedis)
    assert type(redis_async_client).__name__ == "Redis"  # the setting's class is sync
    await queue_async.enqueue("job")
    assert await redis_async_client.llen("queue") == 1
"""


def write(pytester: pytest.Pytester, ini: str = INI) -> None:
    package = pytester.mkpydir("app")
    (package / "models.py").write_text(textwrap.dedent(MODELS))
    (package / "queue.py").write_text(textwrap.dedent(QUEUE))
    (package / "db.py").write_text(textwrap.dedent(DB))
    pytester.makeini(ini)
    pytester.makeconftest(CONFTEST)


def test_the_apps_session_and_client_classes(pytester: pytest.Pytester, backend_env: str) -> None:
    write(pytester)
    pytester.makepyfile(test_app=TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "-p", "randomly")
    result.assert_outcomes(passed=12)


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("integration_session_class = app.queue:QueueRedis", "is not a subclass of"),
        ("integration_redis_client_class = app.models:Hero", "is not a subclass of redis"),
        ("integration_session_class = app.nothing:Session", "cannot import 'app.nothing'"),
    ],
)
def test_a_bad_class_is_a_usage_error(
    pytester: pytest.Pytester, backend_env: str, line: str, complaint: str
) -> None:
    write(pytester, ini=f"[pytest]\n{line}\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_app="def test_plain(): pass")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert line.split(" =", maxsplit=1)[0] in err
    assert complaint in err, err
    assert "Traceback" not in err + result.stdout.str()
