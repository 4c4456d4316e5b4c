"""Seeded random test bodies: what a user's tests do to a database, in random order.

Each generated test reads first what it sees (the checker, see :mod:`chaos.project`),
then runs a random sequence of operations through its session (sync or async), the
``<service>_engine`` fixture and an engine of its own: inserts, updates, deletes,
commits, rollbacks, nested savepoints, exceptions mid-transaction, ``SELECT … FOR
UPDATE``, DDL (``CREATE TABLE``, ``ALTER TABLE … ADD COLUMN``) and sequences. Some end
by failing on purpose (``xfail``), so teardown after a failure is exercised too.

The generator never writes a test that would block *without the kit*: under
``rollback`` the session's outer transaction holds its locks until the end of the
test, so a second connection never changes a row or the schema of a table the session
has touched. What blocks anyway is the kit's doing — a hang to report.

Every test's plan (what it did, through what) goes to ``manifest.json``; the verdict
uses it to tell documented leaks from undocumented ones.
"""

# ruff: noqa: S608 - the SQL is test code written from fixed fragments, never from input
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import random

__all__ = ["Plan", "generate_module"]

SERVICES: Final = ("postgres", "mysql")
INSERTABLE: Final = ("parent", "child", "counter", "note")
#: Profiles: ``full`` mixes every connection in one test; ``single`` keeps one per test
#: (for the concurrency phase, which is about sessions colliding, not about locks).
PROFILES: Final = ("full", "single")


@dataclass
class Plan:
    """What one generated test does, for the verdict."""

    test: str
    service: str
    strategy: str
    front: str  # sync | async | engine
    engine_fixture: bool = False
    ops: list[str] = field(default_factory=list)
    #: Tables written through each path that commits for real.
    writes_engine: list[str] = field(default_factory=list)
    writes_own: list[str] = field(default_factory=list)
    writes_session: list[str] = field(default_factory=list)
    #: DDL: (path, "table"|"column", table)
    ddl: list[list[str]] = field(default_factory=list)
    fails: bool = False


@dataclass
class _Locks:
    """What the session holds locks on (until its transaction ends)."""

    tables: set[str] = field(default_factory=set)
    exclusive: set[str] = field(default_factory=set)
    counter_row: bool = False

    def clear(self) -> None:
        self.tables.clear()
        self.exclusive.clear()
        self.counter_row = False


def _insert_sql(table: str, tag: str, rng: random.Random) -> str:
    if table == "parent":
        return f"INSERT INTO parent (name) VALUES ('{tag}')"
    if table == "child":
        # Sessions reference parent 2, other connections parent 1: a FOR UPDATE on
        # parent 1 by a second connection never waits on the session's key lock.
        return f"INSERT INTO child (parent_id, note) VALUES (PARENT, '{tag}')"
    if table == "counter":
        return f"INSERT INTO counter (n) VALUES ({rng.randint(1, 99)})"
    return f"INSERT INTO note (body) VALUES ('{tag}')"


