"""The docker backend through DOCKER_HOST, and where it publishes ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from pytest_integration_kit.backends.docker import engine_address

DOCKER_SOCKET = "/var/run/docker.sock"


def test_local_engines_publish_on_loopback_only() -> None:
    assert engine_address("http+docker://localhost") == ("127.0.0.1", "127.0.0.1")
    assert engine_address("http://127.0.0.1:2375") == ("127.0.0.1", "127.0.0.1")


# 0.0.0.0 below is what the function answers for a remote engine, not a bind of ours.
def test_a_remote_engine_is_reached_at_its_own_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTCONTAINERS_HOST_OVERRIDE", raising=False)
    assert engine_address("http://docker:2375") == ("docker", "0.0.0.0")  # noqa: S104
    assert engine_address("http+docker://ssh", "ssh://ci@builder") == ("builder", "0.0.0.0")  # noqa: S104
    monkeypatch.setenv("TESTCONTAINERS_HOST_OVERRIDE", "10.0.0.5")
    assert engine_address("http://docker:2375") == ("10.0.0.5", "0.0.0.0")  # noqa: S104


class TcpToUnixBridge:
    """The local engine's API on a TCP port, as a remote engine would serve it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(DOCKER_SOCKET)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def docker_over_tcp() -> Iterator[str]:
    if (
        not os.path.exists(DOCKER_SOCKET)
        or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode
    ):
        if os.environ.get("CI"):
            pytest.fail("docker is required in CI")
        pytest.skip("no Docker engine here")
    bridge = TcpToUnixBridge()
    yield f"tcp://127.0.0.1:{bridge.port}"
    bridge.close()


def test_docker_host_over_tcp_is_used(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, docker_over_tcp: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_over_tcp)
    monkeypatch.setenv("INTEGRATION_REDIS_IMAGE", "pytest-integration-kit/redis:7")
    pytester.makepyfile(
        """
        import redis

        def test_it(redis_server):
            assert redis_server.backend == "docker"
            assert redis_server.host == "127.0.0.1"
            assert redis.Redis.from_url(redis_server.url).ping()
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:randomly",
        "-p",
        "no:asyncio",
        "--integration-backend=docker",
        "--integration-missing=fail",
    )
    result.assert_outcomes(passed=1)


def test_containers_are_labelled_and_published_on_loopback(
    pytester: pytest.Pytester, docker_over_tcp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_REDIS_IMAGE", "pytest-integration-kit/redis:7")
    pytester.makepyfile(
        """
        import json, subprocess

        def test_it(redis_server):
            ids = subprocess.run(
                ["docker", "ps", "-q", "--filter", "label=pytest-integration-kit.session",
                 "--filter", "publish=%d" % redis_server.port],
                capture_output=True, text=True, check=True,
            ).stdout.split()
            assert len(ids) == 1
            info = json.loads(subprocess.run(
                ["docker", "inspect", ids[0]], capture_output=True, text=True, check=True
            ).stdout)[0]
            bindings = info["HostConfig"]["PortBindings"]["6379/tcp"]
            assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
            assert info["Config"]["Labels"]["pytest-integration-kit.service"] == "redis"
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:randomly",
        "-p",
        "no:asyncio",
        "--integration-backend=docker",
        "--integration-missing=fail",
    )
    result.assert_outcomes(passed=1)
