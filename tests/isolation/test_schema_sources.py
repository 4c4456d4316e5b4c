"""Schema from alembic or a callable, seed from SQL or callables; the fingerprint that keys it."""

from __future__ import annotations

import os
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
    """A PostgreSQL Engine that never connects: compiling DDL needs only its dialect."""
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


# -- errors: at start when no server is needed, once when one is (issue 8.10) ----------

DB_TESTS = """
def test_one(postgres_session):
    pass

def test_two(postgres_session):
    pass

def test_three(postgres_engine):
    pass
"""

NO_ALEMBIC = """
import sys

class NoAlembic:
    def find_spec(self, name, path=None, target=None):
        if name == "alembic" or name.startswith("alembic."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoAlembic())
"""

#: (what is wrong, ini lines, the setting and the words the usage error must carry)
AT_START = {
    "schema module missing": ("integration_schema = nosuch_models:metadata", "nosuch_models"),
    "schema attribute missing": ("integration_schema = models:nosuch", "no attribute 'nosuch'"),
    "schema module raises on import": ("integration_schema = broken:metadata", "ZeroDivisionError"),
    "seed file missing": ("integration_seed = nowhere.sql", "no such SQL file"),
    "seed callable missing": ("integration_seed = models:nosuch", "no attribute 'nosuch'"),
    "alembic config missing": ("integration_alembic_config = nowhere.ini", "no such file"),
    "alembic config broken": ("integration_alembic_config = broken.ini", "script_location"),
}


def _replace_schema_lines(pytester: pytest.Pytester, lines: str) -> None:
    ini = pytester.path / "pytest.ini"
    text = ini.read_text().replace("integration_schema = models:metadata\n", "")
    ini.write_text(text.replace("integration_seed = seed.sql\n", lines + "\n"))


@pytest.mark.parametrize(("lines", "words"), AT_START.values(), ids=AT_START.keys())
def test_what_needs_no_server_is_a_usage_error_at_start(
    pytester: pytest.Pytester, lines: str, words: str
) -> None:
    write_project(pytester, extra="integration_backend = local")
    _replace_schema_lines(pytester, lines)
    pytester.makepyfile(broken="x = 1 / 0", test_user=DB_TESTS)
    (pytester.path / "broken.ini").write_text("[alembic]\nsqlalchemy.url = x\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    err = result.stderr.str()
    setting = lines.split(" = ", maxsplit=1)[0]
    assert f"{setting}: " in err
    assert words in err
    assert "Traceback" not in err + result.stdout.str()
    assert "integration services" not in result.stdout.str()  # nothing started


def test_alembic_not_installed_is_a_usage_error_at_start(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(pytester, extra="integration_backend = local")
    make_alembic(pytester.path)
    _replace_schema_lines(pytester, "integration_alembic_config = alembic.ini")
    pytester.makepyfile(test_user=DB_TESTS)
    blocker = pytester.mkdir("no_alembic")
    (blocker / "sitecustomize.py").write_text(NO_ALEMBIC)
    paths = [str(blocker), os.environ.get("PYTHONPATH", "")]  # CI sets no PYTHONPATH
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(["*integration_alembic_config: *alembic is not installed*"])


BUILD_COUNTER = """
from pathlib import Path

def count(connection=None):
    with (Path(__file__).parent / "builds.txt").open("a") as f:
        f.write("build\\n")
"""

#: (what fails on the server, ini lines, files, the setting and words of the first error)
ON_SERVER = {
    "schema callable raises": (
        "integration_schema = user_schema:create",
        {
            "user_schema": BUILD_COUNTER + "\ndef create(connection):\n    count()\n"
            "    raise ValueError('no such luck')\n"
        },
        "integration_schema: 'user_schema:create' raised ValueError: no such luck (at ",
    ),
    "schema callable runs failing SQL": (
        "integration_schema = user_schema:create",
        {
            "user_schema": BUILD_COUNTER + "\nfrom sqlalchemy import text\n\n"
            "def create(connection):\n    count()\n"
            "    connection.execute(text('SELECT * FROM no_such_table'))\n"
        },
        "integration_schema: 'user_schema:create' raised ProgrammingError: *no_such_table*",
    ),
    "seed SQL fails": (
        "integration_schema = models:metadata\nintegration_seed = user_schema:count, bad.sql",
        {"user_schema": BUILD_COUNTER},
        "integration_seed: bad.sql, statement 2 ('INSERT INTO nowhere VALUES (1)'), raised *",
    ),
}


@pytest.mark.parametrize(("lines", "files", "first"), ON_SERVER.values(), ids=ON_SERVER.keys())
def test_what_needs_the_server_fails_once_naming_the_setting(
    pytester: pytest.Pytester, lines: str, files: dict[str, str], first: str
) -> None:
    write_project(pytester, extra="integration_backend = local")
    _replace_schema_lines(pytester, lines)
    pytester.makepyfile(test_user=DB_TESTS, **files)
    (pytester.path / "bad.sql").write_text(
        "INSERT INTO users (id, name) VALUES (9, 'x');\nINSERT INTO nowhere VALUES (1);\n"
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines([f"*{first}*"])
    out = result.stdout.str()
    assert out.count("not retried") == 2, out
    assert (pytester.path / "builds.txt").read_text().count("build") == 1
    assert "Traceback" not in out


def test_a_failing_migration_names_the_alembic_setting(pytester: pytest.Pytester) -> None:
    write_project(pytester, extra="integration_backend = local")
    make_alembic(pytester.path)
    migration = pytester.path / "migrations" / "versions" / "0001_accounts.py"
    broken = migration.read_text().replace("op.execute(", "op.execute('nonsense') or (")
    migration.write_text(broken)
    _replace_schema_lines(pytester, "integration_alembic_config = alembic.ini")
    pytester.makepyfile(test_user=DB_TESTS)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        ["*integration_alembic_config: 'upgrade head' of *alembic.ini' raised ProgrammingError*"]
    )
    assert result.stdout.str().count("not retried") == 2
