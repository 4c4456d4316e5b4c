"""A user's service for the load tests: a Starlette app reading PostgreSQL (its URL set
by integration_env before import) and counting hits in Redis, with its tests' ini.

The inner runs are real pytest sessions in a subprocess, against real servers on the
backend ``backend_env`` selects.
"""

from __future__ import annotations

import textwrap

import pytest

MODELS = """
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()
items = Table(
    "items", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
)
"""

SEED = "INSERT INTO items (id, name) VALUES (1, 'apple'), (2, 'pear'), (3, 'plum');\n"

MAIN = """
import os

import redis
from sqlalchemy import create_engine, text
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

engine = create_engine(os.environ["DATABASE_URL"], pool_size=8)
hits = redis.Redis.from_url(os.environ["REDIS_URL"])


def items(request):
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, name FROM items ORDER BY id")).all()
    hits.incr("hits")
    return JSONResponse([{"id": r.id, "name": r.name} for r in rows])


def broken(request):
    raise RuntimeError("the handler failed")


app = Starlette(routes=[Route("/items", items), Route("/broken", broken)])
"""

INI = """
[pytest]
integration_schema = app.models:metadata
integration_seed = seed.sql
integration_app = app.main:app
integration_openapi = false
integration_env =
    DATABASE_URL={{postgres.url}}
    REDIS_URL={{redis.url}}
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
{extra}
"""


def write_project(pytester: pytest.Pytester, *, extra: str = "") -> None:
    """Write the ``app`` package, seed.sql and pytest.ini."""
    package = pytester.mkpydir("app")
    (package / "models.py").write_text(textwrap.dedent(MODELS))
    (package / "main.py").write_text(textwrap.dedent(MAIN))
    pytester.path.joinpath("seed.sql").write_text(SEED)
    pytester.makefile(".ini", pytest=textwrap.dedent(INI).format(extra=extra))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The inner run, in a subprocess, in file order."""
    return pytester.runpytest_subprocess("-p", "no:randomly", *args)
