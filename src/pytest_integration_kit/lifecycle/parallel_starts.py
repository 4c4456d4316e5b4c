"""Starting servers in parallel: one start per request, each in a thread of a pool.

Equal requests share one start (and its outcome, a failure too); whoever asks later
waits for the same :class:`~concurrent.futures.Future`.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_integration_kit.backends.base import RunningServer
    from pytest_integration_kit.lifecycle.requests import ServerRequest

__all__ = ["ParallelStarts"]


class ParallelStarts:
    """The starts begun so far, by request; ``obtain`` runs each in a pool thread."""

    def __init__(self, obtain: Callable[[ServerRequest], RunningServer]) -> None:
        self._obtain = obtain
        self._lock = threading.Lock()
        self._futures: dict[ServerRequest, Future[RunningServer]] = {}
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="integration-start")

    def begin(self, request: ServerRequest) -> Future[RunningServer]:
        """The start of ``request``, begun now unless it was already."""
        with self._lock:
            future = self._futures.get(request)
            if future is None:
                future = self._executor.submit(self._obtain, request)
                self._futures[request] = future
            return future

    def of(self, request: ServerRequest) -> Future[RunningServer] | None:
        """The start of ``request`` if one was begun."""
        with self._lock:
            return self._futures.get(request)

    def succeeded(self, request: ServerRequest) -> RunningServer | None:
        """The server ``request`` got, if its start is over and succeeded."""
        future = self.of(request)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def running(self) -> list[RunningServer]:
        """Every server whose start is over and succeeded."""
        with self._lock:
            futures = list(self._futures.values())
        return [f.result() for f in futures if f.done() and f.exception() is None]

    def settle(self) -> None:
        """Wait until every start begun has succeeded or failed (nothing stays half-way)."""
        with self._lock:
            futures = list(self._futures.values())
        for future in futures:
            future.exception()

    def shutdown(self) -> None:
        """Wait for the pool's threads to end (after :meth:`settle`, at once)."""
        self._executor.shutdown(wait=True)
