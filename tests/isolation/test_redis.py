"""Redis clients: a db index per process, emptied after each test, others' data untouched."""

from __future__ import annotations

import pytest
import redis
from isolation_project import run, write_project

from pytest_integration_kit.isolation import RedisKeyspace
from pytest_integration_kit.isolation.redis import CLAIM_PREFIX
from pytest_integration_kit.services import spec_for

TESTS = """
import pytest


def test_write(redis_client):
    assert redis_client.dbsize() == 0
    redis_client.set("greeting", "hello")
    redis_client.rpush("queue", *range(2000))  # a large keyspace is flushed too
    print(f"REDIS-DB {redis_client.connection_pool.connection_kwargs['db']}")


def test_clean_after(redis_client):
    assert redis_client.dbsize() == 0


@pytest.mark.asyncio
async def test_async_write(redis_async_client):
    assert await redis_async_client.dbsize() == 0
    await redis_async_client.set("a", 1)


@pytest.mark.asyncio
async def test_async_clean_after(redis_async_client, redis_client):
    assert await redis_async_client.dbsize() == 0
    assert redis_client.dbsize() == 0
"""


def test_redis_clients_are_clean_per_test(pytester: pytest.Pytester, backend_env: str) -> None:
    write_project(pytester)
    pytester.makepyfile(test_user=TESTS)
    result = run(pytester, "-p", "no:randomly", "-s")
    result.assert_outcomes(passed=4)
    result.stdout.re_match_lines([r".*REDIS-DB [1-9]\d*"])  # never db 0, others' home


def test_keyspaces_on_one_server_never_meet(url_servers: dict[str, str]) -> None:
    endpoint = spec_for("redis").endpoint_from_url(url_servers["redis"])
    outsider = redis.Redis.from_url(url_servers["redis"])  # someone else's data in db 0
    outsider.set("not-ours", "keep me")
    first = RedisKeyspace(endpoint, owner="session_a")
    second = RedisKeyspace(endpoint, owner="session_b")
    try:
        assert first.claim() != second.claim()
        a, b = first.client(), second.client()
        a.set("k", "a")
        b.set("k", "b")
        assert a.get("k") == b"a"
        assert b.get("k") == b"b"
        assert first.clean() == 1
        assert a.dbsize() == 0
        assert b.get("k") == b"b"
        assert outsider.get("not-ours") == b"keep me"
        a.close()
        b.close()
    finally:
        claimed = first.db
        first.close()
        second.close()
    assert outsider.get(f"{CLAIM_PREFIX}{claimed}") is None  # the claim was given back
    assert outsider.get("not-ours") == b"keep me"
    outsider.delete("not-ours")
    outsider.close()
