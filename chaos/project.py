"""The user project every chaos run drives: ini file, schema, seed and a checking conftest.

The project is what a user would write: a ``pytest.ini`` with the kit's settings, a
schema callable, a seed file and a conftest. The conftest adds the chaos suite's
eyes, using only public fixtures: every test logs its start and end (hang detection),
its outcome, and — as the first statement of its body — what it *sees* of its
database, read over a connection of its own (so the reading takes no lock the test
could wait on). A session fixture reads the worker database once more after the last
test, so the last test's leftovers are seen too. Stage markers (template build,
mid-test, teardown) let the driver ``kill -9`` a process at a chosen moment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["SEED_ROWS", "TEMPLATE_TABLES", "Project", "write_project"]

#: Template tables, their columns, and the seed rows every test must see.
TEMPLATE_TABLES: Final = {
    "parent": ("id", "name"),
    "child": ("id", "parent_id", "note"),
    "counter": ("id", "n"),
    "note": ("id", "body"),
}
SEED_ROWS: Final = {
    "parent": [["1", "p1"], ["2", "p2"]],
    "child": [["1", "1", "c1"]],
    "counter": [["1", "0"]],
    "note": [],
}

SEED_SQL: Final = """\
INSERT INTO parent (name) VALUES ('p1');
INSERT INTO parent (name) VALUES ('p2');
INSERT INTO child (parent_id, note) VALUES (1, 'c1');
INSERT INTO counter (n) VALUES (0);
"""

SCHEMA_PY: Final = '''\
"""The schema of the chaos project: four tables, a foreign key, a sequence (PostgreSQL)."""

import json
import os
import time

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, text

metadata = MetaData()
Table("parent", metadata, Column("id", Integer, primary_key=True), Column("name", String(40)))
Table(
    "child",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", Integer, ForeignKey("parent.id")),
    Column("note", String(40)),
)
Table("counter", metadata, Column("id", Integer, primary_key=True), Column("n", Integer))
Table("note", metadata, Column("id", Integer, primary_key=True), Column("body", String(40)))


def build(connection):
    """Create the schema; under the driver's stage markers, say so and dawdle."""
    # SALT
    markers = os.environ.get("CHAOS_MARKERS")
    if markers:
        with open(markers, "a") as out:
            out.write(json.dumps({"stage": "template", "pid": os.getpid()}) + "\\n")
        time.sleep(float(os.environ.get("CHAOS_TEMPLATE_SLEEP", "0")))
    metadata.create_all(connection)
    if connection.dialect.name == "postgresql":
        connection.execute(text("CREATE SEQUENCE chaos_seq"))
'''

EYES_PY: Final = '''\
"""The chaos suite's eyes: what each test sees of its database, and the event log."""

import json
import os
import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

TABLES = TEMPLATE_TABLES_LITERAL
LOG_DIR = os.environ["CHAOS_LOG_DIR"]
HANG_AFTER = float(os.environ.get("CHAOS_HANG_AFTER", "30"))
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
last_seen = {}


class ChaosBoom(Exception):
    """Raised by generated tests, on purpose."""


def log(event, **fields):
    record = {"ev": event, "worker": WORKER, "pid": os.getpid(), "t": time.time(), **fields}
    with open(os.path.join(LOG_DIR, f"events-{WORKER}-{os.getpid()}.jsonl"), "a") as out:
        out.write(json.dumps(record) + "\\n")


def marker(stage, role=WORKER):
    path = os.environ.get("CHAOS_MARKERS")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"stage": stage, "pid": os.getpid(), "worker": role}) + "\\n")


def db_of(handle):
    """The database name behind a Session, AsyncSession, Connection or Engine."""
    handle = getattr(handle, "sync_session", handle)
    if hasattr(handle, "get_bind"):
        handle = handle.get_bind()
    return getattr(handle, "engine", handle).url.database


def state_of(server_url, database):
    """What a test sees of ``database``: tables, columns, template rows, counters."""
    url = make_url(server_url).set(database=database)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            pg = conn.dialect.name == "postgresql"
            if pg:
                tables = conn.execute(text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                )).scalars().all()
                columns = conn.execute(text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public'"
                )).all()
                seq = conn.execute(text("SELECT last_value FROM chaos_seq")).scalar()
                auto = conn.execute(text("SELECT last_value FROM parent_id_seq")).scalar()
            else:
                tables = [t for t in conn.execute(text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
                )).scalars().all() if not t.startswith("_pik_")]
                columns = conn.execute(text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = DATABASE()"
                )).all()
                seq = None
                auto = conn.execute(text(
                    "SELECT auto_increment FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = 'parent'"
                )).scalar()
            rows = {}
            for table, cols in TABLES.items():
                if table in tables:
                    found = conn.execute(
                        text(f"SELECT {', '.join(cols)} FROM {table} ORDER BY id")
                    ).all()
                    rows[table] = [[str(v) for v in row] for row in found]
            conn.rollback()
    finally:
        engine.dispose()
    cols = {}
    for table, column in columns:
        if table in TABLES:
            cols.setdefault(table, []).append(column)
    return {
        "tables": sorted(tables),
        "columns": {t: sorted(c) for t, c in cols.items()},
        "rows": rows,
        "counters": {"chaos_seq": seq, "parent_autoinc": auto},
    }


