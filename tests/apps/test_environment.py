"""integration_env: variables set before conftest import, naming each worker's own database."""

from __future__ import annotations

import textwrap

import pytest

# Imported here, never first inside an in-process run: pytester drops the modules first
# imported there, and a dialect package imported twice warns (an error under -W error).
import sqlalchemy.dialects.postgresql
from app_project import run, write_app

PRELOADED = (sqlalchemy.dialects.postgresql,)

TESTS = """
import os

import pytest
import redis
from sqlalchemy import text

from app import settings
from app.db import engine


def record(line):
    with open(os.path.join(os.path.dirname(__file__), "seen.txt"), "a") as handle:
        handle.write(line + "\\n")


@pytest.mark.parametrize("n", range(5))
def test_the_app_reaches_its_workers_database(n, postgres_database):
    assert settings.DATABASE_URL == postgres_database.url
    assert settings.ASYNC_DATABASE_URL == postgres_database.url_for("asyncpg")
    with engine.connect() as conn:  # the app's own engine: schema and seed are there
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 2
        name = conn.execute(text("SELECT current_database()")).scalar()
    assert name == postgres_database.database
    record(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} postgres {name}")


@pytest.mark.parametrize("n", range(5))
def test_the_app_reaches_its_workers_redis_db(n, redis_database, redis_client):
    assert settings.REDIS_URL == redis_database.url
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set("k", n)
    assert redis_client.get("k") == str(n).encode()  # the same db index as the fixture's
    client.close()
    record(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} redis {redis_database.database}")


def test_no_kit_fixture_at_all():
    # The worker database exists for code that only knows the URL.
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 2
"""


