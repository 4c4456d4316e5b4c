"""Server options, extensions and init SQL on the servers the kit starts (docker, local).

PostGIS for real: Debian's postgresql-15-postgis-3 on local, the offline
pytest-integration-kit/postgis:15 image on docker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_integration_kit.services.postgres import PostgresSpec

#: The backends that start servers (PIK_TEST_BACKENDS narrows them, as for every test).
KIT_BACKENDS = [
    b.strip()
    for b in os.environ.get("PIK_TEST_BACKENDS", "docker,local").split(",")
    if b.strip() in ("docker", "local")
]
POSTGIS_IMAGE = "pytest-integration-kit/postgis:15"

OPTIONS_INI = """
[pytest]
integration_postgres_options =
    work_mem=12345kB
    log_min_duration_statement=1234
integration_mysql_options = max_connections=321;max-allowed-packet=5242880
integration_redis_options = maxmemory-policy=allkeys-lru;maxmemory=33mb
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

OPTIONS_TESTS = """
import psycopg
import pymysql
import redis


def test_postgres_options(postgres_server):
    with psycopg.connect(postgres_server.url_for("postgresql")) as conn:
        assert conn.execute("SHOW work_mem").fetchone()[0] == "12345kB"
        assert conn.execute("SHOW log_min_duration_statement").fetchone()[0] == "1234ms"


def test_mysql_options(mysql_server):
    conn = pymysql.connect(
        host=mysql_server.host, port=mysql_server.port, user=mysql_server.user,
        password=mysql_server.password,
    )
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@max_connections, @@max_allowed_packet")
        assert cursor.fetchone() == (321, 5242880)
    conn.close()


def test_redis_options(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert client.config_get("maxmemory") == {"maxmemory": str(33 * 1024 * 1024)}
    client.close()
"""


@pytest.mark.parametrize("backend", KIT_BACKENDS)
def test_options_reach_each_server(pytester: pytest.Pytester, backend_env: str) -> None:
    pytester.makeini(OPTIONS_INI)
    pytester.makepyfile(test_options=OPTIONS_TESTS)
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["*postgres*options=work_mem=12345kB;log_min_duration_statement=1234 (ini)*"]
    )


POSTGIS_INI = """
[pytest]
integration_postgres_extensions = postgis
integration_postgres_init = init/roles.sql
integration_schema = places:schema
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

INIT_SQL = """
-- run once per server, as its superuser, in template1
CREATE ROLE pik_reader NOLOGIN;
CREATE TABLE init_runs (at timestamptz NOT NULL DEFAULT now());
INSERT INTO init_runs DEFAULT VALUES;
"""

PLACES = """
def schema(connection):
    # A geometry column: the extension is in the template before the schema is built.
    connection.exec_driver_sql(
        "CREATE TABLE places (id integer PRIMARY KEY, geom geometry(Point, 4326) NOT NULL)"
    )
"""

POSTGIS_TESTS = """
import psycopg
import pytest
from sqlalchemy import text


@pytest.mark.parametrize("n", range(3))
def test_geometry_query(postgres_session, n):
    postgres_session.execute(text(
        "INSERT INTO places VALUES (1, ST_SetSRID(ST_MakePoint(0, 0), 4326)),"
        " (2, ST_SetSRID(ST_MakePoint(3, 4), 4326))"
    ))
    postgres_session.commit()
    distance = postgres_session.execute(text(
        "SELECT ST_Distance(a.geom, b.geom) FROM places a, places b WHERE a.id = 1 AND b.id = 2"
    )).scalar()
    assert distance == 5.0


@pytest.mark.parametrize("n", range(3))
def test_init_ran_once(postgres_session, n):
    assert postgres_session.execute(text("SELECT count(*) FROM init_runs")).scalar() == 1
    assert postgres_session.execute(
        text("SELECT count(*) FROM pg_roles WHERE rolname = 'pik_reader'")
    ).scalar() == 1


def test_the_server_database_has_the_extension_too(postgres_server):
    with psycopg.connect(postgres_server.url_for("postgresql")) as conn:
        version = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
        assert version.startswith("3.")
"""


@pytest.mark.parametrize("backend", KIT_BACKENDS)
def test_postgis_and_init_sql_two_workers(
    pytester: pytest.Pytester, backend_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_POSTGRES_IMAGE", POSTGIS_IMAGE)
    pytester.makeini(POSTGIS_INI)
    pytester.mkdir("init").joinpath("roles.sql").write_text(INIT_SQL)
    pytester.makepyfile(places=PLACES, test_postgis=POSTGIS_TESTS)
    # Two workers share one server: a second run of the init would fail on CREATE ROLE.
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "-p", "randomly")
    result.assert_outcomes(passed=7)


MISSING_TESTS = """
def test_needs_it(postgres_server):
    pass
"""


@pytest.mark.parametrize("backend", KIT_BACKENDS)
def test_a_missing_extension_names_the_package_or_image(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    # The plain test image has no PostGIS; the local machine has no pgvector.
    extension = "postgis" if backend_env == "docker" else "vector"
    pytester.makeini(f"[pytest]\nintegration_postgres_extensions = {extension}\n")
    pytester.makepyfile(test_missing=MISSING_TESTS)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    fix = (
        "use an image that carries it (integration_postgres_image), e.g. postgis/postgis:15-3.5"
        if backend_env == "docker"
        else "install the package postgresql-15-pgvector (Debian/Ubuntu: apt-get install "
        "postgresql-15-pgvector)"
    )
    result.stdout.fnmatch_lines(
        [
            f"*integration_postgres_extensions: the extension '{extension}' is not installed "
            f"on this PostgreSQL 15.*; {fix}*"
        ]
    )


def test_a_reserved_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nintegration_postgres_options = port=5433\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*integration_postgres_options: [[]'port=5433'] is not allowed (set by "
            "integration_postgres_options); expected name=value entries*not one the kit sets "
            "(port, listen_addresses*(Reason: port is set by the kit itself*"
        ]
    )


def test_a_missing_init_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nintegration_postgres_init = init/none.sql\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*init/none.sql is not a file*"])


def test_on_the_url_backend_the_options_are_a_usage_error_under_filterwarnings(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(
        "[pytest]\nintegration_backend = url\n"
        "integration_postgres_url = postgresql://app@127.0.0.1:1/app\n"
        "integration_postgres_extensions = postgis\nfilterwarnings = error\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*integration_postgres_extensions is set (ini) but integration_postgres_backend is "
            "url: the kit does not start that server, so it cannot apply it*"
        ]
    )


def test_a_kept_server_must_match_the_options_and_the_init_files_contents(
    tmp_path: Path,
) -> None:
    spec = PostgresSpec()
    (option,) = spec.extra_settings()[:1]
    init = tmp_path / "init.sql"
    init.write_text("CREATE ROLE a;")
    values = {"options": option.parse("work_mem=1MB"), "init": (init,)}
    first = spec.configured(values).identity()
    assert first == spec.configured(dict(values)).identity()
    assert first != spec.configured({**values, "options": option.parse("work_mem=2MB")}).identity()
    init.write_text("CREATE ROLE b;")
    assert first != spec.configured(values).identity()
    assert spec.values == {}  # the registered spec is left as it was
