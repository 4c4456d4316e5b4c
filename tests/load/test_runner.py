"""The load library without pytest's fixture: percentiles from statistics.quantiles,
errors counted, bad arguments refused, coroutines in a fresh loop or the running one,
and a resource sampler that never hangs on a server it cannot read."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import threading
import time

import pytest

from pytest_integration_kit.load import LoadError, LoadRunner, ResourceSampler, Target
from pytest_integration_kit.load.result import latency_figures
from pytest_integration_kit.services.endpoint import Endpoint


def test_percentiles_are_statistics_quantiles() -> None:
    latencies = [i / 1000 for i in range(1, 201)]  # 1 … 200 ms
    cuts = statistics.quantiles([x * 1000 for x in latencies], n=100, method="inclusive")
    assert latency_figures(latencies) == (cuts[49], cuts[94], cuts[98], 200.0)
    assert latency_figures([0.005]) == (5.0, 5.0, 5.0, 5.0)


def test_threads_run_at_the_concurrency_asked() -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def call() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1

    result = LoadRunner()(call, n=40, concurrency=4)
    assert (result.n, result.errors, result.mode, peak) == (40, 0, "threads", 4)
    assert result.p50_ms >= 10  # each call sleeps 10 ms
    assert result.rps <= 4 / 0.01 * 1.05  # four at a time, 10 ms each: a sanity bound
    assert result.resources.note == "resources were not sampled"


def test_errors_are_counted_with_the_first_repr() -> None:
    calls = iter(range(100))

    def flaky() -> None:
        if next(calls) % 2:
            raise ConnectionError("reset by peer")

    result = LoadRunner()(flaky, n=10, concurrency=1)
    assert (result.errors, result.first_error) == (5, "ConnectionError('reset by peer')")
    with pytest.raises(AssertionError, match=r"errors 5 \(budget <= 0\): MISSED"):
        result.assert_budget()
    assert result.assert_budget(max_errors=5) is result
    assert result.verdict == "ok"


def test_a_failed_warmup_measures_nothing() -> None:
    def broken() -> None:
        raise ValueError("no")

    with pytest.raises(LoadError, match=r"1 of 3 warm-up calls failed|3 of 3 warm-up calls"):
        LoadRunner()(broken, n=5, warmup=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, r"n=0; allowed: an integer >= 1"),
        ({"concurrency": 2.5}, r"concurrency=2.5; allowed: an integer >= 1"),
        ({"warmup": -1}, r"warmup=-1; allowed: an integer >= 0"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadRunner()(lambda: None, **kwargs)  # type: ignore[arg-type]


def test_bad_budget() -> None:
    result = LoadRunner()(lambda: None, n=3)
    with pytest.raises(ValueError, match=r"p95_ms=-1; allowed: a number >= 0 or None"):
        result.assert_budget(p95_ms=-1)


def test_a_coroutine_function_runs_in_a_fresh_loop() -> None:
    active, peak = 0, 0

    async def call() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.005)
        active -= 1

    result = LoadRunner()(call, n=30, concurrency=6)
    assert (result.mode, result.errors, peak) == ("asyncio", 0, 6)


def test_run_async_uses_the_running_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen = set()

        async def call() -> None:
            seen.add(asyncio.get_running_loop())

        result = await LoadRunner().run_async(call, n=10, concurrency=3)
        assert result.mode == "asyncio"
        assert seen == {loop}
        with pytest.raises(LoadError, match=r"use `await load.run_async"):
            LoadRunner()(call, n=1)

    asyncio.run(main())


def test_an_awaitable_from_a_thread_is_refused() -> None:
    async def coro() -> None:
        pass

    with pytest.raises(LoadError, match="returned an awaitable"):
        LoadRunner()(lambda: coro(), n=2)  # noqa: PLW0108 - a sync callable returning one


def test_sampler_on_a_gone_server_says_so() -> None:
    endpoint = Endpoint(
        service="postgres",
        host="127.0.0.1",
        port=1,
        user="u",
        password="p",
        database="d",
        backend="local",
        scheme="postgresql+psycopg",
    )
    gone = Target(endpoint, {"pid": 2**22 + 12345})  # no such process
    url = Target(dataclasses.replace(endpoint, backend="url"), {})
    sampler = ResourceSampler([gone, url], interval=0.01, timeout=5)
    started = time.monotonic()
    sampler.start()
    time.sleep(0.05)
    resources = sampler.stop()
    assert time.monotonic() - started < 5
    first, second = resources.servers
    assert first.cpu_percent is None
    assert "could not read" in first.note
    assert second.cpu_percent is None
    assert "url backend" in second.note