def test_variables_set_before_conftest_import_name_each_workers_database(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_app(pytester)
    pytester.makepyfile(test_app=TESTS)
    result = run(pytester, "-n", "2", "-p", "randomly", "-p", "xdist")
    result.assert_outcomes(passed=11)
    seen = [line.split() for line in (pytester.path / "seen.txt").read_text().splitlines()]
    databases: dict[tuple[str, str], set[str]] = {}
    for worker, service, name in seen:
        databases.setdefault((worker, service), set()).add(name)
    assert all(len(names) == 1 for names in databases.values())  # one per worker...
    for service in ("postgres", "redis"):
        mine = [names for (_, s), names in databases.items() if s == service]
        assert len(mine) == len({frozenset(n) for n in mine})  # ...of its own


def test_without_xdist_and_in_the_report_header(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_app(pytester)
    pytester.makepyfile(test_app=TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=11)
    result.stdout.fnmatch_lines(
        ["integration: *env=DATABASE_URL={postgres.url} ASYNC_DATABASE_URL=* (ini)*"]
    )


def test_nothing_named_nothing_started(pytester: pytest.Pytester, backend_env: str) -> None:
    write_app(pytester, ini="[pytest]\nintegration_env = GREETING=hello{{{{x}}}}\n{extra}")
    pytester.makeconftest("import os\nassert os.environ['GREETING'] == 'hello{x}'\n")
    pytester.makepyfile(test_app="def test_plain(): pass")
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    # No server started (the section may still report what was reaped from dead sessions).
    assert " ready in " not in result.stdout.str()


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("DATABASE_URL={mongo.url}", "names an unknown service"),
        ("DATABASE_URL={postgres.url:nosuchdriver}", "no driver 'nosuchdriver' for postgres"),
        ("REDIS_URL={redis.url:asyncpg}", "no driver 'asyncpg' for redis"),
        ("DATABASE_URL={postgres.url", "is not allowed"),
        ("DATABASE_URL={postgres.host:asyncpg}", "is not allowed"),
        ("{postgres.url}", "is not allowed"),
    ],
)
@pytest.mark.parametrize("source", ["ini", "env", "cli"])
def test_bad_templates_are_usage_errors_before_anything_starts(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    complaint: str,
    source: str,
) -> None:
    args: list[str] = []
    if source == "ini":
        pytester.makeini(f"[pytest]\nintegration_env = {value}\n")
    elif source == "env":
        monkeypatch.setenv("INTEGRATION_ENV", value)
    else:
        args = [f"--integration-env={value}"]
    pytester.makeconftest("raise AssertionError('conftest imported')")
    pytester.makepyfile(test_app="def test_plain(): pass")
    # In-process: the run stops at its start-up, before any conftest, server or worker
    # (a subprocess cost each of these 18 cases 2-5 s of interpreter and imports).
    result = pytester.runpytest("-p", "no:randomly", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "integration_env" in err
    assert complaint in err, err
    assert "Traceback" not in err + result.stdout.str()
    assert "conftest imported" not in err


ALEMBIC_INI = """
[alembic]
script_location = %(here)s/migrations
sqlalchemy.url = driver://user:pass@localhost/dbname
"""

# A stock env.py of an application: its URL comes from the app's settings, read at import.
ENV_PY = """
from alembic import context
from sqlalchemy import engine_from_config, pool

from app.settings import DATABASE_URL

config = context.config
config.set_main_option("sqlalchemy.url", DATABASE_URL.replace("%", "%%"))
connectable = engine_from_config(
    config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
    poolclass=pool.NullPool,
)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("INSERT INTO accounts (id) VALUES (1)")
"""

ALEMBIC_TESTS = """
import pytest
from sqlalchemy import text

from app.db import engine


@pytest.mark.parametrize("n", range(3))
def test_migrated(n, postgres_database):
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts")).scalar() == 1
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
"""


def test_stock_alembic_env_reading_app_settings_migrates_the_template(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_app(pytester)
    ini = pytester.path / "pytest.ini"
    ini.write_text(
        ini.read_text().replace(
            "integration_seed = seed.sql", "integration_alembic_config = alembic.ini"
        )
    )
    (pytester.path / "migrations" / "versions").mkdir(parents=True)
    (pytester.path / "alembic.ini").write_text(textwrap.dedent(ALEMBIC_INI))
    (pytester.path / "migrations" / "env.py").write_text(ENV_PY)
    (pytester.path / "migrations" / "versions" / "0001_accounts.py").write_text(REVISION)
    pytester.makepyfile(test_app=ALEMBIC_TESTS)
    result = run(pytester, "-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=3)


def test_a_failing_migration_says_so(pytester: pytest.Pytester, backend_env: str) -> None:
    write_app(pytester, extra="integration_alembic_config = alembic.ini")
    (pytester.path / "migrations" / "versions").mkdir(parents=True)
    (pytester.path / "alembic.ini").write_text(textwrap.dedent(ALEMBIC_INI))
    (pytester.path / "migrations" / "env.py").write_text(ENV_PY)
    (pytester.path / "migrations" / "versions" / "0001_accounts.py").write_text(
        REVISION.replace("accounts (id)", "no_such_table (id)")
    )
    pytester.makepyfile(test_app=ALEMBIC_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(errors=3)
    out = result.stdout.str()
    assert "alembic upgrade head" in out
    assert "the servers are up, the migration failed" in out
    assert "no_such_table" in out


def test_a_toml_list_of_entries(pytester: pytest.Pytester, backend_env: str) -> None:
    write_app(pytester)
    (pytester.path / "pytest.ini").unlink()
    pytester.makefile(
        ".toml",
        pyproject="""
[tool.pytest.ini_options]
integration_schema = "app.models:metadata"
integration_seed = "seed.sql"
integration_env = [
    "DATABASE_URL={postgres.url}",
    "ASYNC_DATABASE_URL={postgres.url:asyncpg}",
    "REDIS_URL={redis.url}",
]
asyncio_default_fixture_loop_scope = "function"
""",
    )
    pytester.makepyfile(test_app=TESTS)
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=11)
