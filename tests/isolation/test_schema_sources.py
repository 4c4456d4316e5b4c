"""Schema from alembic or a callable, seed from SQL or callables; the fingerprint that keys it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from isolation_project import run, write_project
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from pytest_integration_kit.errors import ConfigError
from pytest_integration_kit.isolation import SchemaSource

ALEMBIC_INI = """
[alembic]
script_location = %(here)s/migrations
sqlalchemy.url = driver://user:pass@localhost/dbname
"""

# A stock env.py, as `alembic init` writes it (online mode only).
ENV_PY = """
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
connectable = config.attributes.get("connection")
if connectable is None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connectable, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""

SCRIPT_MAKO = '''
"""${message}"""
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade():
    ${upgrades if upgrades else "pass"}
'''

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(40), nullable=False),
    )
    op.execute("INSERT INTO accounts (id, owner) VALUES (1, 'migrated')")
"""

ALEMBIC_TESTS = """
import pytest
from sqlalchemy import text

DB = pytest.mark.parametrize("db", ["postgres", "mysql"])


@DB
def test_migrated(db, request):
    session = request.getfixturevalue(f"{db}_session")
    assert session.execute(text("SELECT owner FROM accounts")).scalar() == "migrated"
    assert session.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    session.execute(text("INSERT INTO accounts VALUES (2, 'x')"))
    session.commit()


@DB
@pytest.mark.isolation("truncate")
def test_truncate_keeps_migrated_rows(db, request):
    engine = request.getfixturevalue(f"{db}_engine")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM accounts"))


@DB
def test_after(db, request):
    session = request.getfixturevalue(f"{db}_session")
    assert session.execute(text("SELECT count(*) FROM accounts")).scalar() == 1
"""


def make_alembic(root: Path) -> Path:
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text(textwrap.dedent(ALEMBIC_INI))
    (root / "migrations" / "env.py").write_text(ENV_PY)
    (root / "migrations" / "script.py.mako").write_text(SCRIPT_MAKO)
    (root / "migrations" / "versions" / "0001_accounts.py").write_text(REVISION)
    return root / "alembic.ini"


def test_alembic_upgrade_head_builds_the_template(pytester: pytest.Pytester) -> None:
    write_project(pytester, extra="integration_backend = local")
    make_alembic(pytester.path)
    ini = pytester.path / "pytest.ini"
    ini.write_text(
        ini.read_text()
        .replace("integration_schema = models:metadata\n", "")
        .replace("integration_seed = seed.sql", "integration_alembic_config = alembic.ini")
    )
    pytester.makepyfile(test_user=ALEMBIC_TESTS)
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=6)


def test_callable_schema_and_seed(pytester: pytest.Pytester) -> None:
    write_project(pytester, extra="integration_backend = local")
    pytester.makepyfile(
        schema="""
from sqlalchemy import text

def create(connection):
    connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))

def seed(connection):
    connection.execute(text("INSERT INTO notes VALUES (1, 'from a callable')"))
""",
        test_user="""
from sqlalchemy import text

def test_it(postgres_session):
    assert postgres_session.execute(text("SELECT body FROM notes")).scalar() == "from a callable"
""",
    )
    ini = pytester.path / "pytest.ini"
    ini.write_text(
        ini.read_text()
        .replace("models:metadata", "schema:create")
        .replace("integration_seed = seed.sql", "integration_seed = schema:seed")
    )
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=1)


# -- the fingerprint, directly --------------------------------------------------------


@pytest.fixture
def pg_dialect_engine() -> Engine:
    # Compiling DDL needs only a dialect: an engine that never connects.
    return create_engine("postgresql+psycopg://u:p@127.0.0.1:1/db")


def test_fingerprint_follows_migrations_and_seed(tmp_path: Path, pg_dialect_engine: Engine) -> None:
    ini = make_alembic(tmp_path)
    seed = tmp_path / "seed.sql"
    seed.write_text("INSERT INTO accounts VALUES (2, 'b');")
    source = SchemaSource(alembic_config=str(ini), seed=("seed.sql",), root=tmp_path)
    first = source.fingerprint(pg_dialect_engine)
    assert source.fingerprint(pg_dialect_engine) == first
    migration = tmp_path / "migrations" / "versions" / "0001_accounts.py"
    migration.write_text(migration.read_text().replace("40", "80"))
    second = source.fingerprint(pg_dialect_engine)
    assert second != first
    seed.write_text("INSERT INTO accounts VALUES (3, 'c');")
    assert source.fingerprint(pg_dialect_engine) not in (first, second)


def test_fingerprint_follows_the_metadata_ddl(
    pytester: pytest.Pytester, pg_dialect_engine: Engine
) -> None:
    pytester.syspathinsert()
    pytester.makepyfile(
        fp_one="""
from sqlalchemy import Column, Integer, MetaData, String, Table
metadata = MetaData()
Table("t", metadata, Column("id", Integer, primary_key=True), Column("s", String(10)))
""",
        fp_two="""
from sqlalchemy import Column, Integer, MetaData, String, Table
metadata = MetaData()
Table("t", metadata, Column("id", Integer, primary_key=True), Column("s", String(11)))
""",
    )
    one = SchemaSource(schema="fp_one:metadata", root=pytester.path)
    two = SchemaSource(schema="fp_two:metadata", root=pytester.path)
    fp = one.fingerprint(pg_dialect_engine)
    assert fp == one.fingerprint(pg_dialect_engine)
    assert fp != two.fingerprint(pg_dialect_engine)


def test_missing_seed_file_is_a_config_error(tmp_path: Path, pg_dialect_engine: Engine) -> None:
    source = SchemaSource(seed=("nowhere.sql",), root=tmp_path)
    with pytest.raises(ConfigError, match="integration_seed: no such SQL file"):
        source.fingerprint(pg_dialect_engine)
