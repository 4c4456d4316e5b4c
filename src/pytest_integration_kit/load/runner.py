"""Run a callable N times at a concurrency and measure it: the engine of ``load``.

:class:`LoadRunner` runs a sync callable on a pool of threads, or a coroutine function
on asyncio tasks (in a fresh event loop, or in the running one with
:meth:`LoadRunner.run_async`), times every call with ``time.perf_counter`` and returns a
:class:`~pytest_integration_kit.load.result.LoadResult`. A call that raises is counted
as an error (the first one's repr kept), never dropped. Nothing here imports pytest.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.load.resources import NOT_SAMPLED, Resources
from pytest_integration_kit.load.result import LoadResult, latency_figures

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_integration_kit.load.resources import ResourceSampler

__all__ = ["LoadError", "LoadRunner"]


class LoadError(Exception):
    """The load block could not be measured: a warm-up call failed, or ``fn`` returned
    a coroutine where the block runs threads."""


@dataclass
class _Calls:
    """What the workers of one block record (shared between them)."""

    n: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    first_exception: BaseException | None = None
    #: A BaseException that is not an Exception (KeyboardInterrupt, pytest.fail's): stop.
    fatal: BaseException | None = None
    awaitable_returned: bool = False
    issued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        """Claim the next call; False once all ``n`` are claimed or a fatal error came."""
        with self.lock:
            if self.issued >= self.n or self.fatal is not None:
                return False
            self.issued += 1
            return True

    def record(self, seconds: float, exc: BaseException | None) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if exc is not None:
                self.errors += 1
                if self.first_error is None:
                    text = repr(exc)
                    self.first_error = text if len(text) <= 500 else text[:499] + "…"
                    self.first_exception = exc


def _check(n: int, concurrency: int, warmup: int) -> None:
    checks = (("n", n, 1), ("concurrency", concurrency, 1), ("warmup", warmup, 0))
    for label, value, least in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"load: {label}={value!r}; allowed: an integer >= {least}")


def _is_async(fn: Callable[[], Any]) -> bool:
    target = getattr(fn, "func", fn)  # functools.partial
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _thread_calls(fn: Callable[[], Any], n: int, concurrency: int) -> tuple[_Calls, float]:
    calls = _Calls(n)

    def worker() -> None:
        while calls.take():
            exc: BaseException | None = None
            started = time.perf_counter()
            try:
                out = fn()
                if inspect.isawaitable(out):
                    calls.awaitable_returned = True
                    close = getattr(out, "close", None)
                    if close is not None:
                        close()  # never awaited: no "coroutine was never awaited" warning
            except Exception as error:
                exc = error
            except BaseException as error:  # stop the block, re-raised in the caller
                calls.fatal = error
                return
            calls.record(time.perf_counter() - started, exc)

    workers = [
        threading.Thread(target=worker, name=f"integration-load-{i}", daemon=True)
        for i in range(min(concurrency, n))
    ]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return calls, time.perf_counter() - started


async def _task_calls(fn: Callable[[], Any], n: int, concurrency: int) -> tuple[_Calls, float]:
    calls = _Calls(n)

    async def worker() -> None:
        while calls.take():
            exc: BaseException | None = None
            started = time.perf_counter()
            try:
                out = fn()
                if inspect.isawaitable(out):
                    await out
            except Exception as error:
                exc = error
            calls.record(time.perf_counter() - started, exc)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return calls, time.perf_counter() - started


class LoadRunner:
    """Runs load blocks; ``runner(fn, n=…, concurrency=…)`` or ``await runner.run_async(…)``.

    ``sampler`` makes a :class:`~pytest_integration_kit.load.resources.ResourceSampler`
    per block (None: resources are not sampled); ``on_result`` hears every result (the
    pytest fixture collects them for the summary).
    """

    def __init__(
        self,
        *,
        sampler: Callable[[], ResourceSampler] | None = None,
        on_result: Callable[[LoadResult], None] | None = None,
    ) -> None:
        self.sampler = sampler
        self.on_result = on_result
        self.results: list[LoadResult] = []

    def __call__(
        self,
        fn: Callable[[], Any],
        *,
        n: int = 100,
        concurrency: int = 1,
        warmup: int = 0,
        name: str | None = None,
    ) -> LoadResult:
        """Call ``fn`` ``n`` times, ``concurrency`` at a time, and measure the calls.

        A sync ``fn`` runs on ``concurrency`` threads; a coroutine function on as many
        asyncio tasks in a fresh event loop (inside an async test, use
        :meth:`run_async`, which runs them in the test's loop). ``warmup`` calls go
        first, unmeasured; one that fails raises :class:`LoadError`.
        """
        _check(n, concurrency, warmup)
        if _is_async(fn):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(
                    self.run_async(fn, n=n, concurrency=concurrency, warmup=warmup, name=name)
                )
            raise LoadError(
                "load(...) was given a coroutine function inside a running event loop: "
                "use `await load.run_async(...)` to run it in this loop"
            )
        if warmup:
            calls, _ = _thread_calls(fn, warmup, concurrency)
            self._check_warmup(calls, warmup)
        sampler = self._start_sampler()
        try:
            calls, seconds = _thread_calls(fn, n, concurrency)
        finally:
            resources = sampler.stop() if sampler is not None else NOT_SAMPLED
        if calls.awaitable_returned:
            raise LoadError(
                "load(...) ran fn on threads and it returned an awaitable, which was not "
                "awaited: pass an `async def` function, or use `await load.run_async(...)`"
            )
        return self._finish(
            calls,
            seconds=seconds,
            name=name,
            concurrency=concurrency,
            mode="threads",
            resources=resources,
        )

    async def run_async(
        self,
        fn: Callable[[], Any],
        *,
        n: int = 100,
        concurrency: int = 1,
        warmup: int = 0,
        name: str | None = None,
    ) -> LoadResult:
        """Call ``fn`` ``n`` times on ``concurrency`` asyncio tasks of the running loop,
        awaiting what it returns; measured as :meth:`__call__` does."""
        _check(n, concurrency, warmup)
        if warmup:
            calls, _ = await _task_calls(fn, warmup, concurrency)
            self._check_warmup(calls, warmup)
        sampler = await asyncio.to_thread(self._start_sampler)
        try:
            calls, seconds = await _task_calls(fn, n, concurrency)
        finally:
            resources = (
                await asyncio.to_thread(sampler.stop) if sampler is not None else (NOT_SAMPLED)
            )
        return self._finish(
            calls,
            seconds=seconds,
            name=name,
            concurrency=concurrency,
            mode="asyncio",
            resources=resources,
        )

    def _start_sampler(self) -> ResourceSampler | None:
        if self.sampler is None:
            return None
        sampler = self.sampler()
        sampler.start()
        return sampler

    @staticmethod
    def _check_warmup(calls: _Calls, warmup: int) -> None:
        if calls.fatal is not None:
            raise calls.fatal
        if calls.errors:
            raise LoadError(
                f"load: {calls.errors} of {warmup} warm-up calls failed (nothing measured); "
                f"first: {calls.first_error}"
            ) from calls.first_exception

    def _finish(
        self,
        calls: _Calls,
        *,
        seconds: float,
        name: str | None,
        concurrency: int,
        mode: str,
        resources: Resources,
    ) -> LoadResult:
        if calls.fatal is not None:
            raise calls.fatal
        figures = latency_figures(calls.latencies)
        result = LoadResult(
            name=name or f"load {len(self.results) + 1}",
            n=calls.n,
            concurrency=concurrency,
            mode=mode,
            seconds=seconds,
            rps=calls.n / seconds if seconds > 0 else float("inf"),
            p50_ms=figures[0],
            p95_ms=figures[1],
            p99_ms=figures[2],
            max_ms=figures[3],
            errors=calls.errors,
            first_error=calls.first_error,
            resources=resources,
        )
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result
