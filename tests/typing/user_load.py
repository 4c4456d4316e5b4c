"""User-style code for the load fixture that must type-check under mypy --strict (not collected)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import redis

from pytest_integration_kit import load_fixture_factory
from pytest_integration_kit.load import LoadResult, LoadRunner, ServerUsage

fine_load: Callable[..., Iterator[LoadRunner]] = load_fixture_factory(interval=0.1)


def use_load(load: LoadRunner, app_client: httpx.Client, redis_client: redis.Redis) -> float:
    result: LoadResult = load(lambda: app_client.get("/items"), n=200, concurrency=8)
    result.assert_budget(p95_ms=50, min_rps=100).assert_budget(p99_ms=80, max_errors=1)
    usage: ServerUsage = result.resources["postgres"]
    load(lambda: redis_client.incr("hits"), n=10, name="INCR")
    return result.p95_ms + (usage.cpu_percent or 0.0)


async def use_async_load(load: LoadRunner, app_async_client: httpx.AsyncClient) -> int:
    result = await load.run_async(
        lambda: app_async_client.get("/items"), n=200, concurrency=8, warmup=10
    )
    return result.errors
