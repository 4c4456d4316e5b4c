"""The tiny suites each tool runs, written the way that tool's documentation shows.

Every suite is a dict of files for a fresh project directory. The test body is the same
for every tool — insert one row, commit, count — so what differs is only what the
tool puts around it. Server settings are each tool's defaults; ours are ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODELS = """
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()
items = Table(
    "items", metadata, Column("id", Integer, primary_key=True), Column("name", String(50))
)
DDL = "CREATE TABLE items (id serial PRIMARY KEY, name varchar(50))"
"""

# Loaded with -p timing: when the first test body ran, when each test started and ended.
TIMING = """
import json, os, time

_first, _starts, _ends = [], [], []


def pytest_runtest_logstart(nodeid, location):
    _starts.append(time.time())


def pytest_runtest_logfinish(nodeid, location):
    _ends.append(time.time())


def pytest_runtest_call(item):
    if not _first:
        _first.append(time.time())
        path = os.environ.get("BENCH_FIRST")
        if path and not os.path.exists(path):
            with open(path, "w") as out:
                out.write(repr(_first[0]))


def pytest_sessionfinish(session):
    out = os.environ.get("BENCH_OUT")
    if out and not hasattr(session.config, "workerinput"):
        with open(out, "w") as f:
            json.dump({"starts": _starts, "ends": _ends}, f)
"""

PARAM = "@pytest.mark.parametrize('i', range({n}))\n"


@dataclass
class Suite:
    """One tool's project for one case: files, the plugin to load, who runs it."""

    files: dict[str, str]
    plugins: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: Run as this unprivileged user (tools that start PostgreSQL themselves).
    user: str | None = None


def backend_env(images: dict[str, str] | None) -> dict[str, str]:
    """Ours' settings for a case's backend: docker on ``images``, else local.

    Named, never ``auto``: while the peers' official image names are tagged onto the
    offline images (``mysql:8.4`` is also ours' default MySQL image), ``auto`` would
    pick docker for a "local" case.
    """
    if not images:
        return {"INTEGRATION_BACKEND": "local"}
    env = {f"INTEGRATION_{name.upper()}_IMAGE": image for name, image in images.items()}
    return {**env, "INTEGRATION_BACKEND": "docker"}


def _sql_body(conn: str, *, commit: str, count: str, sleep_ms: int = 0) -> str:
    # A DB-bound test (the -n 2 case) waits on the server, not on Python.
    wait = f"    {conn}.execute(text('SELECT pg_sleep({sleep_ms / 1000})'))\n" if sleep_ms else ""
    return (
        f"    {conn}.execute(items.insert().values(name='x'))\n"
        f"{wait}"
        f"    {commit}\n"
        f"    assert {count} == 1\n"
    )


_SQL_IMPORTS = (
    "import pytest\nfrom sqlalchemy import func, select, text\nfrom models import items\n\n"
)


def ours_pg(
    n: int, image: str | None = None, *, isolation: str | None = None, sleep_ms: int = 0
) -> Suite:
    """``postgres_session``; ``isolation`` picks the strategy for the run."""
    return _ours_sql("postgres", n, image, isolation=isolation, sleep_ms=sleep_ms)


def ours_mysql(n: int, image: str | None = None) -> Suite:
    """``mysql_session``, the same body."""
    return _ours_sql("mysql", n, image)


def _ours_sql(
    service: str, n: int, image: str | None, *, isolation: str | None = None, sleep_ms: int = 0
) -> Suite:
    fixture = f"{service}_session"
    test = (
        _SQL_IMPORTS
        + PARAM.format(n=n)
        + f"def test_row({fixture}, i):\n"
        + _sql_body(
            fixture,
            commit=f"{fixture}.commit()",
            count=f"{fixture}.scalar(select(func.count()).select_from(items))",
            sleep_ms=sleep_ms,
        )
    )
    env = backend_env({service: image} if image else None)
    ini = _INI_OURS + (f"integration_isolation = {isolation}\n" if isolation else "")
    return Suite(
        {"models.py": MODELS, f"test_{service}.py": test, "pytest.ini": ini},
        ("pytest_integration_kit.plugin",),
        env=env,
    )


