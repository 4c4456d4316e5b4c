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
#: The real engine, for the checks of the outer test (DOCKER_HOST points at the bridge).
ENGINE = f"unix://{DOCKER_SOCKET}"


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
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(DOCKER_SOCKET)
            self.sockets += [client, upstream]
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

    def cut(self) -> None:
        """The engine goes away: no new connection, and the open ones are dropped."""
        self.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class CuttableBridge(TcpToUnixBridge):
    """A bridge that a test inside the inner run cuts by connecting to ``control_port``."""

    def __init__(self) -> None:
        super().__init__()
        self.control = socket.create_server(("127.0.0.1", 0))
        self.control_port = self.control.getsockname()[1]
        threading.Thread(target=self._wait_for_the_cut, daemon=True).start()

    def _wait_for_the_cut(self) -> None:
        with contextlib.suppress(OSError):
            connection, _ = self.control.accept()
            self.cut()
            connection.close()
        self.control.close()


def _need_docker() -> None:
    if (
        not os.path.exists(DOCKER_SOCKET)
        or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode
    ):
        if os.environ.get("PIK_TEST_STRICT"):
            pytest.fail("docker is required in CI")
        pytest.skip("no Docker engine here")


@pytest.fixture
def docker_over_tcp() -> Iterator[str]:
    """``tcp://127.0.0.1:<port>`` bridged to the engine's unix socket (DOCKER_HOST over TCP)."""
    _need_docker()
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
            # The published port on the loopback, or the container's own address.
            assert redis_server.host == "127.0.0.1" or redis_server.port == 6379
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
                 "--filter", "label=pytest-integration-kit.service=redis"],
                capture_output=True, text=True, check=True,
            ).stdout.split()
            infos = json.loads(subprocess.run(
                ["docker", "inspect", *ids], capture_output=True, text=True, check=True
            ).stdout)
            # Reached at its own address (integration_docker_direct), which is this one's.
            mine = [
                i for i in infos
                if any(n["IPAddress"] == redis_server.host
                       for n in i["NetworkSettings"]["Networks"].values())
            ]
            assert len(mine) == 1 and redis_server.port == 6379
            info = mine[0]
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
        # The bridge network and its published port (test_docker_host_network has the rest).
        "-o",
        "integration_docker_host_network=false",
    )
    result.assert_outcomes(passed=1)


ENGINE_GOES_AWAY = """
import socket, time, redis

def test_it(redis_server):
    assert redis.Redis.from_url(redis_server.url).ping()
    with open("port.txt", "w") as out:
        out.write(str(redis_server.port))
    socket.create_connection(("127.0.0.1", {control})).close()
    for _ in range(100):  # until the engine's address refuses connections
        try:
            socket.create_connection(("127.0.0.1", {engine}), timeout=1).close()
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError("the bridge to the engine was not cut")
"""


def test_an_engine_gone_at_teardown_is_reported_and_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need_docker()
    bridge = CuttableBridge()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{bridge.port}")
    monkeypatch.setenv("INTEGRATION_REDIS_IMAGE", "pytest-integration-kit/redis:7")
    pytester.makepyfile(
        ENGINE_GOES_AWAY.replace("{control}", str(bridge.control_port)).replace(
            "{engine}", str(bridge.port)
        )
    )
    try:
        result = pytester.runpytest_subprocess(
            "-p",
            "no:randomly",
            "-p",
            "no:asyncio",
            "--integration-backend=docker",
            "--integration-missing=fail",
            # The container is found by its published port below.
            "--no-integration-docker-direct",
            "-o",
            "integration_docker_host_network=false",
        )
        result.assert_outcomes(passed=1)
        # The test passed, but a container is left running: the run says so and fails.
        assert result.ret == 1
        result.stdout.fnmatch_lines(
            [
                "*warning: could not stop, still running: redis (docker): container "
                "* could not be removed*",
                "*the next run on this host removes them*",
            ]
        )
        port = (pytester.path / "port.txt").read_text()
        running = subprocess.run(
            ["docker", "-H", ENGINE, "ps", "-q", "--filter", f"publish={port}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(running) == 1  # it really is still there
        assert running[0][:12] in result.stdout.str()
    finally:
        bridge.close()
        port_file = pytester.path / "port.txt"
        if port_file.exists():
            left = subprocess.run(
                [
                    "docker",
                    "-H",
                    ENGINE,
                    "ps",
                    "-aq",
                    "--filter",
                    f"publish={port_file.read_text()}",
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            if left:
                subprocess.run(
                    ["docker", "-H", ENGINE, "rm", "-f", *left], capture_output=True, check=False
                )
