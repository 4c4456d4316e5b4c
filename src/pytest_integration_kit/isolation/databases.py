"""The isolated databases of one process on one SQL server.

One :class:`IsolatedDatabases` per (server, schema) per process: it builds the
template once (keyed by the schema's fingerprint, under a server-wide lock, so
concurrent workers and sessions build it once between them), creates this process's
own database from it, keeps an Engine per database, hands out clones from a
:class:`ClonePool` and drops everything it made at :meth:`close` — even with
connections still open.

What the databases are called is :mod:`~.naming`; how a template is built and pruned,
:mod:`~.template_databases`; how an AsyncEngine is made for each driver,
:mod:`~.async_engines`; what cleaning after a test does, :mod:`~.cleaning`; the
errors, :mod:`~.errors`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pytest_integration_kit.isolation import crossloop
from pytest_integration_kit.isolation.admin import CleanReport, DatabaseAdmin, admin_for
from pytest_integration_kit.isolation.async_engines import async_driver, new_async_engine
from pytest_integration_kit.isolation.cleaning import clean_database, leftovers
from pytest_integration_kit.isolation.clone_pool import Clone, ClonePool
from pytest_integration_kit.isolation.errors import IsolationError, LeakError
from pytest_integration_kit.isolation.kept import KeptDatabases
from pytest_integration_kit.isolation.loops import LoopEngines
from pytest_integration_kit.isolation.naming import (
    MAX_NAME_BYTES,
    NAME_PREFIX,
    database_name,
    owner_token,
)
from pytest_integration_kit.isolation.ownership import (
    DEFAULT_LEASE_SECONDS,
    LeaseClock,
    abandoned,
    parse_owner,
)
from pytest_integration_kit.isolation.schema import SchemaSource
from pytest_integration_kit.isolation.template_databases import (
    TEMPLATE_UNUSED_DAYS,
    TemplateToBuild,
    build_template,
    prune_templates,
    template_label,
    template_name,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from pytest_integration_kit.services.endpoint import Endpoint

# Clone, ClonePool, IsolationError, LeakError, MAX_NAME_BYTES, database_name and
# owner_token live in the modules named above; they are importable from here as before.
__all__ = [
    "MAX_NAME_BYTES",
    "Clone",
    "ClonePool",
    "IsolatedDatabases",
    "IsolationError",
    "LeakError",
    "database_name",
    "owner_token",
]


class IsolatedDatabases:
    """Template, worker database, engines and clones of one process on one server."""

    def __init__(
        self,
        endpoint: Endpoint,
        source: SchemaSource | None = None,
        *,
        owner: str | None = None,
        admin: DatabaseAdmin | None = None,
        keep: bool = False,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.endpoint = endpoint
        #: The server's clock, and how long the databases made here stay this process's
        #: without a :meth:`renew`.
        self.clock = LeaseClock(lease_seconds)
        #: The server is kept for later runs: so is the worker database (leased, see
        #: :mod:`~pytest_integration_kit.isolation.kept`), instead of one per run.
        self.kept = KeptDatabases(self) if keep else None
        self.source = source or SchemaSource()
        self.owner = owner or owner_token()
        self.admin = admin or admin_for(endpoint.service)
        self._lock = threading.RLock()
        self._admin_engine: Engine | None = None
        self._template: str | None = None
        #: True when this process built the template, False when it found it ready.
        self.template_built: bool | None = None
        self._worker: str | None = None
        #: What :meth:`prepare` failed with, for the next :meth:`worker_database` to raise.
        self._prepare_error: BaseException | None = None
        #: Set while :meth:`prepare` runs: a template to build is left to the next user.
        self._preparing = False
        self._engines: dict[str, Engine] = {}
        self._async_engines: dict[tuple[str, str], AsyncEngine] = {}
        #: Pooled AsyncEngines for tests sharing a wider-than-function event loop.
        self.loop_engines = LoopEngines()
        self._made: list[str] = []
        self._pool: ClonePool | None = None
        self._clone_counter = 0
        #: How many databases this object made from the template (worker + clones).
        self.created = 0

    # -- names ----------------------------------------------------------------------

    def template_name(self, fingerprint: str) -> str:
        return template_name(fingerprint)

    def next_clone_name(self) -> str:
        with self._lock:
            self._clone_counter += 1
            return database_name(self.owner, f"c{self._clone_counter}")

    # -- admin ----------------------------------------------------------------------

    @property
    def admin_engine(self) -> Engine:
        with self._lock:
            if self._admin_engine is None:
                self._admin_engine = self.admin.admin_engine(self.endpoint)
            return self._admin_engine

    def template(self, conn: Connection | None = None) -> str:
        """The template's name, building it first unless an identical one exists.

        ``conn``: an admin connection to do it on (else one is opened and closed).
        """
        with self._lock:
            if self._template is not None:
                return self._template
            fingerprint = self.source.fingerprint(self.admin_engine)
            name = self.template_name(fingerprint)
            with self._admin_connection(conn) as admin:
                self.admin.lock(admin, name)
                try:
                    state = self.admin.template_state(admin, name)
                    if state == "ready":
                        self.template_built = False
                    elif self._preparing:
                        raise TemplateToBuild(name)
                    else:
                        if state == "incomplete":  # its builder died half-way
                            self.admin.drop(admin, name)
                        build_template(self, admin, name, fingerprint)
                        self.template_built = True
                    self.admin.label(admin, name, template_label())
                finally:
                    self.admin.unlock(admin, name)
            if self.template_built:
                self.prune_templates(keep=name)
            self._template = name
            return name

    @contextmanager
    def _admin_connection(self, conn: Connection | None) -> Iterator[Connection]:
        """``conn`` as it is (its owner closes it), or a new admin connection, closed after."""
        if conn is not None:
            yield conn
            return
        with self.admin_engine.connect() as opened:
            yield opened

    def prune_templates(self, *, keep: str, unused_days: int = TEMPLATE_UNUSED_DAYS) -> list[str]:
        """Drop templates of other schemas that no session has used for ``unused_days``.

        Long-lived servers (url, reuse) would otherwise keep one template per schema
        version forever. Unlabelled templates are left alone.
        """
        return prune_templates(self.admin, self.admin_engine, keep=keep, unused_days=unused_days)

    def create_from_template(self, name: str, conn: Connection | None = None) -> None:
        """Make ``name`` from the template (on ``conn`` when given, else on a new one)."""
        with self._admin_connection(conn) as admin:
            template = self.template(admin)
            self.admin.drop(admin, name)  # a leftover of a crashed run with our name
            label = self.clock.label(lambda: self.admin.server_time(admin))
            self.admin.clone(admin, self.endpoint, template, name, label=label)
            self.admin.database_defaults(admin, name)
        with self._lock:
            self._made.append(name)
            self.created += 1

    def dispose_engines(self, name: str) -> None:
        """Close the connections this process holds on ``name`` (its engines go)."""
        with self._lock:
            engine = self._engines.pop(name, None)
            async_engines = [e for (n, _), e in self._async_engines.items() if n == name]
            self._async_engines = {k: e for k, e in self._async_engines.items() if k[0] != name}
        if engine is not None:
            engine.dispose()
        for async_engine in async_engines:
            crossloop.dispose(async_engine)

    def drop(self, name: str) -> None:
        self.dispose_engines(name)
        with self.admin_engine.connect() as conn:
            self.admin.drop(conn, name)
        with self._lock:
            if name in self._made:
                self._made.remove(name)

    # -- databases ------------------------------------------------------------------

    def renew(self) -> None:
        """Push the lease of every database made here ``lease_seconds`` ahead (an
        :class:`~.workspace.IsolationWorkspace` does, every third of the lease)."""
        with self._lock:
            made = list(self._made)
        if not made:
            return
        with self.admin_engine.connect() as conn:
            label = self.clock.label(lambda: self.admin.server_time(conn))
            for name in made:
                self.admin.label(conn, name, label)

    def reap_orphans(self, conn: Connection | None = None) -> list[str]:
        """Drop databases whose makers are gone (kill -9, crash, a CI job cancelled).

        On this host, a dead process id is enough; a database made on another host is
        dropped only once its lease has run out (:func:`~.ownership.abandoned`). Live
        sessions' databases, and unlabelled ones, are never touched. ``conn``: an admin
        connection to do it on (else one is opened and closed).
        """
        reaped: list[str] = []
        with self._admin_connection(conn) as admin:
            now = self.clock.now(lambda: self.admin.server_time(admin))
            for name, label in self.admin.labelled(admin, NAME_PREFIX).items():
                owner = parse_owner(label)
                if owner is not None and abandoned(owner, now=now):
                    self.admin.drop(admin, name)
                    reaped.append(name)
        return reaped

    def worker_database(self) -> str:
        """This process's own database: made from the template on first use, or, on a
        kept server, a kept one leased for the session."""
        with self._lock:
            if self._worker is not None:
                return self._worker
            error, self._prepare_error = self._prepare_error, None
            if error is not None:  # once, as if this call had failed; the next one retries
                raise error
            # One admin connection for all of it (each new one is a backend start and a
            # SCRAM exchange): on a kept server, the one that then holds the lease.
            conn: Connection | None = self.admin_engine.connect()
            try:
                self.reap_orphans(conn)
                template = self.template(conn)
                if self.kept is not None:
                    self._worker = self.kept.acquire(template, conn)
                    conn = None  # the lease's now: closed when it ends
                else:
                    name = database_name(self.owner)
                    self.create_from_template(name, conn)
                    self._worker = name
            finally:
                if conn is not None:
                    conn.close()
            return self._worker

    def prepare(self) -> None:
        """Make (or lease) the worker database now, ahead of its first use: for a thread
        started when it is known to be needed. Its first user waits for it (the same
        lock); a failure is kept and raised to that user instead of being made twice.

        Only from a ready template: building one runs the user's schema, migrations and
        seed code, which stays where it always ran (the first user's call).
        """
        with self._lock:
            if self._worker is not None:
                return
            self._preparing = True
            try:
                self.worker_database()
            except TemplateToBuild:
                pass
            except Exception as exc:  # the test that needs it says what went wrong
                self._prepare_error = exc
            finally:
                self._preparing = False

    def engine(self, database: str | None = None) -> Engine:
        """The Engine on ``database`` (default: the worker database), one per database."""
        name = database or self.worker_database()
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = self.admin.kit_engine(self.endpoint, name, pool_pre_ping=False)
                self._engines[name] = engine
            return engine

    def async_driver(self) -> str:
        """The first installed asyncio driver for this kind of server."""
        return async_driver(self.admin, self.endpoint.service)

    def async_engine(self, database: str | None = None, driver: str | None = None) -> AsyncEngine:
        """An AsyncEngine on ``database``, one per database and driver, made as its driver
        needs (:mod:`~pytest_integration_kit.isolation.async_engines`); sharing it saves
        each test the dialect's first-connect queries."""
        name = database or self.worker_database()
        chosen = driver or self.async_driver()
        with self._lock:
            engine = self._async_engines.get((name, chosen))
            if engine is None:
                engine = new_async_engine(self, name, chosen)
                self._async_engines[(name, chosen)] = engine
            return engine

    def clean(self, database: str | None = None) -> CleanReport:
        """Empty the tables written since the last clean and restore their seed rows.

        The report names the tables other connections than the kit's wrote to, and
        those whose columns changed (their seed rows are not restored: :meth:`rebuild`).
        """
        return clean_database(self, database or self.worker_database())

    def rebuild(self, name: str) -> None:
        """Make ``name`` anew from the template (after a test changed its schema)."""
        if self.kept is not None and name == self.kept.name:
            self.kept.remake(name)
            return
        self.drop(name)
        self.create_from_template(name)

    def clone_pool(self, size: int = 2) -> ClonePool:
        with self._lock:
            if self._pool is None:
                self._pool = ClonePool(self, size=size)
            return self._pool

    def leaks(self, database: str | None = None, engine: Engine | None = None) -> list[str]:
        """What is left checked out (of ``engine``) or inside a transaction on ``database``."""
        name = database or self.worker_database()
        if engine is None:
            with self._lock:
                engine = self._engines.get(name)
        return leftovers(self, name, engine)

    def describe(self) -> str:
        """One line for people: the template, built or reused, and what was made from it."""
        where = f"{self.endpoint.service} {self.endpoint.address}"
        if self._template is None:
            return f"{where}: no database made"
        how = "built" if self.template_built else "reused"
        line = f"{where}: template {self._template} {how}, {self.created} database(s) made from it"
        if self.kept is not None and self.kept.name is not None:
            line += f"; kept database {self.kept.name} {'reused' if self.kept.reused else 'made'}"
        return line

    def close(self) -> None:
        """Dispose every engine and drop every database this object made (a kept
        worker database stays: its lease ends)."""
        if self._pool is not None:
            self._pool.close()
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
            async_engines, self._async_engines = list(self._async_engines.values()), {}
            made, self._made = list(self._made), []
        for engine in engines:
            engine.dispose()
        for async_engine in async_engines:
            crossloop.dispose(async_engine)
        if made:
            with self.admin_engine.connect() as conn:
                for name in made:
                    self.admin.drop(conn, name)
        if self.kept is not None:  # the kept database stays, cleaned after the last test
            self.kept.release()
        if self._admin_engine is not None:
            self._admin_engine.dispose()