def ours_pg_connection(n: int) -> Suite:
    """``postgres_connection``: a raw psycopg connection, as pytest-postgresql's fixture is."""
    test = (
        "import pytest\n\n"
        + PARAM.format(n=n)
        + "def test_row(postgres_connection, i):\n"
        + "    postgres_connection.execute(\"INSERT INTO items (name) VALUES ('x')\")\n"
        + "    postgres_connection.commit()\n"
        + "    row = postgres_connection.execute('SELECT count(*) FROM items').fetchone()\n"
        + "    assert row[0] == 1\n"
    )
    return Suite(
        {"models.py": MODELS, "test_pg.py": test, "pytest.ini": _INI_OURS},
        ("pytest_integration_kit.plugin",),
        env=backend_env(None),
    )


_ASYNC_CONFTEST = """
from pytest_integration_kit import postgres_async_session_factory

postgres_async_session = postgres_async_session_factory(driver={driver!r})
"""


def ours_pg_async(n: int, *, driver: str | None = None) -> Suite:
    """``postgres_async_session`` under pytest-asyncio's default: a loop per test."""
    test = (
        "import pytest\nfrom sqlalchemy import func, select\nfrom models import items\n\n"
        + "@pytest.mark.asyncio\n"
        + PARAM.format(n=n)
        + "async def test_row(postgres_async_session, i):\n"
        + "    s = postgres_async_session\n"
        + "    await s.execute(items.insert().values(name='x'))\n"
        + "    await s.commit()\n"
        + "    assert await s.scalar(select(func.count()).select_from(items)) == 1\n"
    )
    files = {"models.py": MODELS, "test_pg.py": test, "pytest.ini": _INI_OURS}
    if driver:
        files["conftest.py"] = _ASYNC_CONFTEST.format(driver=driver)
    return Suite(
        files, ("pytest_integration_kit.plugin", "pytest_asyncio.plugin"), env=backend_env(None)
    )


_INI_OURS = "[pytest]\nintegration_schema = models:metadata\n"

_RECIPE = """
import os

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from models import metadata


@pytest.fixture(scope="session")
def engine():
    url = os.environ.get("BENCH_PG_URL")
    container = None
    if url is None:
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(os.environ["BENCH_PG_IMAGE"], driver="psycopg")
        container.start()
        url = container.get_connection_url()
    engine = create_engine(url)
    metadata.create_all(engine)
    yield engine
    metadata.drop_all(engine)
    engine.dispose()
    if container is not None:
        container.stop()


@pytest.fixture
def session(engine):
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        yield session
        session.close()
        transaction.rollback()
"""


def recipe_pg(
    n: int, *, url: str | None = None, image: str | None = None, sleep_ms: int = 0
) -> Suite:
    """testcontainers (or a given server) + SQLAlchemy's join-an-external-transaction.

    Given a ``url`` of another kind of server (MySQL), the same recipe runs on it.
    """
    test = (
        _SQL_IMPORTS
        + PARAM.format(n=n)
        + "def test_row(session, i):\n"
        + _sql_body(
            "session",
            commit="session.commit()",
            count="session.scalar(select(func.count()).select_from(items))",
            sleep_ms=sleep_ms,
        )
    )
    env = {"TESTCONTAINERS_RYUK_DISABLED": "true"}
    if url:
        env["BENCH_PG_URL"] = url
    if image:
        env["BENCH_PG_IMAGE"] = image
    return Suite({"models.py": MODELS, "conftest.py": _RECIPE, "test_pg.py": test}, (), env=env)


_RAW = """
import os

import psycopg
import pytest

from models import DDL


@pytest.fixture(scope="session")
def raw():
    url = os.environ["BENCH_PG_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute(DDL)
        conn.autocommit = False
        yield conn


@pytest.fixture
def db(raw):
    yield raw
    raw.rollback()
"""


