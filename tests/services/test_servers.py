"""A user's project gets real servers on every backend."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.usefixtures("backend_env")

USER_TESTS = """
import json, pathlib

import psycopg
import pymysql
import redis
import sqlalchemy as sa


def record(server):
    path = pathlib.Path("secrets.json")
    seen = json.loads(path.read_text()) if path.exists() else []
    seen.append(server.password)
    path.write_text(json.dumps(seen))


def test_postgres(postgres_server):
    record(postgres_server)
    assert postgres_server.backend == "{backend}"
    assert isinstance(postgres_server.port, int)
    with psycopg.connect(
        host=postgres_server.host, port=postgres_server.port, user=postgres_server.user,
        password=postgres_server.password, dbname=postgres_server.database,
    ) as conn:
        assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
    engine = sa.create_engine(postgres_server.url)
    with engine.connect() as conn:
        database = conn.execute(sa.text("SELECT current_database()")).scalar()
        assert database == postgres_server.database
        if "{backend}" == "docker":  # TZ=UTC spares initdb its search of the zoneinfo
            assert conn.execute(sa.text("SHOW timezone")).scalar() == "UTC"
    engine.dispose()


def test_mysql(mysql_server):
    record(mysql_server)
    assert mysql_server.backend == "{backend}"
    conn = pymysql.connect(
        host=mysql_server.host, port=mysql_server.port, user=mysql_server.user,
        password=mysql_server.password, database=mysql_server.database,
    )
    with conn.cursor() as cursor:
        cursor.execute("SELECT DATABASE()")
        assert cursor.fetchone() == (mysql_server.database,)
    conn.close()
    engine = sa.create_engine(mysql_server.url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        # Containers skip loading the zoneinfo, as a local server never loads it.
        zones = conn.execute(sa.text("SELECT COUNT(*) FROM mysql.time_zone_name")).scalar()
        assert "{backend}" == "url" or zones == 0
    engine.dispose()


def test_redis(redis_server):
    record(redis_server)
    assert redis_server.backend == "{backend}"
    assert redis_server.url.startswith("redis://")
    client = redis.Redis.from_url(redis_server.url)
    client.set("k", "v")
    assert client.get("k") == b"v"
    client.close()
"""


def test_user_project_gets_every_server(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_user=USER_TESTS.replace("{backend}", backend))
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    output = result.stdout.str()
    result.stdout.fnmatch_lines(["*integration services*"])
    # "ready in 0.3 s", with " (warm data dir)" after it where a warm copy started.
    for line in (
        f"postgres*{backend}*PostgreSQL *ready in * s*",
        f"mysql*{backend}*M*DB *ready in * s*" if backend != "docker" else f"mysql*{backend}*",
        f"redis*{backend}*Redis *ready in * s",
    ):
        result.stdout.fnmatch_lines([line])
    # One column for every address, however long a version is; MariaDB's version says
    # "10.11.19", not its build ("10.11.19-MariaDB-0+deb12u1", which pushed it out).
    rows = [line for line in result.stdout.lines if re.match(rf"\w+\s+{backend}\s", line)]
    addresses = [re.search(r" (\S+:\d+) +(ready|reused)", row) for row in rows]
    assert len(rows) == 3, rows
    assert all(addresses), rows
    assert len({found.start(1) for found in addresses if found}) == 1, rows
    assert not any("-MariaDB" in row for row in rows), rows

    secrets = json.loads((pytester.path / "secrets.json").read_text())
    assert len(secrets) == 3
    for secret in secrets:
        if backend != "url":  # the url backend's password is whatever the URL says
            assert len(secret) >= 20
        assert secret not in output
        assert secret not in result.stderr.str()
