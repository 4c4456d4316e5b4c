"""A user's application for the apps tests: settings read at import, its own engine and
sessionmaker at module level, written into a pytester directory.

The inner runs are real pytest sessions in a subprocess (native drivers, xdist), against
real servers on the backend ``backend_env`` selects.
"""

from __future__ import annotations

import textwrap

import pytest

from pytest_integration_kit.services import spec_for

SETTINGS = """
import os

# Read once, at import: the way settings objects and module-level engines do it.
DATABASE_URL = os.environ["DATABASE_URL"]
ASYNC_DATABASE_URL = os.environ["ASYNC_DATABASE_URL"]
REDIS_URL = os.environ["REDIS_URL"]
"""

MODELS = """
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table

metadata = MetaData()
users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
)
notes = Table(
    "notes", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("body", String(200), nullable=False),
)
"""

DB = """
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from app.settings import DATABASE_URL

engine = create_engine(DATABASE_URL)
SessionLocal = sessionmaker(bind=engine)
"""

SEED = """
INSERT INTO users (id, name) VALUES (1, 'ada'), (2, 'grace');
"""

INI = """
[pytest]
integration_schema = app.models:metadata
integration_seed = seed.sql
integration_env =
    DATABASE_URL={{postgres.url}}
    ASYNC_DATABASE_URL={{postgres.url:asyncpg}}
    REDIS_URL={{redis.url}}
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
{extra}
"""

#: The conftest fails the run if the variables are not there when it is imported.
CONFTEST = """
import os

from app import settings  # reads DATABASE_URL, ... at import

assert settings.DATABASE_URL.startswith("postgresql+psycopg://"), settings.DATABASE_URL
assert settings.ASYNC_DATABASE_URL.startswith("postgresql+asyncpg://")
assert settings.REDIS_URL.startswith("redis://")
"""


def write_app(pytester: pytest.Pytester, *, extra: str = "", ini: str = INI) -> None:
    """Write the ``app`` package, seed.sql, conftest.py and pytest.ini."""
    package = pytester.mkpydir("app")
    (package / "settings.py").write_text(textwrap.dedent(SETTINGS))
    (package / "models.py").write_text(textwrap.dedent(MODELS))
    (package / "db.py").write_text(textwrap.dedent(DB))
    pytester.path.joinpath("seed.sql").write_text(SEED)
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".ini", pytest=textwrap.dedent(ini).format(extra=extra))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The inner run, in a subprocess, in a fixed order unless the test asks otherwise."""
    return pytester.runpytest_subprocess(*args)


PLAIN_INI = """
[pytest]
integration_schema = app.models:metadata
integration_seed = seed.sql
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
"""


def write_plain_project(pytester: pytest.Pytester) -> None:
    """The app's models and seed data, without integration_env (nor a conftest)."""
    package = pytester.mkpydir("app")
    (package / "models.py").write_text(textwrap.dedent(MODELS))
    pytester.path.joinpath("seed.sql").write_text(SEED)
    pytester.makefile(".ini", pytest=textwrap.dedent(PLAIN_INI))


def driver_url(service: str, url: str) -> str:
    """A server URL as given (``postgresql://``, ``mysql://``) with the kit's driver."""
    return spec_for(service).endpoint_from_url(url).url


ASYNC_DB = """
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.settings import ASYNC_DATABASE_URL

engine = create_async_engine(ASYNC_DATABASE_URL)
AsyncSessionLocal = async_sessionmaker(engine, expire_on_commit=False)
"""

#: Code under test: opens the app's own sessions and commits.
SERVICE = """
from sqlalchemy import func, select

from app.adb import AsyncSessionLocal
from app.db import SessionLocal
from app.models import notes


def add_note(user_id, body):
    with SessionLocal() as session:
        session.execute(notes.insert().values(user_id=user_id, body=body))
        session.commit()


def count_notes():
    with SessionLocal() as session:
        return session.execute(select(func.count()).select_from(notes)).scalar()


async def add_note_async(user_id, body):
    async with AsyncSessionLocal() as session:
        await session.execute(notes.insert().values(user_id=user_id, body=body))
        await session.commit()


async def count_notes_async():
    async with AsyncSessionLocal() as session:
        return (await session.execute(select(func.count()).select_from(notes))).scalar()
"""


def write_service(pytester: pytest.Pytester) -> None:
    """The app's async engine and sessionmaker, and code under test that commits."""
    package = pytester.path / "app"
    (package / "adb.py").write_text(textwrap.dedent(ASYNC_DB))
    (package / "service.py").write_text(textwrap.dedent(SERVICE))