class _TestWriter:
    """Emits one test function's source, keeping the lock bookkeeping straight."""

    def __init__(self, rng: random.Random, plan: Plan, profile: str) -> None:
        self.rng = rng
        self.plan = plan
        self.profile = profile
        self.lines: list[str] = []
        self.locks = _Locks()
        self.counter = 0
        self.aw = "await " if plan.front == "async" else ""
        self.pg = plan.service == "postgres"

    # -- helpers ---------------------------------------------------------------------

    def emit(self, line: str, indent: int = 2) -> None:
        self.lines.append("    " * indent + line)

    def tag(self) -> str:
        self.counter += 1
        ident = re.sub(r"[^a-z0-9]", "", self.plan.test.replace(".py::test_", "t"))
        return f"{ident}_{self.counter}"

    def session_touch(self, table: str) -> None:
        self.locks.tables.add(table)
        if table == "child":
            self.locks.tables.add("parent")

    def session_ends_transaction(self) -> None:
        if self.plan.strategy != "rollback":
            self.locks.clear()

    # -- session operations -------------------------------------------------------------

    def s_exec(self, sql: str, indent: int = 2) -> None:
        self.emit(f'{self.aw}s.execute(text("{sql}"))', indent)

    def s_insert(self, indent: int = 2) -> None:
        table = self.rng.choice(
            [t for t in INSERTABLE if t not in self.locks.exclusive] or ["note"]
        )
        sql = _insert_sql(table, "s" + self.tag(), self.rng).replace("PARENT", "2")
        self.s_exec(sql, indent)
        self.session_touch(table)
        self.plan.writes_session.append(table)
        self.plan.ops.append(f"session insert {table}")

    def op_session(self) -> None:  # noqa: PLR0915 - one branch per operation
        choice = self.rng.choice(
            [
                "insert",
                "insert",
                "update",
                "delete",
                "commit",
                "rollback",
                "nested",
                "raise",
                "for_update",
                "ddl",
                "seq",
            ]
        )
        cm = "async with" if self.plan.front == "async" else "with"
        if choice == "insert":
            self.s_insert()
        elif choice == "update":
            self.s_exec("UPDATE counter SET n = n + 1 WHERE id = 1")
            self.session_touch("counter")
            self.locks.counter_row = True
            self.plan.writes_session.append("counter")
            self.plan.ops.append("session update counter")
        elif choice == "delete":
            self.s_exec("DELETE FROM child WHERE id = 1")
            self.session_touch("child")
            self.plan.writes_session.append("child")
            self.plan.ops.append("session delete child seed row")
        elif choice == "commit":
            self.emit(f"{self.aw}s.commit()")
            self.session_ends_transaction()
            self.plan.ops.append("session commit")
        elif choice == "rollback":
            self.emit(f"{self.aw}s.rollback()")
            self.session_ends_transaction()
            self.plan.ops.append("session rollback")
        elif choice == "nested":
            boom = self.rng.random() < 0.5
            self.emit("try:")
            self.emit(f"{cm} s.begin_nested():", 3)
            self.s_insert(4)
            if boom:
                self.emit('raise ChaosBoom("inside a savepoint")', 4)
            self.emit("except ChaosBoom:")
            self.emit("pass", 3)
            self.plan.ops.append("  (in a savepoint" + (", raised)" if boom else ")"))
        elif choice == "raise":
            self.emit("try:")
            self.s_insert(3)
            self.emit('raise ChaosBoom("mid-transaction")', 3)
            self.emit("except ChaosBoom:")
            self.emit(f"{self.aw}s.rollback()", 3)
            self.session_ends_transaction()
            self.plan.ops.append("  (raised mid-transaction, session rollback)")
        elif choice == "for_update":
            self.emit(
                f'({self.aw}s.execute(text("SELECT n FROM counter WHERE id = 1 FOR UPDATE"))).all()'
            )
            self.session_touch("counter")
            self.locks.counter_row = True
            self.plan.ops.append("session select counter for update")
        elif choice == "ddl" and self.pg:
            self.ddl("s")
        elif choice == "seq" and self.pg:
            self.s_exec("SELECT nextval('chaos_seq')")
            self.plan.ops.append("session nextval")
        else:
            self.s_insert()

    # -- second connections -------------------------------------------------------------

    def ddl(self, via: str) -> None:
        """CREATE TABLE or ALTER TABLE … ADD COLUMN through ``via`` (s, engine, own)."""
        tag = self.tag()
        # A foreign key ties parent and child: altering one needs the other unlocked too.
        held = set(self.locks.tables)
        if held & {"parent", "child"}:
            held |= {"parent", "child"}
        free = [t for t in INSERTABLE if via == "s" or t not in held]
        # The single profile (concurrent sessions, which must end green) leaves the
        # template's tables alone: a committed ALTER TABLE fails its test by design.
        if self.rng.random() < 0.5 or not free or self.profile == "single":
            sql = f"CREATE TABLE extra_{tag} (id integer PRIMARY KEY, v integer)"
            kind, table = "table", f"extra_{tag}"
        else:
            table = self.rng.choice(free)
            sql = f"ALTER TABLE {table} ADD COLUMN x_{tag} integer"
            kind = "column"
        if via == "s":
            self.s_exec(sql)
            if kind == "column":
                self.locks.exclusive.add(table)
            self.session_touch(table)
        else:
            self.emit(f"with {via}.begin() as c:")
            self.emit(f'c.execute(text("{sql}"))', 3)
        self.plan.ddl.append([{"s": "session"}.get(via, via), kind, table])
        self.plan.ops.append(f"{self.plan.ddl[-1][0]} {sql.split(' (')[0]}")

    def op_connection(self, via: str) -> None:
        """An operation through a second connection: the engine fixture or our own."""
        writes = self.plan.writes_engine if via == "engine" else self.plan.writes_own
        choice = self.rng.choice(
            ["insert", "insert", "raise", "for_update", "update", "ddl", "seq"]
        )
        if choice == "update" and self.locks.counter_row:
            choice = "insert"
        free = [t for t in INSERTABLE if t not in self.locks.exclusive]
        if "parent" in self.locks.exclusive:
            free = [t for t in free if t != "child"]
        if choice in ("insert", "raise"):
            if not free:
                return
            table = self.rng.choice(free)
            sql = _insert_sql(table, via[0] + self.tag(), self.rng).replace("PARENT", "1")
            if choice == "raise":
                self.emit("try:")
                self.emit(f"with {via}.begin() as c:", 3)
                self.emit(f'c.execute(text("{sql}"))', 4)
                self.emit('raise ChaosBoom("mid-transaction")', 4)
                self.emit("except ChaosBoom:")
                self.emit("pass", 3)
                self.plan.ops.append(f"{via} insert {table}, raised (rolled back)")
            else:
                self.emit(f"with {via}.begin() as c:")
                self.emit(f'c.execute(text("{sql}"))', 3)
                writes.append(table)
                self.plan.ops.append(f"{via} insert {table}")
        elif choice == "for_update":
            if "parent" in self.locks.exclusive:
                return
            self.emit(f"with {via}.begin() as c:")
            self.emit('c.execute(text("SELECT id FROM parent WHERE id = 1 FOR UPDATE")).all()', 3)
            self.plan.ops.append(f"{via} select parent 1 for update")
        elif choice == "update":
            if "counter" in self.locks.exclusive:
                return
            self.emit(f"with {via}.begin() as c:")
            self.emit('c.execute(text("UPDATE counter SET n = n + 10 WHERE id = 1"))', 3)
            writes.append("counter")
            self.plan.ops.append(f"{via} update counter seed row")
        elif choice == "ddl":
            self.ddl(via)
        elif choice == "seq" and self.pg:
            self.emit(f"with {via}.connect() as c:")
            self.emit("c.execute(text(\"SELECT nextval('chaos_seq')\"))", 3)
            self.plan.ops.append(f"{via} nextval")

    # -- the test -------------------------------------------------------------------------

    def write(self) -> str:  # noqa: PLR0912 - the test, line by line
        plan, rng = self.plan, self.rng
        svc = plan.service
        session_fixture = {"sync": f"{svc}_session", "async": f"{svc}_async_session"}.get(
            plan.front
        )
        vias = ["engine", "own"] if plan.front == "engine" else ["own"]
        if plan.front != "engine" and (self.profile == "full" and rng.random() < 0.6):
            vias.append("engine")
        if self.profile == "single":
            vias = ["engine"] if plan.front == "engine" else []
        plan.engine_fixture = "engine" in vias
        handle = session_fixture or f"{svc}_engine"
        args = ["request", f"{svc}_server"]
        if session_fixture:
            args.append(session_fixture)
        if plan.engine_fixture:
            args.append(f"{svc}_engine")
        for _ in range(rng.randint(2, 8)):
            if session_fixture and (not vias or rng.random() < 0.55):
                self.op_session()
            elif vias:
                self.op_connection(rng.choice(vias))
        if session_fixture and rng.random() < 0.5:
            self.emit(f"{self.aw}s.commit()")
            plan.ops.append("session commit")
        plan.fails = rng.random() < 0.15
        if plan.fails:
            self.emit('raise ChaosBoom("the test fails on purpose")')
            plan.ops.append("the test fails")
        body = self.lines or ["    " * 2 + "pass"]
        head: list[str] = []
        if plan.fails:
            head.append("@pytest.mark.xfail(raises=ChaosBoom, strict=True)")
        if plan.front == "async":
            head.append("@pytest.mark.asyncio")
        name = plan.test.rsplit("::", 1)[-1]
        head.append(f"{'async ' if plan.front == 'async' else ''}def {name}({', '.join(args)}):")
        head.append(f'    chaos_observe(request, {svc}_server, {handle}, "{svc}")')
        if session_fixture:
            head.append(f"    s = {session_fixture}")
        if plan.engine_fixture:
            head.append(f"    engine = {svc}_engine")
        head.append(f"    own = own_engine({svc}_server, {handle})")
        head.append("    try:")
        return "\n".join([*head, *body, "    finally:", "        own.dispose()", ""])


def generate_module(
    rng: random.Random,
    *,
    module: str,
    service: str,
    strategy: str,
    count: int,
    profile: str,
    marked: bool = False,
) -> tuple[str, list[Plan]]:
    """A test module of ``count`` random tests on ``service``; their plans."""
    plans: list[Plan] = []
    functions: list[str] = []
    fronts = ["sync", "sync", "async", "engine"]
    for index in range(count):
        plan = Plan(
            test=f"{module}::test_{index:03d}",
            service=service,
            strategy=strategy,
            front=rng.choice(fronts),
        )
        functions.append(_TestWriter(rng, plan, profile).write())
        plans.append(plan)
    header = (
        f'"""Generated by the chaos suite: {count} random tests on {service}, {strategy}."""\n\n'
        "import pytest\n"
        "from sqlalchemy import text\n\n"
        "from chaos_eyes import ChaosBoom, chaos_observe, own_engine\n\n"
        + (f'pytestmark = pytest.mark.isolation("{strategy}")\n' if marked else "")
        + "\n\n"
    )
    return header + "\n\n".join(functions), plans


def manifest(plans: list[Plan]) -> list[dict[str, object]]:
    return [asdict(plan) for plan in plans]
