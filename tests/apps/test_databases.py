"""postgres_database / mysql_database / redis_database, and Endpoint.url_for on real servers."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import asyncpg
import psycopg
import pytest
import redis
from app_project import driver_url, write_plain_project
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from pytest_integration_kit.services import spec_for
from pytest_integration_kit.services.endpoint import Endpoint
from pytest_integration_kit.services.spec import Credentials

#: Every character that must be percent-encoded in a URL's userinfo, and % itself (ASCII:
#: PyMySQL sends passwords as latin-1, whatever the URL says).
NASTY = "p@ss/w:rd%#?x&=+ y"

TESTS = """
import asyncio
import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine


def record(line):
    with open(os.path.join(os.path.dirname(__file__), "seen.txt"), "a") as handle:
        handle.write(line + "\\n")


@pytest.mark.parametrize("n", range(3))
@pytest.mark.parametrize(
    ("service", "sync_driver", "async_driver"),
    [("postgres", "psycopg", "asyncpg"), ("mysql", "pymysql", "aiomysql")],
)
def test_the_workers_database(n, service, sync_driver, async_driver, request):
    database = request.getfixturevalue(f"{service}_database")
    session = request.getfixturevalue(f"{service}_session")
    # The session fixture works on the very same database.
    assert session.get_bind().engine.url.database == database.database
    engine = create_engine(database.url_for(sync_driver))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 2
    engine.dispose()

    async def count():
        engine = create_async_engine(database.url_for(async_driver))
        async with engine.connect() as conn:
            result = (await conn.execute(text("SELECT count(*) FROM users"))).scalar()
        await engine.dispose()
        return result

    assert asyncio.run(count()) == 2
    record(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {service} {database.database}")


def test_redis_database(redis_database, redis_client):
    import redis
    client = redis.Redis.from_url(redis_database.url)
    client.set("mine", 1)
    assert redis_client.get("mine") == b"1"
    client.close()
    record(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} redis {redis_database.database}")
"""


def test_each_worker_has_its_own_database_fixtures(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_plain_project(pytester)
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "-p", "randomly")
    result.assert_outcomes(passed=7)
    seen = [line.split() for line in (pytester.path / "seen.txt").read_text().splitlines()]
    by_worker: dict[tuple[str, str], set[str]] = {}
    for worker, service, name in seen:
        by_worker.setdefault((worker, service), set()).add(name)
    assert all(len(names) == 1 for names in by_worker.values())
    for service in ("postgres", "mysql"):
        mine = [names for (_, s), names in by_worker.items() if s == service]
        assert len(mine) == len({frozenset(n) for n in mine})


def test_url_for_schemes() -> None:
    pg = spec_for("postgres").endpoint(
        host="127.0.0.1", port=5432, credentials=_creds("app", NASTY, "db"), backend="url"
    )
    assert pg.url_for(None) == pg.url
    assert pg.url_for("asyncpg").startswith("postgresql+asyncpg://app:")
    assert pg.url_for("psycopg2").startswith("postgresql+psycopg2://")
    assert pg.url_for("postgresql").startswith("postgresql://app:")
    my = spec_for("mysql").endpoint(
        host="::1", port=3306, credentials=_creds("root", NASTY, "db"), backend="url"
    )
    assert my.url_for("asyncmy").startswith("mysql+asyncmy://root:")
    assert "@[::1]:3306/db" in my.url_for("mysql")
    rd = spec_for("redis").endpoint(
        host="127.0.0.1", port=6379, credentials=_creds("default", NASTY, "3"), backend="url"
    )
    assert rd.url_for("redis") == rd.url
    with pytest.raises(ValueError, match="take no driver"):
        rd.url_for("asyncpg")
    for url in (pg.url_for("asyncpg"), my.url_for("aiomysql"), pg.url_for("postgresql")):
        assert make_url(url).password == NASTY
        assert NASTY not in url
    assert redis.connection.parse_url(rd.url)["password"] == NASTY


def _creds(user: str, password: str, database: str) -> Credentials:
    return Credentials(user, password, database)


@pytest.fixture
def postgres_nasty(url_servers: dict[str, str]) -> Endpoint:
    """A role on the test PostgreSQL server whose password needs every kind of quoting."""
    admin = spec_for("postgres").endpoint_from_url(url_servers["postgres"])
    role = f"pik_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(
            # Straight to the driver, which reads % as a placeholder: doubled.
            f"CREATE ROLE {role} LOGIN PASSWORD '{NASTY.replace('%', '%%')}'"
        )
    yield Endpoint(
        service="postgres",
        host=admin.host,
        port=admin.port,
        user=role,
        password=NASTY,
        database=admin.database,
        backend="url",
        scheme=admin.scheme,
    )
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP ROLE {role}")
    engine.dispose()


@pytest.fixture
def mysql_nasty(url_servers: dict[str, str]) -> Endpoint:
    """A MySQL user whose password needs every kind of quoting."""
    admin = spec_for("mysql").endpoint_from_url(url_servers["mysql"])
    user = f"pik_{uuid.uuid4().hex[:8]}"
    engine = create_engine(driver_url("mysql", admin.url), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY :p"), {"p": NASTY})
    yield Endpoint(
        service="mysql",
        host=admin.host,
        port=admin.port,
        user=user,
        password=NASTY,
        database="",
        backend="url",
        scheme=admin.scheme,
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
    engine.dispose()


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2", None])
def test_postgres_sync_drivers_log_in(postgres_nasty: Endpoint, driver: str | None) -> None:
    engine = create_engine(postgres_nasty.url_for(driver), poolclass=NullPool)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == postgres_nasty.user
    engine.dispose()


def test_postgres_async_and_plain_forms_log_in(postgres_nasty: Endpoint) -> None:
    plain = postgres_nasty.url_for("postgresql")

    async def check() -> None:
        engine = create_async_engine(postgres_nasty.url_for("asyncpg"), poolclass=NullPool)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        await engine.dispose()
        raw = await asyncpg.connect(plain)  # asyncpg's own DSN parser
        assert await raw.fetchval("SELECT current_user") == postgres_nasty.user
        await raw.close()

    asyncio.run(check())
    with psycopg.connect(plain) as conn:  # libpq's parser
        assert conn.execute("SELECT current_user").fetchone() == (postgres_nasty.user,)
    psql = subprocess.run(
        ["psql", plain, "-Atc", "SELECT current_user"], capture_output=True, text=True, check=False
    )
    assert psql.stdout.strip() == postgres_nasty.user, psql.stderr


@pytest.mark.parametrize("driver", ["pymysql", "aiomysql", "asyncmy", "mysql"])
def test_mysql_drivers_log_in(mysql_nasty: Endpoint, driver: str) -> None:
    url = mysql_nasty.url_for(driver)
    if driver == "mysql":  # the plain form: parsed as a URL, given to the CLI's driver
        assert make_url(url).password == NASTY
        url = str(make_url(url).set(drivername="mysql+pymysql").render_as_string(False))
    if driver in ("aiomysql", "asyncmy"):

        async def check() -> str:
            engine = create_async_engine(url, poolclass=NullPool)
            async with engine.connect() as conn:
                user = (await conn.execute(text("SELECT current_user()"))).scalar()
            await engine.dispose()
            return str(user)

        assert asyncio.run(check()).startswith(mysql_nasty.user + "@")
        return
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        assert str(conn.execute(text("SELECT current_user()")).scalar()).startswith(
            mysql_nasty.user + "@"
        )
    engine.dispose()
