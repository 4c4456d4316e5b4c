"""The fault proxy in front of real servers, every toxic seen by real clients.

redis-py (sync and asyncio) and SQLAlchemy over psycopg talk to local servers through a
:class:`FaultProxy`; each test asserts what the client sees: the exception, the data,
and for time-based toxics the elapsed time within a tolerance.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio
import sqlalchemy

from pytest_integration_kit.faults.proxy import FaultProxy
from pytest_integration_kit.services.endpoint import Endpoint

if TYPE_CHECKING:
    from collections.abc import Iterator

SLACK = 0.25


@pytest.fixture
def redis_proxy(local_redis: Endpoint) -> Iterator[FaultProxy]:
    """A fault proxy in front of the local Redis (seeded: toxics are reproducible)."""
    with FaultProxy(local_redis, seed=7) as proxy:
        yield proxy


@pytest.fixture
def pg_proxy(local_postgres: Endpoint) -> Iterator[FaultProxy]:
    """A fault proxy in front of the local PostgreSQL (seeded: toxics are reproducible)."""
    with FaultProxy(local_postgres, seed=7) as proxy:
        yield proxy


def client(proxy: FaultProxy, **options: object) -> redis.Redis:
    return redis.Redis.from_url(proxy.url, **options)


def elapsed(call: object) -> float:
    assert callable(call)
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# -- the endpoint it stands in for ---------------------------------------------------


def test_stands_in_for_the_endpoint(local_redis: Endpoint, redis_proxy: FaultProxy) -> None:
    assert redis_proxy.host == "127.0.0.1"
    assert redis_proxy.port not in (0, local_redis.port)
    assert isinstance(redis_proxy.endpoint, Endpoint)
    assert redis_proxy.url == local_redis.with_address("127.0.0.1", redis_proxy.port).url
    assert (redis_proxy.user, redis_proxy.password, redis_proxy.database) == (
        local_redis.user,
        local_redis.password,
        local_redis.database,
    )
    assert client(redis_proxy).ping() is True


def test_a_bare_host_port_pair(local_redis: Endpoint) -> None:
    with FaultProxy((local_redis.host, local_redis.port)) as proxy:
        assert proxy.url == f"tcp://127.0.0.1:{proxy.port}"
        with socket.create_connection((proxy.host, proxy.port)) as sock:
            sock.sendall(f"AUTH {local_redis.user} {local_redis.password}\r\nPING\r\n".encode())
            data = b""
            while not data.endswith(b"+PONG\r\n"):
                data += sock.recv(100)
        assert data == b"+OK\r\n+PONG\r\n"


def test_sqlalchemy_through_the_proxy(pg_proxy: FaultProxy) -> None:
    engine = sqlalchemy.create_engine(pg_proxy.url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT 41 + 1")).scalar() == 42
    finally:
        engine.dispose()
    assert pg_proxy.accepted == 1


# -- each toxic ----------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["downstream", "upstream", "both"])
def test_latency(redis_proxy: FaultProxy, direction: str) -> None:
    redis_client = client(redis_proxy)
    redis_client.ping()  # connect and authenticate outside the measurement
    expected = 0.4 if direction == "both" else 0.2
    with redis_proxy.latency(0.2, direction=direction):  # type: ignore[arg-type]
        took = elapsed(redis_client.ping)
    assert expected <= took < expected + SLACK
    assert elapsed(redis_client.ping) < 0.1  # removed on leaving the block


def test_latency_with_jitter_stays_in_bounds(redis_proxy: FaultProxy) -> None:
    redis_client = client(redis_proxy)
    redis_client.ping()
    with redis_proxy.latency(0.1, jitter=0.05):
        times = [elapsed(redis_client.ping) for _ in range(6)]
    assert all(0.05 <= t < 0.15 + SLACK for t in times)
    assert max(times) - min(times) > 0.005  # jitter really varies the delay


def test_latency_on_postgres_queries(pg_proxy: FaultProxy) -> None:
    engine = sqlalchemy.create_engine(pg_proxy.url)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
            with pg_proxy.latency(0.15):
                took = elapsed(lambda: connection.execute(sqlalchemy.text("SELECT 1")))
        assert 0.15 <= took < 0.15 + SLACK
    finally:
        engine.dispose()


def test_bandwidth(redis_proxy: FaultProxy) -> None:
    redis_client = client(redis_proxy)
    redis_client.set("blob", b"x" * 100_000)
    with redis_proxy.bandwidth(500_000):  # 100 kB at 500 kB/s: 0.2 s
        took = elapsed(lambda: redis_client.get("blob"))
    assert 0.18 <= took < 0.2 + SLACK
    assert redis_client.get("blob") == b"x" * 100_000


def test_slow_close(redis_proxy: FaultProxy, local_redis: Endpoint) -> None:
    with socket.create_connection((redis_proxy.host, redis_proxy.port)) as sock:
        sock.sendall(f"AUTH {local_redis.user} {local_redis.password}\r\n".encode())
        assert sock.recv(100) == b"+OK\r\n"
        with redis_proxy.slow_close(0.3):
            sock.sendall(b"QUIT\r\n")
            assert sock.recv(100) == b"+OK\r\n"
            start = time.perf_counter()
            assert sock.recv(100) == b""  # the server's close arrives late
            took = time.perf_counter() - start
    assert 0.25 <= took < 0.3 + SLACK


def test_timeout_closes_after_the_delay(redis_proxy: FaultProxy) -> None:
    redis_client = client(redis_proxy)
    redis_client.ping()
    with redis_proxy.timeout(0.3):
        start = time.perf_counter()
        with pytest.raises(redis.exceptions.ConnectionError, match="Connection closed"):
            redis_client.ping()
        took = time.perf_counter() - start
    assert 0.3 <= took < 0.3 + SLACK


def test_timeout_zero_holds_data_until_removed(redis_proxy: FaultProxy) -> None:
    redis_client = client(redis_proxy, socket_timeout=0.3)
    redis_client.ping()
    with redis_proxy.timeout(), pytest.raises(redis.exceptions.TimeoutError):
        redis_client.ping()
    # removed in the middle of a call: the held answer flows on
    patient = client(redis_proxy, socket_timeout=5)
    patient.ping()
    toxic = redis_proxy.timeout()
    start = time.perf_counter()  # before the timer's clock starts
    threading.Timer(0.2, toxic.remove).start()
    patient.ping()  # answered, not timed out (5 s): the data flowed on
    # Held until the toxic went (a timer's wait may end a hair before its 0.2 s).
    assert time.perf_counter() - start >= 0.19


def test_timeout_on_postgres(pg_proxy: FaultProxy) -> None:
    engine = sqlalchemy.create_engine(pg_proxy.url, pool_pre_ping=False)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
            with (
                pg_proxy.timeout(0.2),
                pytest.raises(sqlalchemy.exc.OperationalError, match="closed"),
            ):
                connection.execute(sqlalchemy.text("SELECT 1"))
    finally:
        engine.dispose()


def test_reset_peer(redis_proxy: FaultProxy) -> None:
    redis_client = client(redis_proxy)
    redis_client.ping()
    with (
        redis_proxy.reset_peer(0.1, direction="upstream"),
        pytest.raises(redis.exceptions.ConnectionError, match="reset by peer"),
    ):
        redis_client.ping()


def test_reset_peer_on_postgres(pg_proxy: FaultProxy) -> None:
    engine = sqlalchemy.create_engine(pg_proxy.url)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
            with (
                pg_proxy.reset_peer(),
                pytest.raises(sqlalchemy.exc.OperationalError),
            ):
                connection.execute(sqlalchemy.text("SELECT 1"))
    finally:
        engine.dispose()


def test_slicer_keeps_data_whole_and_dribbles_it(redis_proxy: FaultProxy) -> None:
    redis_client = client(redis_proxy)
    value = bytes(range(256)) * 8  # 2 kB
    redis_client.set("sliced", value)
    with redis_proxy.slicer(200, 50, delay=0.01):
        start = time.perf_counter()
        assert redis_client.get("sliced") == value
        took = time.perf_counter() - start
    assert took >= 0.01 * (len(value) // 250 - 1)


def test_limit_data(redis_proxy: FaultProxy) -> None:
    redis_client = client(redis_proxy)
    redis_client.set("big", b"y" * 10_000)
    with (
        redis_proxy.limit_data(1_000),
        pytest.raises(redis.exceptions.ConnectionError, match="Connection closed"),
    ):
        redis_client.get("big")


def test_down_refuses_connections_then_recovers(
    redis_proxy: FaultProxy, pg_proxy: FaultProxy
) -> None:
    redis_client = client(redis_proxy)
    redis_client.ping()
    engine = sqlalchemy.create_engine(pg_proxy.url)
    try:
        with redis_proxy.down(), pg_proxy.down():
            with pytest.raises(redis.exceptions.ConnectionError, match="refused"):
                redis_client.ping()
            with pytest.raises(sqlalchemy.exc.OperationalError, match="refused"):
                engine.connect()
        assert redis_client.ping() is True
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.asyncio
async def test_redis_asyncio_through_toxics(redis_proxy: FaultProxy) -> None:
    async_client = redis.asyncio.Redis.from_url(redis_proxy.url)
    try:
        await async_client.ping()
        with redis_proxy.latency(0.15):
            start = time.perf_counter()
            await async_client.ping()
            assert 0.15 <= time.perf_counter() - start < 0.15 + SLACK
        with redis_proxy.reset_peer(), pytest.raises(redis.exceptions.ConnectionError):
            await asyncio.wait_for(async_client.ping(), 5)
    finally:
        await async_client.aclose()


# -- toxicity and seeds ----------------------------------------------------------------


def affected_connections(target: Endpoint, seed: int) -> list[bool]:
    """Which of 12 fresh connections a 50%-toxic reset hits, for one seed."""
    hit: list[bool] = []
    with FaultProxy(target, seed=seed) as proxy:
        proxy.reset_peer(toxicity=0.5)
        for _ in range(12):
            fresh = client(proxy)
            try:
                fresh.ping()
                hit.append(False)
            except redis.exceptions.ConnectionError:
                hit.append(True)
            finally:
                fresh.close()
    return hit


def test_toxicity_is_reproducible_with_a_seed(local_redis: Endpoint) -> None:
    first = affected_connections(local_redis, seed=1234)
    assert affected_connections(local_redis, seed=1234) == first
    # about half: never all or none for this seed
    assert any(first)
    assert not all(first)


def test_toxicity_zero_never_applies(redis_proxy: FaultProxy) -> None:
    redis_client = client(redis_proxy)
    with redis_proxy.reset_peer(toxicity=0.0):
        assert all(redis_client.ping() for _ in range(5))


def test_reset_removes_every_toxic_and_brings_it_up(redis_proxy: FaultProxy) -> None:
    redis_proxy.latency(1.0)
    redis_proxy.disable()
    redis_proxy.reset()
    assert redis_proxy.toxics == ()
    assert elapsed(client(redis_proxy).ping) < 0.2


def test_bad_toxic_arguments_are_refused(redis_proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="direction"):
        redis_proxy.latency(0.1, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="toxicity"):
        redis_proxy.latency(0.1, toxicity=2)
    with pytest.raises(TypeError, match="host"):
        FaultProxy("localhost:6379")


def test_in_front_of_a_mock_server_with_httpx() -> None:
    httpx = pytest.importorskip("httpx")
    from pytest_integration_kit.mocks import MockServer  # noqa: PLC0415

    with MockServer() as server, FaultProxy(server) as proxy:
        server.get("/v1/ping").respond(200, text="pong")
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
        with httpx.Client(base_url=proxy.url) as http:
            assert http.get("/v1/ping").text == "pong"
            with proxy.latency(0.15, direction="upstream"):
                start = time.perf_counter()
                assert http.get("/v1/ping").text == "pong"
                assert 0.15 <= time.perf_counter() - start < 0.15 + SLACK
            with proxy.limit_data(20), pytest.raises(httpx.RemoteProtocolError):
                http.get("/v1/ping")


def test_mysql_through_latency_and_reset(local_mysql: Endpoint) -> None:
    pytest.importorskip("pymysql")
    with FaultProxy(local_mysql) as proxy:
        engine = sqlalchemy.create_engine(proxy.url)
        try:
            with engine.connect() as connection:
                assert connection.execute(sqlalchemy.text("SELECT 6 * 7")).scalar() == 42
                with proxy.latency(0.15):
                    took = elapsed(lambda: connection.execute(sqlalchemy.text("SELECT 1")))
                assert 0.15 <= took < 0.15 + SLACK
                with proxy.reset_peer(), pytest.raises(sqlalchemy.exc.OperationalError):
                    connection.execute(sqlalchemy.text("SELECT 1"))
        finally:
            engine.dispose()


def test_timeout_closes_an_idle_connection(redis_proxy: FaultProxy) -> None:
    with socket.create_connection((redis_proxy.host, redis_proxy.port)) as idle:
        time.sleep(0.05)  # the connection is established through the proxy
        # Timed from before the toxic is set: its 0.2 s start while the block enters.
        start = time.perf_counter()
        with redis_proxy.timeout(0.2):
            assert idle.recv(100) == b""  # closed without a byte sent either way
            took = time.perf_counter() - start
    assert 0.2 <= took < 0.2 + SLACK


def test_reset_peer_resets_an_idle_connection_and_new_ones(redis_proxy: FaultProxy) -> None:
    with redis_proxy.reset_peer(0.2):
        start = time.perf_counter()  # before the connection: its 0.2 s start at accept
        with socket.create_connection((redis_proxy.host, redis_proxy.port)) as idle:
            with pytest.raises(ConnectionResetError):
                idle.recv(100)
            took = time.perf_counter() - start
        assert 0.2 <= took < 0.2 + SLACK
    with socket.create_connection((redis_proxy.host, redis_proxy.port)) as after:
        after.settimeout(0.3)
        with pytest.raises(TimeoutError):
            after.recv(100)  # the toxic is gone: the idle connection just stays open


@pytest.mark.asyncio
async def test_asyncpg_through_latency_and_down(pg_proxy: FaultProxy) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    connect = {
        "host": pg_proxy.host,
        "port": pg_proxy.port,
        "user": pg_proxy.user,
        "password": pg_proxy.password,
        "database": pg_proxy.database,
    }
    connection = await asyncpg.connect(**connect)
    try:
        with pg_proxy.latency(0.15):
            start = time.perf_counter()
            assert await connection.fetchval("SELECT 42") == 42
            assert 0.15 <= time.perf_counter() - start < 0.15 + SLACK
    finally:
        await connection.close()
    with pg_proxy.down(), pytest.raises(OSError, match=r"refused|Connect call failed"):
        await asyncpg.connect(**connect)


def test_latency_delays_a_large_answer_once_not_per_chunk(redis_proxy: FaultProxy) -> None:
    redis_client = client(redis_proxy)
    redis_client.set("large", b"z" * 1_000_000)  # read by the proxy in many chunks
    with redis_proxy.latency(0.1):
        took = elapsed(lambda: redis_client.get("large"))
    assert 0.1 <= took < 0.1 + SLACK


def test_postgres_through_bandwidth_slicer_and_limit_data(pg_proxy: FaultProxy) -> None:
    big = sqlalchemy.text("SELECT repeat('x', 50000)")
    engine = sqlalchemy.create_engine(pg_proxy.url)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
            with pg_proxy.bandwidth(500_000):  # 50 kB at 500 kB/s: 0.1 s
                took = elapsed(lambda: connection.execute(big).scalar())
            assert 0.09 <= took < 0.1 + SLACK
            with pg_proxy.slicer(100, 40, delay=0.0005, direction="both"):
                assert connection.execute(big).scalar() == "x" * 50000  # protocol intact
            with (
                pg_proxy.limit_data(1000),
                pytest.raises(sqlalchemy.exc.OperationalError),
            ):
                connection.execute(big).scalar()
    finally:
        engine.dispose()