def floor_pg(n: int, url: str) -> Suite:
    """The floor: the same body on one raw connection, BEGIN … ROLLBACK around each test."""
    test = (
        "import pytest\n\n"
        + PARAM.format(n=n)
        + "def test_row(db, i):\n"
        + "    db.execute(\"INSERT INTO items (name) VALUES ('x')\")\n"
        + "    assert db.execute('SELECT count(*) FROM items').fetchone()[0] == 1\n"
    )
    return Suite(
        {"models.py": MODELS, "conftest.py": _RAW, "test_pg.py": test},
        (),
        env={"BENCH_PG_URL": url},
    )


_RAW_MYSQL = """
import json
import os

import pymysql
import pytest


@pytest.fixture(scope="session")
def raw():
    conn = pymysql.connect(**json.loads(os.environ["BENCH_MYSQL"]))
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS items")
        cursor.execute("CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, name varchar(50))")
    conn.commit()
    yield conn
    conn.close()


@pytest.fixture
def db(raw):
    cursor = raw.cursor()
    cursor.execute("BEGIN")
    yield cursor
    raw.rollback()
"""


def floor_mysql(n: int, connect: str) -> Suite:
    """The MySQL floor: one raw PyMySQL connection, BEGIN … ROLLBACK around each test.

    ``connect``: JSON of ``pymysql.connect`` keyword arguments.
    """
    test = (
        "import pytest\n\n"
        + PARAM.format(n=n)
        + "def test_row(db, i):\n"
        + "    db.execute(\"INSERT INTO items (name) VALUES ('x')\")\n"
        + "    db.execute('SELECT count(*) FROM items')\n"
        + "    assert db.fetchone()[0] == 1\n"
    )
    return Suite(
        {"conftest.py": _RAW_MYSQL, "test_mysql.py": test}, (), env={"BENCH_MYSQL": connect}
    )


def bare(n: int, *, ours: bool = False) -> Suite:
    """A test that does nothing; ``ours``: with the kit loaded and no server used."""
    test = "import pytest\n\n" + PARAM.format(n=n) + "def test_row(i):\n    pass\n"
    return Suite({"test_bare.py": test}, ("pytest_integration_kit.plugin",) if ours else ())


def bare_with_imports() -> Suite:
    """Bare pytest whose test imports what the SQL suites import (SQLAlchemy's ORM, psycopg).

    psycopg itself too: SQLAlchemy's dialect module does not import its driver (its
    first engine does), and every suite that connects pays for it.
    """
    test = (
        "import sqlalchemy.orm\nimport sqlalchemy.dialects.postgresql.psycopg\n"
        "import psycopg\n\n"
        "def test_row():\n    pass\n"
    )
    return Suite({"test_imports.py": test}, ())


_PGPROC = """
import psycopg
from pytest_postgresql import factories

from models import DDL


def load(host, port, user, dbname, password, **_):
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password) as c:
        c.execute(DDL)


postgresql_proc = factories.postgresql_proc(load=[load])
postgresql = factories.postgresql("postgresql_proc")
"""

_PGNOPROC = """
import os

import psycopg
from pytest_postgresql import factories

from models import DDL


def load(host, port, user, dbname, password, **_):
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password) as c:
        c.execute(DDL)


postgresql_noproc = factories.postgresql_noproc(
    host="127.0.0.1", port=int(os.environ["BENCH_PG_PORT"]), user="postgres",
    password=os.environ["BENCH_PG_PASSWORD"], load=[load],
)
postgresql = factories.postgresql("postgresql_noproc")
"""


def pytest_postgresql(n: int, pg_ctl: str, *, noproc: dict[str, str] | None = None) -> Suite:
    """pytest-postgresql: a database per test from a template (proc, or noproc)."""
    test = (
        "import pytest\n\n"
        + PARAM.format(n=n)
        + "def test_row(postgresql, i):\n"
        + "    postgresql.execute(\"INSERT INTO items (name) VALUES ('x')\")\n"
        + "    postgresql.commit()\n"
        + "    assert postgresql.execute('SELECT count(*) FROM items').fetchone()[0] == 1\n"
    )
    conftest = _PGNOPROC if noproc else _PGPROC
    return Suite(
        {"models.py": MODELS, "conftest.py": conftest, "test_pg.py": test},
        ("pytest_postgresql.plugin",),
        args=(f"--postgresql-exec={pg_ctl}",),
        env=dict(noproc or {}),
        user=None if noproc else "postgres",
    )


