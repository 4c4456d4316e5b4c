"""The clone strategy's databases: fresh ones from the template, made ahead of need.

A :class:`ClonePool` keeps ``size`` clones of the template ready, each with an Engine
already holding a warm connection, so a test pays only for taking one off a queue;
used ones are dropped in the background.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from pytest_integration_kit.isolation.databases import IsolatedDatabases

__all__ = ["Clone", "ClonePool"]


@dataclass
class Clone:
    """A fresh database from the template, with an Engine already holding a connection."""

    name: str
    engine: Engine


class ClonePool:
    """Fresh databases from the template, made ahead of need and dropped behind it.

    One background thread keeps ``size`` clones ready (each with a connected Engine),
    another drops the ones given back, so a test pays only for taking one off the
    queue. A used clone's connections are closed when it is given back and the maker
    waits while ``size`` used clones are still to be dropped, so neither connections
    nor databases pile up however fast tests go. A clone that failed is made again
    for the test that takes it: one failure (a busy template, a full server) fails
    at most that test, never every later one.
    """

    def __init__(self, databases: IsolatedDatabases, *, size: int = 2) -> None:
        if size < 1:
            raise ValueError("a clone pool needs size >= 1")
        self.databases = databases
        self.size = size
        self._ready: queue.Queue[Clone | BaseException] = queue.Queue()
        self._doomed: queue.Queue[Clone | None] = queue.Queue()  # None: stop
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pending = 0  # clones made but not yet taken
        self._unfinished_drops = 0  # given back, not dropped yet
        self._making = threading.Event()
        self._count_lock = threading.Lock()
        self._threads = [
            threading.Thread(
                target=target, name=f"integration-{role}-{databases.owner}", daemon=True
            )
            for role, target in (("clones", self._run), ("drops", self._drop_loop))
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
        except BaseException:
            engine.dispose()
            with contextlib.suppress(Exception):  # else IsolatedDatabases.close drops it
                self.databases.drop(name)
            raise
        return Clone(name, engine)

    def _run(self) -> None:
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
        """A fresh clone; waits for the background thread if none is ready yet."""
        from pytest_integration_kit.isolation.databases import IsolationError  # noqa: PLC0415 - databases imports this module

        started = time.monotonic()
        item = self._ready.get(timeout=timeout)
        with self._count_lock:
            self._pending -= 1
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
        """Wait until the pool is full and nothing is being dropped (for benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._count_lock:
                idle = (
                    self._pending >= self.size
                    and self._unfinished_drops == 0
                    and not self._making.is_set()
                )
            if idle:
                return True
            time.sleep(0.005)
        return False

    def give_back(self, clone: Clone) -> None:
        """Close a used clone's connections now; drop the database in the background."""
        clone.engine.dispose()
        with self._count_lock:
            self._unfinished_drops += 1
        self._doomed.put(clone)

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._doomed.put(None)
        for thread in self._threads:
            thread.join(timeout=60)
        leftovers: list[Clone] = []
        for source in (self._ready, self._doomed):
            while True:
                try:
                    item = source.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, Clone):
                    leftovers.append(item)
        for clone in leftovers:
            self._drop(clone)
