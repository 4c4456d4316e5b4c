"""A user's project for the isolation tests: models, seed data and an ini file.

The inner runs are real pytest sessions in a subprocess (native drivers, xdist),
against real servers on the backend ``backend_env`` selects.
"""

from __future__ import annotations

import textwrap

# Imported at collection, never first inside a test: pytester drops the modules first
# imported during its tests, and a dialect module imported twice warns (an error here).
import alembic.command
import pytest
import sqlalchemy.dialects.mysql.aiomysql
import sqlalchemy.dialects.mysql.pymysql
import sqlalchemy.dialects.postgresql.asyncpg
import sqlalchemy.dialects.postgresql.psycopg

from pytest_integration_kit.services import spec_for

PRELOADED = (alembic.command, sqlalchemy.dialects)

MODELS = """
from sqlalchemy import ForeignKey, Integer, MetaData, String, Table, Column

metadata = MetaData()
users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
)
orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", ForeignKey("users.id"), nullable=False),
    Column("total", Integer, nullable=False),
)
"""

#: Two seeded users; a literal ``;`` and ``%`` prove the file is split and sent verbatim.
SEED = """
-- seed data for every test database
INSERT INTO users (id, name) VALUES (1, 'ada; lovelace'), (2, '100% grace');
"""

INI = """
[pytest]
integration_schema = models:metadata
integration_seed = seed.sql
asyncio_mode = {asyncio_mode}
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
{extra}
"""


def write_project(
    pytester: pytest.Pytester, *, asyncio_mode: str = "strict", extra: str = ""
) -> None:
    """Write models.py, seed.sql and pytest.ini into the pytester directory."""
    pytester.makepyfile(models=MODELS)
    pytester.path.joinpath("seed.sql").write_text(SEED)
    pytester.makefile(
        ".ini",
        pytest=textwrap.dedent(INI).format(asyncio_mode=asyncio_mode, extra=extra),
    )


def driver_url(service: str, url: str) -> str:
    """A server URL as given (``postgresql://``, ``mysql://``) with the kit's driver."""
    return spec_for(service).endpoint_from_url(url).url


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The inner run, in a subprocess, in a fixed order unless the test asks otherwise."""
    return pytester.runpytest_subprocess(*args)