def strategy_of(request):
    """The test's isolation strategy: its marker, else the ini setting."""
    marker = request.node.get_closest_marker("isolation")
    if marker is not None and marker.args:
        return marker.args[0]
    return request.config.getini("integration_isolation") or "rollback"


def chaos_observe(request, server, handle, service):
    """Log what this test sees of its database; called first thing in every test."""
    database = db_of(handle)
    url = server.url
    strategy = strategy_of(request)
    if strategy != "clone":  # a clone is gone after the test: nothing to see later
        last_seen[service] = (url, database)
    log("obs", test=request.node.nodeid, service=service, db=database, strategy=strategy,
        state=state_of(url, database))


def own_engine(server, handle):
    """An Engine the test builds itself from the server URL, on the test's database."""
    return create_engine(make_url(server.url).set(database=db_of(handle)), poolclass=NullPool)


'''

CONFTEST_PY: Final = '''\
"""The chaos suite's hooks: start/end/outcome of every test, stage markers."""

import faulthandler
import os
import time

import pytest

from chaos_eyes import HANG_AFTER, LOG_DIR, WORKER, last_seen, log, marker, state_of

_stack_file = None
_controller = []


def pytest_configure(config):
    worker = getattr(config, "workerinput", {}).get("workerid")
    role = worker or ("controller" if getattr(config.option, "numprocesses", None) else "main")
    if role == "controller":
        _controller.append(True)
    marker("configure", role)


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        marker("teardown-controller")


@pytest.fixture(autouse=True)
def chaos_trace(request):
    """Log start and end (after every other fixture's teardown) of each test."""
    global _stack_file
    if _stack_file is None:
        _stack_file = open(os.path.join(LOG_DIR, f"stacks-{WORKER}-{os.getpid()}.txt"), "a")
    log("start", test=request.node.nodeid)
    _stack_file.write(f"--- {request.node.nodeid} started at {time.time():.1f}\\n")
    _stack_file.flush()
    faulthandler.dump_traceback_later(HANG_AFTER * 0.8, file=_stack_file)
    yield
    faulthandler.cancel_dump_traceback_later()
    log("end", test=request.node.nodeid)


@pytest.fixture(scope="session", autouse=True)
def chaos_final(isolation_workspace):
    """After the last test of this process: what a next test would see."""
    yield
    marker("teardown")
    for service, (url, database) in sorted(last_seen.items()):
        try:
            state = state_of(url, database)
        except Exception as exc:  # the database may be gone after a kill
            log("final-error", service=service, error=repr(exc)[:300])
            continue
        log("obs", test="<after the last test>", service=service, db=database,
            strategy="worker", state=state)


def pytest_warning_recorded(warning_message, when, nodeid):
    if not _controller and nodeid:
        log("warning", test=nodeid, category=warning_message.category.__name__,
            message=str(warning_message.message)[:800])


def pytest_runtest_logreport(report):
    if _controller:  # the workers log their own reports
        return
    if report.when == "call" or report.outcome != "passed":
        message = ""
        if report.outcome != "passed" and report.longrepr is not None:
            lines = str(report.longrepr).splitlines()
            errors = [line for line in lines if line.startswith("E ")]
            message = "\\n".join(errors[-6:] or lines[-8:])
        log("report", test=report.nodeid, when=report.when, outcome=report.outcome,
            xfail=hasattr(report, "wasxfail"), message=message[-1500:])
'''


@dataclass(frozen=True)
class Project:
    """A generated project on disk."""

    path: Path
    strategy: str

    @property
    def logs(self) -> Path:
        return self.path / "logs"


def write_project(
    path: Path,
    *,
    strategy: str,
    modules: dict[str, str],
    backend_ini: str = "integration_backend = local\n",
    salt: str = "",
) -> Project:
    """Write the project at ``path``: ini, schema, seed, conftest, test modules."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "logs").mkdir(exist_ok=True)
    (path / "pytest.ini").write_text(
        "[pytest]\n"
        "pythonpath = .\n"
        "addopts = -p no:cacheprovider --strict-markers\n"
        "xfail_strict = true\n"
        "asyncio_mode = strict\n"
        "asyncio_default_fixture_loop_scope = function\n"
        f"{backend_ini}"
        "integration_missing = fail\n"
        "integration_schema = chaos_schema:build\n"
        "integration_seed = seed.sql\n"
        f"integration_isolation = {strategy}\n"
    )
    (path / "seed.sql").write_text(SEED_SQL)
    salt_schema(path, salt)
    tables = json.dumps({t: list(c) for t, c in TEMPLATE_TABLES.items()})
    (path / "chaos_eyes.py").write_text(EYES_PY.replace("TEMPLATE_TABLES_LITERAL", tables))
    (path / "conftest.py").write_text(CONFTEST_PY)
    for name, source in modules.items():
        (path / name).write_text(source)
    return Project(path, strategy)


def salt_schema(path: Path, salt: str) -> None:
    """(Re)write the schema callable with ``salt`` in its source.

    The template's name hashes the schema callable's source: a new salt makes a new
    template, so a kill at the template build also happens on a server that has one.
    """
    (path / "chaos_schema.py").write_text(SCHEMA_PY.replace("# SALT", f"# template {salt}"))