_PMR = """
from pytest_mock_resources import create_postgres_fixture

from models import metadata

pg = create_postgres_fixture(metadata)
"""


def pytest_mock_resources(n: int) -> Suite:
    """pytest-mock-resources: a database per test, from a template, in its container."""
    test = (
        "import pytest\nfrom sqlalchemy import func, select\nfrom models import items\n\n"
        + PARAM.format(n=n)
        + "def test_row(pg, i):\n"
        + "    with pg.begin() as conn:\n"
        + "        conn.execute(items.insert().values(name='x'))\n"
        + "    with pg.connect() as conn:\n"
        + "        assert conn.scalar(select(func.count()).select_from(items)) == 1\n"
    )
    return Suite(
        {"models.py": MODELS, "conftest.py": _PMR, "test_pg.py": test},
        ("pytest_mock_resources",),
    )


_PYDB = """
import pytest

from models import DDL

pytest_plugins = ["pytest_databases.docker.postgres"]


@pytest.fixture(scope="session")
def schema(postgres_connection):
    postgres_connection.execute(DDL)
    postgres_connection.commit()
    return postgres_connection


@pytest.fixture
def db(schema):
    yield schema
    schema.rollback()
    schema.execute("DELETE FROM items")
    schema.commit()
"""


def pytest_databases_pg(n: int) -> Suite:
    """pytest-databases: one server and connection; the user cleans up after each test."""
    test = (
        "import pytest\n\n"
        + PARAM.format(n=n)
        + "def test_row(db, i):\n"
        + "    db.execute(\"INSERT INTO items (name) VALUES ('x')\")\n"
        + "    db.commit()\n"
        + "    assert db.execute('SELECT count(*) FROM items').fetchone()[0] == 1\n"
    )
    return Suite(
        {"models.py": MODELS, "conftest.py": _PYDB, "test_pg.py": test},
        ("pytest_databases._service",),
    )


# --- Redis ---------------------------------------------------------------------------

_REDIS_BODY = "    {c}.set('k', 'v')\n    assert {c}.get('k') == b'v'\n"


def ours_redis(n: int, image: str | None = None) -> Suite:
    test = (
        "import pytest\n\n"
        + PARAM.format(n=n)
        + "def test_key(redis_client, i):\n"
        + _REDIS_BODY.format(c="redis_client")
    )
    env = backend_env({"redis": image} if image else None)
    return Suite({"test_redis.py": test}, ("pytest_integration_kit.plugin",), env=env)


def pytest_redis(n: int, redis_exec: str) -> Suite:
    test = (
        "import pytest\n\n"
        + PARAM.format(n=n)
        + "def test_key(redisdb, i):\n"
        + _REDIS_BODY.format(c="redisdb")
    )
    return Suite(
        {"test_redis.py": test},
        ("pytest_redis.plugin",),
        args=(f"--redis-exec={redis_exec}",),
        user="postgres",
    )


_PYDB_REDIS = """
import pytest
import redis

pytest_plugins = ["pytest_databases.docker.redis"]


@pytest.fixture(scope="session")
def client(redis_service):
    return redis.Redis(host=redis_service.host, port=redis_service.port, db=redis_service.db)


@pytest.fixture
def r(client):
    yield client
    client.flushdb()
"""


def pytest_databases_redis(n: int) -> Suite:
    test = "import pytest\n\n" + PARAM.format(n=n) + "def test_key(r, i):\n"
    test += _REDIS_BODY.format(c="r")
    return Suite(
        {"conftest.py": _PYDB_REDIS, "test_redis.py": test}, ("pytest_databases._service",)
    )


_RAW_REDIS = """
import os

import pytest
import redis


@pytest.fixture(scope="session")
def r():
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    yield client
    client.flushdb()
"""


