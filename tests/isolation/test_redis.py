"""Redis clients: a db index per process, emptied after each test, others' data untouched."""

from __future__ import annotations

import json

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


CLOSED_TESTS = """
def test_closes_its_client(redis_client):
    redis_client.set("a", 1)
    redis_client.close()

def test_next(redis_client):
    assert redis_client.dbsize() == 0
    redis_client.set("b", 2)
    assert redis_client.get("b") == b"2"
"""


def test_redis_clients_are_clean_per_test_even_after_a_test_closed_its_own(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    """Every test starts on an empty db index, never db 0; a client the test closed
    does not break the next. One inner run (one server per backend) for both."""
    write_project(pytester)
    pytester.makepyfile(test_user=TESTS, test_user_closed=CLOSED_TESTS)
    result = run(pytester, "-p", "no:randomly", "-s")
    result.assert_outcomes(passed=6)
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


def _server_counters(outsider: redis.Redis) -> tuple[int, dict[str, int]]:
    """Connections the server accepted so far, and calls per command."""
    connections = int(outsider.info("stats")["total_connections_received"])
    calls = {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in outsider.info("commandstats").items()
    }
    return connections, calls


def test_per_test_cost_is_one_round_trip_on_an_open_connection(
    url_servers: dict[str, str],
) -> None:
    """After the first test, a test's client connects no more and the clean is one
    pipelined round trip: db 0's canary looked at (SELECT 0, SET NX), then SELECT back,
    DBSIZE + FLUSHDB. No AUTH, HELLO or CLIENT per test."""
    endpoint = spec_for("redis").endpoint_from_url(url_servers["redis"])
    outsider = redis.Redis.from_url(url_servers["redis"])
    keyspace = RedisKeyspace(endpoint, owner="per_test_cost")
    try:
        first = keyspace.client()
        first.set("warm", 1)
        first.close()
        keyspace.clean()
        connections, before = _server_counters(outsider)
        for n in range(10):
            client = keyspace.client()
            assert client.dbsize() == 0  # the previous test's key is gone
            client.set(f"k{n}", n)
            client.close()
            assert keyspace.clean() == 1
        connections_after, after = _server_counters(outsider)
        calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        calls["info"] -= 2  # the first look at the counters
        assert connections_after - connections == 0
        assert {k: v for k, v in calls.items() if v} == {
            "dbsize": 20,
            "set": 20,
            "select": 20,
            "flushdb": 10,
        }
        assert keyspace.take_look() is False  # the canary was there every time
    finally:
        keyspace.close()


def test_the_clean_writes_its_commands_packed_once_at_claim(
    url_servers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No redis-py pipeline per clean (it packs the commands again and runs each reply
    through its callbacks): the clean writes the bytes packed at claim and reads five
    replies, on the keyspace's own connection."""
    endpoint = spec_for("redis").endpoint_from_url(url_servers["redis"])
    keyspace = RedisKeyspace(endpoint, owner="packed_clean")
    try:
        keyspace.claim()
        packs = []
        real_pack = redis.connection.Connection.pack_commands

        def counted(self: redis.connection.Connection, commands: object) -> object:
            packs.append(commands)
            return real_pack(self, commands)  # type: ignore[no-untyped-call]

        def no_pipeline(*args: object, **kwargs: object) -> object:
            raise AssertionError("the clean made a redis-py pipeline")

        monkeypatch.setattr(redis.connection.Connection, "pack_commands", counted)
        monkeypatch.setattr(redis.Redis, "pipeline", no_pipeline)
        client = keyspace.client()
        for n in range(10):
            client.set(f"k{n}", n)
            assert keyspace.clean() == 1
            assert client.dbsize() == 0
        client.close()
        assert packs == []
    finally:
        monkeypatch.undo()
        keyspace.close()


def test_the_clean_recovers_from_a_dropped_connection(url_servers: dict[str, str]) -> None:
    """The keyspace's connection killed by the server: the clean reconnects (on this
    redis-py at once, through its retry; without retries the clean after), back on the
    keyspace's own db index, with no reply of an earlier clean left unread."""
    endpoint = spec_for("redis").endpoint_from_url(url_servers["redis"])
    outsider = redis.Redis.from_url(url_servers["redis"])
    keyspace = RedisKeyspace(endpoint, owner="dropped_clean")
    try:
        db = keyspace.claim()
        client = keyspace.client()
        client.set("a", 1)
        assert keyspace.clean() == 1
        own = keyspace._client
        assert own is not None
        assert outsider.client_kill_filter(_id=own.client_id()) == 1
        client.set("b", 2)
        try:
            assert keyspace.clean() == 1
        except redis.ConnectionError:  # a redis-py with no retries: the next clean reconnects
            assert keyspace.clean() == 1
        client.set("c", 3)
        assert own.connection is not None
        assert own.connection.db == db
        assert keyspace.clean() == 1  # on this db index: one key, and it is gone
        assert client.dbsize() == 0
        client.close()
    finally:
        keyspace.close()
        outsider.close()


def test_the_clean_sees_a_flushall_and_puts_the_canary_back(url_servers: dict[str, str]) -> None:
    """What ``wiped`` would have said, the clean's own round trip says: once per wipe."""
    endpoint = spec_for("redis").endpoint_from_url(url_servers["redis"])
    outsider = redis.Redis.from_url(url_servers["redis"])
    keyspace = RedisKeyspace(endpoint, owner="clean_look")
    try:
        db = keyspace.claim()
        with keyspace.cleaned_after():
            assert keyspace.clean_due
        assert not keyspace.clean_due
        assert keyspace.take_look() is False
        outsider.flushall()  # what a test might run
        keyspace.clean()
        assert outsider.get(f"{CLAIM_PREFIX}{db}") == b"clean_look"  # the claim is back
        assert keyspace.take_look() is True
        assert keyspace.take_look() is None  # told once
        assert keyspace.wiped() is False  # and the canary is there again
    finally:
        keyspace.close()
        outsider.close()


def test_a_clean_sent_later_is_done_once_settled(url_servers: dict[str, str]) -> None:
    """``clean_later`` writes the clean and returns; ``settle`` reads its replies, after
    which the keyspace is empty and the connection has nothing unread (the next clean
    counts its own keys), the canary's look included."""
    endpoint = spec_for("redis").endpoint_from_url(url_servers["redis"])
    outsider = redis.Redis.from_url(url_servers["redis"])
    keyspace = RedisKeyspace(endpoint, owner="clean_later")
    try:
        db = keyspace.claim()
        client = keyspace.client()
        client.mset({"a": 1, "b": 2})
        keyspace.clean_later()
        keyspace.settle()
        assert client.dbsize() == 0
        keyspace.settle()  # nothing due: no read
        client.set("c", 3)
        outsider.flushall()
        keyspace.clean_later()
        assert keyspace.take_look() is True  # settles first: the look of the clean sent
        assert outsider.get(f"{CLAIM_PREFIX}{db}") == b"clean_later"
        client.set("d", 4)
        keyspace.clean_later()
        assert keyspace.clean() == 0  # the one sent is read first, then its own trip
        client.set("e", 5)
        keyspace.clean_later()
        client.close()
    finally:
        keyspace.close()  # reads what is due before it empties and gives back
    assert outsider.get(f"{CLAIM_PREFIX}{db}") is None
    outsider.close()


def test_a_clean_sent_later_on_a_dropped_connection_is_done_again(
    url_servers: dict[str, str],
) -> None:
    """The keyspace's connection killed between the clean's send and its read: the read
    fails or finds the replies; either way, once settled, the keyspace is empty and the
    next clean runs on the keyspace's own db index."""
    endpoint = spec_for("redis").endpoint_from_url(url_servers["redis"])
    outsider = redis.Redis.from_url(url_servers["redis"])
    keyspace = RedisKeyspace(endpoint, owner="dropped_later")
    try:
        db = keyspace.claim()
        client = keyspace.client()
        client.set("a", 1)
        own = keyspace._client
        assert own is not None
        own_id = own.client_id()
        keyspace.clean_later()
        assert outsider.client_kill_filter(_id=own_id) == 1
        keyspace.settle()
        assert client.dbsize() == 0
        client.set("b", 2)
        try:
            assert keyspace.clean() == 1
        except redis.ConnectionError:  # a redis-py with no retries: the next clean reconnects
            assert keyspace.clean() == 1
        assert own.connection is not None
        assert own.connection.db == db
        assert client.dbsize() == 0
        client.close()
    finally:
        keyspace.close()
        outsider.close()


COUNTED = """
import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def calls(client):
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}


def test_0_before(redis_client):
    (HERE / "before.json").write_text(json.dumps(calls(redis_client)))


@pytest.mark.parametrize("n", range(10))
def test_1_write(redis_client, n):
    redis_client.set("k", n)


def test_2_after(redis_client):
    (HERE / "after.json").write_text(json.dumps(calls(redis_client)))
"""


@pytest.mark.parametrize("backend", ["local"])  # a server of the run's own: nobody else counts
def test_a_test_costs_its_commands_and_one_pipelined_clean(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    """Through the plugin: after each test, the clean's one round trip and nothing else —
    the look for FLUSHALL is in it (no EXISTS of its own)."""
    write_project(pytester)
    pytester.makepyfile(test_counted=COUNTED)
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=12)
    before, after = (
        json.loads(pytester.path.joinpath(f"{name}.json").read_text())
        for name in ("before", "after")
    )
    calls = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    calls.pop("info")  # test_0_before's own
    # 11 cleans (test_0_before's and the ten tests'): SELECT 0, SET NX, SELECT n,
    # DBSIZE, FLUSHDB each; the ten tests' SETs.
    assert calls == {"select": 22, "set": 21, "dbsize": 11, "flushdb": 11}
