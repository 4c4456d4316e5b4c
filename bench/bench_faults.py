"""Benchmark of mocks and faults: proxy overhead, mock server round trip, toxic accuracy.

The floor is a raw loopback round trip to a local redis-server (``PING`` on an open
socket): the cheapest real request/answer this machine can do. Every row prints its
p50/p95 and its ratio to that floor; time-based toxics print how far the measured time
is from the configured one. Run with ``nox -s bench`` or ``python bench/bench_faults.py``.
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from typing import TYPE_CHECKING

import httpx
import redis

from pytest_integration_kit.backends.base import ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.faults.proxy import FaultProxy
from pytest_integration_kit.mocks import MockServer
from pytest_integration_kit.services import spec_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_integration_kit.services.endpoint import Endpoint

ROUNDS = 3000


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(call: Callable[[], object], rounds: int = ROUNDS) -> list[float]:
    for _ in range(min(200, rounds)):
        call()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def measure_interleaved(*calls: Callable[[], object]) -> list[list[float]]:
    """Time each call in turn, ROUNDS times: one list of samples per call."""
    for call in calls:
        for _ in range(200):
            call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(ROUNDS):
        for call, times in zip(calls, samples, strict=True):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return samples


def redis_pinger(
    host: str, port: int, endpoint: Endpoint
) -> tuple[socket.socket, Callable[[], None]]:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(f"AUTH {endpoint.user} {endpoint.password}\r\n".encode())
    assert sock.recv(100) == b"+OK\r\n"

    def ping() -> None:
        sock.sendall(b"PING\r\n")
        data = sock.recv(100)
        while not data.endswith(b"\r\n"):
            data += sock.recv(100)

    return sock, ping


def http_getter(server: MockServer) -> tuple[socket.socket, Callable[[], None]]:
    sock = socket.create_connection((server.host, server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = b"GET /v1/users/7 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def get() -> None:
        sock.sendall(request)
        data = sock.recv(65536)
        while not data.endswith(b"}"):
            data += sock.recv(65536)

    return sock, get


def row(name: str, samples: list[float], floor: float, target: str) -> None:
    p50, p95 = statistics.median(samples), percentile(samples, 0.95)
    print(
        f"| {name:<44} | {p50 * 1e6:>9.1f} | {p95 * 1e6:>9.1f} | {p50 / floor:>7.1f}x "
        f"| {target:<14} |"
    )


def accuracy(name: str, configured: float, measured: list[float], target: str) -> None:
    p50 = statistics.median(measured)
    error = (p50 - configured) * 1e3
    spread = (percentile(measured, 0.95) - percentile(measured, 0.05)) * 1e3
    print(
        f"| {name:<36} | {configured * 1e3:>8.1f} | {p50 * 1e3:>8.1f} | {error:>+8.2f} "
        f"| {spread:>7.2f} | {target:<14} |"
    )


def round_trips(endpoint: Endpoint, proxy: FaultProxy, mock: MockServer) -> None:
    direct_sock, direct_ping = redis_pinger(endpoint.host, endpoint.port, endpoint)
    proxy_sock, proxy_ping = redis_pinger(proxy.host, proxy.port, endpoint)
    mock.get("/v1/users/7").respond(200, json={"id": 7, "name": "seven"})
    http_sock, http_get = http_getter(mock)
    # Interleaved, so a busy neighbour on the machine slows floor and subject alike.
    floor_samples, proxied, raw_http = measure_interleaved(direct_ping, proxy_ping, http_get)
    floor = statistics.median(floor_samples)
    with httpx.Client() as client:
        url = mock.url + "/v1/users/7"
        via_httpx = measure(lambda: client.get(url), rounds=1000)
    mock.reset()
    for sock in (direct_sock, proxy_sock, http_sock):
        sock.close()

    print(f"\nmocks and faults: {ROUNDS} rounds, floor = raw redis PING round trip\n")
    header = ("operation", "p50 µs", "p95 µs", "ratio", "target")
    print("| {:<44} | {:>9} | {:>9} | {:>8} | {:<14} |".format(*header))
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 11}|{'-' * 10}|{'-' * 16}|")
    row("floor: redis PING, direct", floor_samples, floor, "")
    row("redis PING through the fault proxy", proxied, floor, "")
    overhead = statistics.median([p - f for p, f in zip(proxied, floor_samples, strict=True)])
    print(
        f"| {'  proxy overhead per round trip (p50)':<44} | {overhead * 1e6:>9.1f} "
        f"| {'':>9} | {'':>8} | {'<= 100 µs':<14} |"
    )
    row("mock_server GET, keep-alive, raw socket", raw_http, floor, "<= 500 µs")
    row("mock_server GET, keep-alive, httpx.Client", via_httpx, floor, "")


def toxic_accuracy(endpoint: Endpoint, proxy: FaultProxy) -> None:
    print("\ntoxic timing accuracy (ms; error = p50 - configured; spread = p95 - p5)\n")
    header = ("toxic", "config", "p50", "error", "spread", "target")
    print("| {:<36} | {:>8} | {:>8} | {:>8} | {:>7} | {:<14} |".format(*header))
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 16}|")
    sock, ping = redis_pinger(proxy.host, proxy.port, endpoint)
    with proxy.latency(0.050):
        accuracy("latency 50 ms (downstream)", 0.050, measure(ping, rounds=40), "±5 ms")
    with proxy.latency(0.020, direction="both"):
        accuracy("latency 20 ms both ways", 0.040, measure(ping, rounds=40), "±5 ms")
    with proxy.latency(0.050, jitter=0.020):
        jittered = measure(ping, rounds=150)
    accuracy("latency 50 ms ± 20 ms jitter", 0.050, jittered, "spread ≈ 36")
    sock.close()

    redis.Redis.from_url(endpoint.url).set("benchblob", b"x" * 200_000)
    get = get_blob(proxy, endpoint, 200_000)
    with proxy.bandwidth(2_000_000):
        accuracy("bandwidth 2 MB/s, 200 kB", 0.100, measure(get, rounds=5), "±10 ms")

    closes = []
    for _ in range(5):
        with proxy.timeout(0.100):
            closes.append(time_to_close(proxy, endpoint))
    accuracy("timeout 100 ms: close after", 0.100, closes, "±10 ms")


def main() -> int:
    server = LocalBackend().start(
        ServerOptions(spec=spec_for("redis"), image="", startup_timeout=60, session_id="bench")
    )
    try:
        with FaultProxy(server.endpoint, seed=1) as proxy, MockServer() as mock:
            round_trips(server.endpoint, proxy, mock)
            toxic_accuracy(server.endpoint, proxy)
    finally:
        server.stop()
    return 0


def get_blob(proxy: FaultProxy, endpoint: Endpoint, size: int) -> Callable[[], None]:
    """A GET of a ``size``-byte value through the proxy, on an authenticated socket."""
    sock = socket.create_connection((proxy.host, proxy.port))
    sock.sendall(f"AUTH {endpoint.user} {endpoint.password}\r\n".encode())
    assert sock.recv(100) == b"+OK\r\n"
    want = len(f"${size}\r\n") + size + 2

    def get() -> None:
        sock.sendall(b"GET benchblob\r\n")
        got = 0
        while got < want:
            got += len(sock.recv(65536))

    return get


def time_to_close(proxy: FaultProxy, endpoint: Endpoint) -> float:
    sock = socket.create_connection((proxy.host, proxy.port))
    try:
        start = time.perf_counter()
        sock.sendall(f"AUTH {endpoint.user} {endpoint.password}\r\n".encode())
        while sock.recv(100):
            pass
        return time.perf_counter() - start
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
