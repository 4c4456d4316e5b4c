"""The template: built once per schema, reused while unchanged, rebuilt when it changes.

These runs use the url backend, so the servers outlive the inner sessions and we can
look at what each run left on them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from isolation_project import driver_url, run, write_project
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

TESTS = """
import pytest
from sqlalchemy import inspect, text

DB = pytest.mark.parametrize("db", ["postgres", "mysql"])


@DB
def test_schema(db, request):
    session = request.getfixturevalue(f"{db}_session")
    columns = {c["name"] for c in inspect(session.connection()).get_columns("{table}")}
    print(f"COLUMNS {db} {sorted(columns)}")
    assert session.execute(text("SELECT count(*) FROM users")).scalar() == 2
"""

EXTRA_MODEL = """
{table} = Table("{table}", metadata, Column("id", Integer, primary_key=True){more})
"""


@pytest.fixture
def url_env(
    url_servers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Engine]]:
    """Inner runs on the url backend; admin engines on the same servers for us."""
    monkeypatch.setenv("INTEGRATION_BACKEND", "url")
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    for service, url in url_servers.items():
        monkeypatch.setenv(f"INTEGRATION_{service.upper()}_URL", url)
    engines = {
        service: create_engine(
            driver_url(service, url_servers[service]), isolation_level="AUTOCOMMIT"
        )
        for service in ("postgres", "mysql")
    }
    yield engines
    for engine in engines.values():
        engine.dispose()


def templates(engines: dict[str, Engine]) -> dict[str, dict[str, int]]:
    """Template databases on each server: name -> an identity that changes on rebuild."""
    with engines["postgres"].connect() as conn:
        pg = {
            str(name): int(oid)
            for name, oid in conn.execute(
                text("SELECT datname, oid FROM pg_database WHERE datname LIKE 'pik\\_tpl\\_%'")
            )
        }
    with engines["mysql"].connect() as conn:
        my = {
            str(name): 0
            for (name,) in conn.execute(
                text(
                    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                    "WHERE SCHEMA_NAME LIKE 'pik\\_tpl\\_%'"
                )
            )
        }
    return {"postgres": pg, "mysql": my}


def own_templates(result: pytest.RunResult, how: str) -> dict[str, str]:
    """The template each service's summary line names: this run's, whatever else the
    shared url servers hold (the other xdist worker builds templates on them too)."""
    named = {}
    for service in ("postgres", "mysql"):
        pattern = rf"main: {service} .*: template (pik_tpl_\w+) {how},"
        (name,) = [m[1] for line in result.outlines if (m := re.match(pattern, line))]
        named[service] = name
    return named


def mark_mysql_template(engine: Engine, name: str) -> None:
    """A row only a rebuild would lose."""
    with engine.connect() as conn:
        conn.execute(text(f"INSERT INTO `{name}`._pik_template VALUES ('marked')"))


def mysql_marked(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(f"SELECT count(*) FROM `{name}`._pik_template")).scalar())


def test_unchanged_schema_is_reused_and_changed_one_rebuilt(
    pytester: pytest.Pytester, url_env: dict[str, Engine]
) -> None:
    table = f"things_{uuid.uuid4().hex[:8]}"  # a schema no other test has built
    write_project(pytester)
    models = pytester.path / "models.py"
    base_models = models.read_text()
    models.write_text(base_models + EXTRA_MODEL.format(table=table, more=""))
    pytester.makepyfile(test_user=TESTS.replace("{table}", table))

    before = templates(url_env)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    built = own_templates(result, "built")
    first = templates(url_env)
    for service, name in built.items():
        assert name in first[service], (service, name)
        assert name not in before[service], (service, name)
    pg_name, my_name = built["postgres"], built["mysql"]
    mark_mysql_template(url_env["mysql"], my_name)

    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*integration isolation*",
            f"main: mysql *: template {my_name} reused, 1 database(s) made from it",
            f"main: postgres *: template {pg_name} reused, 1 database(s) made from it",
        ]
    )
    second = templates(url_env)
    assert second["postgres"][pg_name] == first["postgres"][pg_name]  # the same database...
    assert mysql_marked(url_env["mysql"], my_name)  # ...and nothing rebuilt in place

    models.write_text(
        base_models + EXTRA_MODEL.format(table=table, more=', Column("label", String(20))')
    )
    result = run(pytester, "-p", "no:randomly", "-s")
    result.assert_outcomes(passed=2)
    for service in ("postgres", "mysql"):
        assert f"COLUMNS {service} ['id', 'label']" in result.stdout.str()
    rebuilt = own_templates(result, "built")
    third = templates(url_env)
    for service, name in rebuilt.items():
        assert name in third[service], (service, name)
        assert name not in second[service], (service, name)
    assert third["postgres"][pg_name] == first["postgres"][pg_name]


def test_a_schema_of_the_wrong_type_is_a_usage_error_with_the_reason(
    pytester: pytest.Pytester,
) -> None:
    write_project(pytester, extra="integration_backend = local")
    (pytester.path / "models.py").write_text("metadata = 42\n")
    pytester.makepyfile(test_user="def test_it(postgres_session):\n    pass\n")
    result = run(pytester, "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # at start-up, before any server
    result.stderr.fnmatch_lines(
        ["*integration_schema: 'models:metadata' is a int; expected a SQLAlchemy MetaData*"]
    )


SAME_SERVER_TESTS = """
from sqlalchemy import text

from pytest_integration_kit.isolation import IsolationWorkspace, SchemaSource


def changed(connection):
    connection.execute(text("CREATE TABLE extra (id INTEGER PRIMARY KEY)"))


def test_reused_while_unchanged_rebuilt_when_changed(
    postgres_server, mysql_server, isolation_workspace, postgres_session, mysql_session
):
    for server in (postgres_server, mysql_server):
        mine = isolation_workspace.databases(server)
        mine.worker_database()
        if server.backend != "url":  # a fresh server: this session built it
            assert mine.template_built is True
        # Another session with the same schema finds it ready.
        with IsolationWorkspace(isolation_workspace.source) as other:
            again = other.databases(server)
            again.worker_database()
            assert again.template_built is False
            assert again.template() == mine.template()
        # A changed schema is a new template, built without being asked.
        source = SchemaSource(schema="test_user:changed", root=isolation_workspace.source.root)
        with IsolationWorkspace(source) as third:
            rebuilt = third.databases(server)
            with rebuilt.engine().connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM extra")).scalar() == 0
            assert rebuilt.template_built is True
            assert rebuilt.template() != mine.template()
"""


def test_template_reuse_and_rebuild_on_one_server(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    write_project(pytester)
    pytester.makepyfile(test_user=SAME_SERVER_TESTS)
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=1)
