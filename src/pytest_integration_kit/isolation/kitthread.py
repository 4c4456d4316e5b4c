"""The kit's own event loop, in a daemon thread, and the hand-over of work to it.

:mod:`~pytest_integration_kit.isolation.kitloop` opens asyncpg connections on this loop
and keeps them between the tests' loops; every coroutine on them is handed here from
the test's loop and its outcome handed back (:meth:`KitLoop.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["KIT_LOOP", "KitLoop"]


class KitLoop:
    """One event loop run by a daemon thread, started on first use (again in a forked
    child, which has no copy of the thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, started if it is not (or if its thread is gone: a
        connection of the old loop then fails on its next use instead of hanging)."""
        with self._lock:
            if (
                self._loop is None
                or self._thread is None
                or self._pid != os.getpid()
                or not self._thread.is_alive()
            ):
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_run_forever, args=(loop,), name="integration-kit-asyncpg", daemon=True
                )
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def in_thread(self) -> bool:
        """Whether the caller is the loop's own thread."""
        return self._thread is threading.current_thread()

    async def run(
        self,
        coro: Coroutine[Any, Any, Any],
        discard: Callable[[Any], object] | None = None,
    ) -> Any:
        """Await ``coro``, run on the kit's loop, from the running (test's) loop;
        cancelling this await cancels it there. ``discard`` is given (on the kit's
        loop) a result nobody waits for any more: a connection opened too late."""
        if self.in_thread():  # awaiting it here would wait for ourselves
            coro.close()
            raise RuntimeError("the kit's asyncpg loop cannot wait for its own work")
        kit = self.loop()
        caller = asyncio.get_running_loop()
        handover = _Handover(coro, caller.create_future(), caller, kit, discard)
        kit.call_soon_threadsafe(handover.start)
        try:
            return await handover.outcome
        except asyncio.CancelledError:
            handover.cancel()
            raise

    def call_soon(self, function: Callable[[], object]) -> None:
        """Call ``function`` on the loop's thread, without waiting for it."""
        if self.in_thread():
            function()
        else:
            self.loop().call_soon_threadsafe(function)

    def stop(self) -> None:
        """Stop the loop and its thread (the next use starts another); for a loop
        whose connections are all closed."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None or self._pid != os.getpid():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


class _Handover:
    """One coroutine handed from a caller's loop to the kit's, and its outcome back.

    Leaner than ``run_coroutine_threadsafe`` + ``wrap_future`` (no concurrent future,
    no lock, no done callbacks): each side's thread is woken once per hand-over.
    """

    __slots__ = ("_caller", "_coro", "_discard", "_kit", "_task", "outcome")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        outcome: asyncio.Future[Any],
        caller: asyncio.AbstractEventLoop,
        kit: asyncio.AbstractEventLoop,
        discard: Callable[[Any], object] | None,
    ) -> None:
        self._coro, self.outcome, self._caller, self._kit = coro, outcome, caller, kit
        self._discard = discard
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        """On the kit's loop: run the coroutine (unless its caller gave up already)."""
        if self.outcome.cancelled():
            self._coro.close()
            return
        self._task = self._kit.create_task(self._run())

    async def _run(self) -> None:
        try:
            result = await self._coro
        except BaseException as error:  # the caller's to raise, not this loop's
            self._send(error, None)
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            self._send(None, result)

    def _send(self, error: BaseException | None, result: Any) -> None:
        try:
            self._caller.call_soon_threadsafe(self._deliver, error, result)
        except RuntimeError:  # the caller's loop is closed: nobody waits for it
            self._abandon(error, result)

    def _abandon(self, error: BaseException | None, result: Any) -> None:
        if error is None and self._discard is not None:
            self._discard(result)

    def _deliver(self, error: BaseException | None, result: Any) -> None:
        """On the caller's loop: the outcome of the coroutine becomes the future's."""
        if self.outcome.done():  # its waiter was cancelled
            with contextlib.suppress(RuntimeError):  # a kit loop gone took it along
                self._kit.call_soon_threadsafe(self._abandon, error, result)
            return
        if isinstance(error, asyncio.CancelledError):
            self.outcome.cancel()
        elif error is not None:
            self.outcome.set_exception(error)
        else:
            self.outcome.set_result(result)

    def cancel(self) -> None:
        """On the caller's loop, its wait cancelled: cancel the work on the kit's loop
        (queued after :meth:`start`, so it finds the task started or never started)."""
        # A kit loop that is gone took its work with it.
        with contextlib.suppress(RuntimeError):
            self._kit.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


#: The process's loop for asyncpg connections kept between tests.
KIT_LOOP = KitLoop()
