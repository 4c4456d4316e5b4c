"""Tests reach a container at its own address (no docker-proxy) where this machine is on
the engine's bridge network, and at its published loopback port when told to."""

from __future__ import annotations

import socket
import time

import pytest

from pytest_integration_kit.backends.docker_route import direct_address

IMAGE = "pytest-integration-kit/redis:7"

WHERE_IS_IT = """
import json, subprocess
import redis


def _container(host):
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=pytest-integration-kit.service=redis"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    for info in json.loads(subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout):
        # Another test's container in this machine's network publishes nothing.
        published = (info["NetworkSettings"]["Ports"] or {}).get("6379/tcp") or []
        own = [n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values()]
        yield own, [(b["HostIp"], int(b["HostPort"])) for b in published]


def test_where(redis_server, redis_client):
    containers = list(_container(redis_server.host))
    if DIRECT:
        assert redis_server.port == 6379
        assert [c for c in containers if redis_server.host in c[0]]
    else:
        assert redis_server.host == "127.0.0.1"
        assert [c for c in containers if ("127.0.0.1", redis_server.port) in c[1]]
    # Published on the loopback only, whichever way the tests go.
    assert all(ip == "127.0.0.1" for _, bindings in containers for ip, _ in bindings)
    assert redis.Redis.from_url(redis_server.url).ping()
    redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"
"""


@pytest.mark.usefixtures("docker_available")
@pytest.mark.parametrize("direct", [True, False], ids=["default", "off"])
def test_the_tests_reach_the_container_at_its_own_address_unless_told_not_to(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    monkeypatch.delenv("TESTCONTAINERS_HOST_OVERRIDE", raising=False)
    monkeypatch.setenv("INTEGRATION_REDIS_IMAGE", IMAGE)
    # On the bridge network: where the engine shares this machine's network, these
    # services would otherwise run in it (test_docker_host_network).
    ini = (
        "[pytest]\nintegration_backend = docker\nintegration_missing = fail\n"
        "integration_docker_host_network = false\n"
    )
    if not direct:
        ini += "integration_docker_direct = false\n"
    pytester.makeini(ini)
    pytester.makepyfile(WHERE_IS_IT.replace("DIRECT", repr(direct)))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)


def _networks(*, address: str, gateway: str) -> dict[str, object]:
    """A container's inspect data, as far as its networks go."""
    return {"NetworkSettings": {"Networks": {"bridge": {"IPAddress": address, "Gateway": gateway}}}}


def test_a_network_this_machine_is_not_on_is_not_tried() -> None:
    # TEST-NET-1 (RFC 5737): never one of this machine's addresses.
    attrs = _networks(address="192.0.2.7", gateway="192.0.2.1")
    started = time.monotonic()
    assert direct_address(attrs, 6379) is None
    assert time.monotonic() - started < 0.1  # no connection was attempted
    assert direct_address({"NetworkSettings": {"Networks": {}}}, 6379) is None
    assert direct_address({}, 6379) is None


def test_a_port_that_refuses_leaves_the_published_one() -> None:
    # This machine's own address as the "container": the port below refuses.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    attrs = _networks(address="127.0.0.1", gateway="127.0.0.1")
    assert direct_address(attrs, free) is None
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        assert direct_address(attrs, port) == "127.0.0.1"