def floor_redis(n: int, url: str) -> Suite:
    test = "import pytest\n\n" + PARAM.format(n=n) + "def test_key(r, i):\n"
    test += _REDIS_BODY.format(c="r")
    return Suite(
        {"conftest.py": _RAW_REDIS, "test_redis.py": test}, (), env={"BENCH_REDIS_URL": url}
    )


# --- cold start: one test that needs the servers ------------------------------------------


def ours_cold(services: tuple[str, ...], images: dict[str, str] | None = None) -> Suite:
    names = ", ".join(f"{s}_server" for s in services)
    test = f"def test_first({names}):\n    pass\n"
    env = backend_env({s: images[s] for s in services} if images else None)
    return Suite({"test_cold.py": test}, ("pytest_integration_kit.plugin",), env=env)


def pytest_databases_cold(services: tuple[str, ...]) -> Suite:
    mods = {"postgres": "postgres", "redis": "redis", "mysql": "mysql"}
    fixtures = {"postgres": "postgres_service", "redis": "redis_service", "mysql": "mysql_service"}
    plugins = ", ".join(f'"pytest_databases.docker.{mods[s]}"' for s in services)
    conftest = f"pytest_plugins = [{plugins}]\n"
    test = f"def test_first({', '.join(fixtures[s] for s in services)}):\n    pass\n"
    return Suite({"conftest.py": conftest, "test_cold.py": test}, ("pytest_databases._service",))


def pytest_mock_resources_cold(services: tuple[str, ...]) -> Suite:
    makers = {
        "postgres": "create_postgres_fixture",
        "redis": "create_redis_fixture",
        "mysql": "create_mysql_fixture",
    }
    lines = [f"from pytest_mock_resources import {', '.join(makers[s] for s in services)}"]
    lines += [f"{s}_fx = {makers[s]}()" for s in services]
    test = f"def test_first({', '.join(f'{s}_fx' for s in services)}):\n    pass\n"
    return Suite(
        {"conftest.py": "\n".join(lines) + "\n", "test_cold.py": test}, ("pytest_mock_resources",)
    )


_TC_COLD = """
import os

import pytest


@pytest.fixture(scope="session")
def postgres():
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(os.environ["BENCH_PG_IMAGE"], driver="psycopg") as c:
        yield c


@pytest.fixture(scope="session")
def redis_():
    from testcontainers.redis import RedisContainer

    with RedisContainer(os.environ["BENCH_REDIS_IMAGE"]) as c:
        yield c


@pytest.fixture(scope="session")
def mysql():
    from testcontainers.mysql import MySqlContainer

    with MySqlContainer(os.environ["BENCH_MYSQL_IMAGE"]) as c:
        yield c
"""


def testcontainers_cold(services: tuple[str, ...], images: dict[str, str]) -> Suite:
    names = {"postgres": "postgres", "redis": "redis_", "mysql": "mysql"}
    test = f"def test_first({', '.join(names[s] for s in services)}):\n    pass\n"
    env = {
        "TESTCONTAINERS_RYUK_DISABLED": "true",
        "BENCH_PG_IMAGE": images["postgres"],
        "BENCH_REDIS_IMAGE": images["redis"],
        "BENCH_MYSQL_IMAGE": images["mysql"],
    }
    return Suite({"conftest.py": _TC_COLD, "test_cold.py": test}, (), env=env)


def pytest_postgresql_cold(services: tuple[str, ...], pg_ctl: str, redis_exec: str) -> Suite:
    fixtures = {"postgres": "postgresql_proc", "redis": "redis_proc"}
    plugins = ["pytest_postgresql.plugin"] + (
        ["pytest_redis.plugin"] if "redis" in services else []
    )
    test = f"def test_first({', '.join(fixtures[s] for s in services)}):\n    pass\n"
    args = [f"--postgresql-exec={pg_ctl}"] + (
        [f"--redis-exec={redis_exec}"] if "redis" in services else []
    )
    return Suite({"test_cold.py": test}, tuple(plugins), args=tuple(args), user="postgres")
