"""The readiness loop: how often it asks whether a server still runs."""

from __future__ import annotations

import dataclasses
import itertools
import socket
import subprocess
import sys
import time

import pytest
import redis

from pytest_integration_kit.backends.base import ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.errors import ServerNotReady, ServerStartError
from pytest_integration_kit.services import spec_for
from pytest_integration_kit.services.readiness import (
    STATUS_INTERVAL,
    login_refused,
    wait_until_ready,
)


def _closed_port() -> int:
    """A loopback port nothing listens on (a connect is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connect(port: int, seconds: float) -> str:
    socket.create_connection(("127.0.0.1", port), timeout=seconds).close()
    return "up"


def test_a_server_still_starting_is_asked_about_every_half_second_not_every_probe() -> None:
    # A container's status is a call to the engine: after each of 20 probes a second it
    # cost CPU that the servers starting at the same time need.
    port = _closed_port()
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    asked: list[float] = []

    def is_running() -> bool:
        asked.append(time.monotonic())
        return server.poll() is None

    try:
        with pytest.raises(ServerNotReady):
            wait_until_ready(
                lambda seconds: _connect(port, seconds),
                what="nothing",
                timeout=1.6,
                log_tail=lambda: "",
                is_running=is_running,
            )
    finally:
        server.kill()
        server.wait()
    # Every STATUS_INTERVAL, and once more at the deadline: not after each of ~30 probes.
    assert 3 <= len(asked) <= 5
    assert all(b - a >= STATUS_INTERVAL - 0.01 for a, b in itertools.pairwise(asked[:-1]))


def test_a_server_that_exits_is_reported_within_the_interval() -> None:
    port = _closed_port()
    server = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    server.wait()
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="exited before it was ready"):
        wait_until_ready(
            lambda seconds: _connect(port, seconds),
            what="a server",
            timeout=30,
            log_tail=lambda: "(its log)",
            is_running=lambda: server.poll() is None,
        )
    assert time.monotonic() - started < STATUS_INTERVAL + 0.5


def test_a_start_step_that_failed_in_the_probe_ends_the_wait_at_once() -> None:
    # A warm container whose password could not be set (the exec fallback failed) will
    # not let anyone in by waiting the startup timeout out.
    def probe(seconds: float) -> str:
        raise ServerStartError("could not set the password")

    started = time.monotonic()
    with pytest.raises(ServerStartError, match="could not set the password"):
        wait_until_ready(probe, what="a server", timeout=30, log_tail=lambda: "")
    assert time.monotonic() - started < 1


def test_a_refused_redis_password_is_asked_once() -> None:
    # redis-py 6+ retries a refused AUTH three times with backoff by default (0.9 s to
    # 3.9 s here): the readiness loop retries by itself, and the docker backend's check
    # that a wrong password is refused (docker_host_network) waited that out each start.
    spec = spec_for("redis")
    server = LocalBackend().start(
        ServerOptions(spec=spec, image="", startup_timeout=60, session_id="tests-redis-probe")
    )
    try:
        client = redis.Redis.from_url(server.endpoint.url)
        before = client.info("stats")["total_connections_received"]
        with pytest.raises(redis.exceptions.ConnectionError) as refused:
            spec.probe(dataclasses.replace(server.endpoint, password="wrong"), timeout=5)
        assert login_refused(refused.value)
        assert client.info("stats")["total_connections_received"] - before == 1
        client.close()
    finally:
        server.stop()
