"""The clone strategy's databases: made ahead of need, reset or dropped behind it.

A :class:`ClonePool` keeps ``size`` clones of the template ready, each with an Engine
already holding a warm connection, so a test pays only for taking one off a queue.
On PostgreSQL a clone given back is reset to the template's state in the background
and handed out again (:mod:`~pytest_integration_kit.isolation.clone_reset`): no
``CREATE DATABASE`` or ``DROP DATABASE`` per test. A clone the reset cannot vouch for
(the test changed the schema, left a connection open) — and every clone on MySQL,
whose copies replay the schema and cannot be reset this way — is dropped and a new one
made from the template, as before.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_integration_kit.isolation import tracking
from pytest_integration_kit.isolation.clone_reset import PostgresCloneReset
from pytest_integration_kit.isolation.errors import IsolationError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from pytest_integration_kit.isolation.databases import IsolatedDatabases

__all__ = ["Clone", "ClonePool"]


@dataclass
class Clone:
    """A database equal to the template, with an Engine already holding a connection."""

    name: str
    engine: Engine
    #: The fresh clone's catalog fingerprint (PostgreSQL): the reset compares with it.
    #: None: the clone is dropped after one use.
    reference: tuple[int, ...] | None = None
    #: How many tests had this database before the one that has it now.
    reused: int = 0


class ClonePool:
    """Clones of the template, made ahead of need and reset or dropped behind it.

    Three background threads: one resets used clones and hands them out again, one
    makes new ones when fewer than ``size`` are ready or on their way, one drops the
    ones that cannot be reset. Resets do not queue behind a ``CREATE DATABASE`` (tens to
    hundreds of milliseconds, while a reset takes one or two): a test waits for the
    clone the previous test gave back, not for a new one the pool is making. The maker
    waits while ``size`` used clones are still to be dropped, and a used clone's
    connection is closed unless it is reset, so neither connections nor databases pile
    up however fast tests go. A clone that failed is made again for the test that takes
    it: one failure (a busy template, a full server) fails at most that test.
    """

    def __init__(self, databases: IsolatedDatabases, *, size: int = 2) -> None:
        if size < 1:
            raise ValueError("a clone pool needs size >= 1")
        self.databases = databases
        self.size = size
        postgres = databases.admin.service == "postgres"
        self._reset = PostgresCloneReset(f'"{tracking.POSTGRES_SCHEMA}"') if postgres else None
        #: How many used clones were reset and handed out again, and how many dropped.
        self.reset_count = 0
        self.dropped_count = 0
        self._ready: queue.Queue[Clone | BaseException] = queue.Queue()
        self._returned: queue.Queue[Clone | None] = queue.Queue()  # to reset; None: stop
        self._doomed: queue.Queue[Clone | None] = queue.Queue()  # None: stop
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pending = 0  # clones ready, being made or being reset: not taken
        self._unfinished_drops = 0  # given back, not dropped yet
        self._making = threading.Event()
        self._count_lock = threading.Lock()
        self._threads = [
            threading.Thread(
                target=target, name=f"integration-{role}-{databases.owner}", daemon=True
            )
            for role, target in (
                ("clones", self._make_loop),
                ("resets", self._reset_loop),
                ("drops", self._drop_loop),
            )
        ]
        for thread in self._threads:
            thread.start()

    def _make(self) -> Clone:
        name = self.databases.next_clone_name()
        self.databases.create_from_template(name)
        engine = self.databases.admin.kit_engine(self.databases.endpoint, name)
        try:
            with engine.connect() as conn:  # stays in the engine's pool, warmed up
                conn.exec_driver_sql(self.databases.admin.warm_statement)
                conn.commit()
            reference = self._reset.reference(engine) if self._reset is not None else None
        except BaseException:
            engine.dispose()
            with contextlib.suppress(Exception):  # else IsolatedDatabases.close drops it
                self.databases.drop(name)
            raise
        return Clone(name, engine, reference)

    def _make_loop(self) -> None:
        while not self._stopping.is_set():
            with self._count_lock:
                short = self._pending < self.size and self._unfinished_drops < self.size
                if short:
                    self._pending += 1
                    self._making.set()
            if not short:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                self._ready.put(self._make())
            except BaseException as exc:  # handed to the taker, who tries once more
                self._ready.put(exc)
            finally:
                self._making.clear()

    def _reset_loop(self) -> None:
        while True:
            used = self._returned.get()
            if used is None:
                return
            self._recycle(used)

    def _recycle(self, clone: Clone) -> None:
        """Reset a used clone and hand it out again, or drop it."""
        assert self._reset is not None
        assert clone.reference is not None
        reason: str | None = "stopping"
        if not self._stopping.is_set():
            # Engines of the test's own on this database (async ones): closed first.
            self.databases.dispose_engines(clone.name)
            try:
                reason = self._reset.reset(clone.engine, clone.reference)
            except Exception as exc:  # the test broke something the reset needs
                reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            clone.reused += 1
            self.reset_count += 1
            self._ready.put(clone)
            return
        with self._count_lock:
            self._pending -= 1
        self._doom(clone)

    def _doom(self, clone: Clone) -> None:
        clone.engine.dispose()
        with self._count_lock:
            self._unfinished_drops += 1
            self.dropped_count += 1
        self._doomed.put(clone)
        self._wake.set()

    def _drop_loop(self) -> None:
        while True:
            clone = self._doomed.get()
            if clone is None:
                return
            try:
                self._drop(clone)
            finally:
                with self._count_lock:
                    self._unfinished_drops -= 1
                self._wake.set()

    def _drop(self, clone: Clone) -> None:
        clone.engine.dispose()
        # A failure here is retried by IsolatedDatabases.close, which drops what is left.
        with contextlib.suppress(Exception):
            self.databases.drop(clone.name)

    def take(self, timeout: float = 120.0) -> Clone:
        """A clone equal to the template; waits for the background thread if none is ready."""
        started = time.monotonic()
        item = self._ready.get(timeout=timeout)
        with self._count_lock:
            self._pending -= 1
            short = self._pending < self.size
        if short:  # else the maker sleeps on: no thread switch per test for nothing
            self._wake.set()
        if isinstance(item, BaseException):
            try:  # once more, now: the cause may have passed (a busy template, a full server)
                return self._make()
            except Exception as again:
                raise IsolationError(
                    f"cloning the template failed twice ({time.monotonic() - started:.1f} s): "
                    f"in the background: {item}; again for this test: {again}"
                ) from again
        return item

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until the pool is full and nothing is being reset or dropped (benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._count_lock:
                idle = (
                    self._pending >= self.size
                    and self._ready.qsize() >= self._pending
                    and self._unfinished_drops == 0
                    and not self._making.is_set()
                )
            if idle:
                return True
            time.sleep(0.005)
        return False

    def give_back(self, clone: Clone) -> None:
        """Hand a used clone to the background: reset for reuse, or dropped.

        A connection still checked out of its engine (a leak) rules the reset out: its
        connections are closed now and the database is dropped.
        """
        reusable = (
            self._reset is not None
            and clone.reference is not None
            and not clone.engine.pool.checkedout()  # type: ignore[attr-defined]
            and not self._stopping.is_set()
        )
        if not reusable:
            self._doom(clone)
            return
        with self._count_lock:
            self._pending += 1
        self._returned.put(clone)  # wakes the reset thread; the maker has nothing to do

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._returned.put(None)
        self._doomed.put(None)
        for thread in self._threads:
            thread.join(timeout=60)
        leftovers: list[Clone] = []
        for source in (self._ready, self._returned, self._doomed):
            while True:
                try:
                    item = source.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, Clone):
                    leftovers.append(item)
        for clone in leftovers:
            self._drop(clone)
