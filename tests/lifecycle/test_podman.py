"""The docker backend against Podman's Docker-compatible API (Debian's ``podman``).

Podman serves the Docker API on a socket of its own (``podman system service``); the
kit needs nothing but ``DOCKER_HOST`` pointing there. These tests start that service on
a private socket, give it the offline test images, and run users' projects through it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from user_project import make_project, wait_for

#: Podman's default ulimits cannot be set inside this sandbox's containers; the host's
#: are inherited instead (a setting of Podman's, not of the kit's).
CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n"
IMAGES = {
    "postgres": "pytest-integration-kit/postgres:15",
    "redis": "pytest-integration-kit/redis:7",
}
SUITE = """
from sqlalchemy import text

def test_postgres(postgres_session, report):
    report(service="postgres")
    postgres_session.execute(text("CREATE TABLE IF NOT EXISTS t (x int)"))
    assert postgres_session.execute(text("SELECT 1")).scalar() == 1

def test_redis(redis_client):
    redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"
"""
HOLD = """
import time

def test_hold(redis_server, report):
    report(service="redis")
    time.sleep(600)
"""


def _podman(*args: str, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.fixture(scope="module")
def podman_host() -> Iterator[str]:
    """``DOCKER_HOST`` of a Podman API service started for these tests."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: ./dev provision installs Debian's")
    top = Path(tempfile.mkdtemp(prefix="pik-podman-"))
    conf = top / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    for image in IMAGES.values():  # no registry: the offline images, from Docker's store
        if subprocess.run(["podman", "image", "exists", image], check=False).returncode:
            with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as saved:
                _podman("load", stdin=saved.stdout, env=env)
            assert saved.returncode == 0
    socket = top / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(socket.exists, timeout=30, what="the podman API socket")
        yield f"unix://{socket}"
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def on_podman(podman_host: str, monkeypatch: pytest.MonkeyPatch) -> docker.DockerClient:
    """Inner runs use the docker backend on Podman; a client to look at its containers."""
    monkeypatch.setenv("DOCKER_HOST", podman_host)
    monkeypatch.setenv("INTEGRATION_BACKEND", "docker")
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    for service, image in IMAGES.items():
        monkeypatch.setenv(f"INTEGRATION_{service.upper()}_IMAGE", image)
    return docker.DockerClient(base_url=podman_host, timeout=30)


def _containers(client: docker.DockerClient, session: str) -> list[str]:
    label = f"pytest-integration-kit.session={session}"
    return [str(c.id) for c in client.containers.list(all=True, filters={"label": label})]


def test_a_suite_runs_on_podman_under_xdist(
    pytester: pytest.Pytester, on_podman: docker.DockerClient
) -> None:
    project = make_project(pytester.path / "app", SUITE)
    result = project.run("-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert "postgres  docker" in result.stdout
    assert "redis     docker" in result.stdout
    (session,) = {r["session"] for r in project.reports()}
    assert _containers(on_podman, session) == []  # stopped and removed


def test_kill_9_on_podman_is_reaped_by_the_next_run(
    pytester: pytest.Pytester, on_podman: docker.DockerClient
) -> None:
    dead = make_project(pytester.path / "dead", HOLD)
    process = dead.popen()
    try:
        wait_for(lambda: dead.reports() or process.poll() is not None, what="the server")
        assert process.poll() is None, process.communicate()[0]
        (session,) = {r["session"] for r in dead.reports()}
        assert _containers(on_podman, session)  # the server is up
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert _containers(on_podman, session)  # kill -9: nothing cleaned up
    later = make_project(pytester.path / "later", "def test_nothing():\n    pass\n")
    result = later.run()
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 60  # the container's removal is asynchronous
    while _containers(on_podman, session) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _containers(on_podman, session) == []
