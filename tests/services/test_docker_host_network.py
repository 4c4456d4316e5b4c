"""PostgreSQL, MySQL/MariaDB and Redis containers in this machine's network: on 127.0.0.1
only, behind their password, on another port when theirs was taken, and on the bridge
network when the image trusts the loopback."""

from __future__ import annotations

import io

import docker
import pytest
from tests.conftest import TEST_IMAGES

from pytest_integration_kit.backends.docker_host_network import _gateway, engine_shares_network

pytestmark = pytest.mark.usefixtures("docker_available")

#: What each test checks of a server's container, by its endpoint.
INSPECT = """
import json, socket, subprocess

import pytest


def container_of(server):
    # The container of server (an Endpoint) among all the kit's of its service.
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter",
         "label=pytest-integration-kit.service=" + server.service],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    port = str(server.port)
    for info in json.loads(subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout):
        config, network = info["Config"], info["NetworkSettings"]
        said = [v.split("=", 1)[1] for v in config["Env"] or []]
        said += (config["Cmd"] or []) + (info["Args"] or [])
        said += [b["HostPort"] for bs in (network["Ports"] or {}).values() for b in bs or []]
        addresses = [n["IPAddress"] for n in network["Networks"].values()]
        if port in said or server.host in addresses:
            return info
    raise AssertionError(f"no container of {server}")


def refused(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False
"""

LOOPBACK_ONLY = (
    INSPECT
    + """
import psycopg, pymysql, redis

from pytest_integration_kit.services.readiness import login_refused


def wrong_password_refused(service, server):
    try:
        if service == "postgres":
            psycopg.connect(host=server.host, port=server.port, user=server.user,
                            password="wrong", dbname=server.database, connect_timeout=5).close()
        elif service == "mysql":
            pymysql.connect(host=server.host, port=server.port, user=server.user,
                            password="wrong", connect_timeout=5).close()
        else:
            redis.Redis(host=server.host, port=server.port, password="wrong").ping()
    except Exception as exc:
        return login_refused(exc)
    return False


@pytest.mark.parametrize("service", ["postgres", "mysql", "redis"])
def test_in_this_machines_network(service, request):
    server = request.getfixturevalue(service + "_server")
    info = container_of(server)
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert not info["HostConfig"]["PortBindings"]
    assert server.host == "127.0.0.1"
    socket.create_connection((server.host, server.port), timeout=5).close()
    # This machine's address on the bridge network is one of its own: the server's port
    # refuses there, so it listens on the loopback only.
    assert refused(GATEWAY, server.port)
    assert wrong_password_refused(service, server)
"""
)


def _bridge_gateway() -> str:
    """This machine's own address on the engine's bridge network."""
    configs = docker.from_env().networks.get("bridge").attrs["IPAM"]["Config"]
    return _gateway(configs[0])


def test_this_engine_shares_this_machines_network() -> None:
    assert engine_shares_network(docker.from_env())


def test_a_subnet_without_a_gateway_has_the_engines_pick() -> None:
    assert _gateway({"Subnet": "172.17.0.0/16"}) == "172.17.0.1"
    assert _gateway({"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.254"}) == "10.9.0.254"


def test_servers_listen_on_the_loopback_only_behind_their_password(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service, image in TEST_IMAGES.items():
        monkeypatch.setenv(f"INTEGRATION_{service.upper()}_IMAGE", image)
    pytester.makeini("[pytest]\nintegration_backend = docker\nintegration_missing = fail\n")
    pytester.makepyfile(LOOPBACK_ONLY.replace("GATEWAY", repr(_bridge_gateway())))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio")
    result.assert_outcomes(passed=3)


TAKEN_PORT = (
    INSPECT
    + """
def test_another_port(redis_server, redis_client):
    with open("taken.txt") as f:
        taken = int(f.read())
    assert redis_server.port != taken
    assert container_of(redis_server)["HostConfig"]["NetworkMode"] == "host"
    assert redis_client.ping()
"""
)

#: The kit's first pick is a port this run's conftest holds open on 127.0.0.1.
TAKE_THE_FIRST_PICK = """
import socket

import pytest_integration_kit.backends.docker as docker_backend

held = socket.create_server(("127.0.0.1", 0))
with open("taken.txt", "w") as f:
    f.write(str(held.getsockname()[1]))
picks = [held.getsockname()[1]]
real_free_port = docker_backend.free_port
docker_backend.free_port = lambda: picks.pop() if picks else real_free_port()
"""


def test_a_taken_port_is_tried_again_on_another(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_REDIS_IMAGE", TEST_IMAGES["redis"])
    pytester.makeini("[pytest]\nintegration_backend = docker\nintegration_missing = fail\n")
    pytester.makeconftest(TAKE_THE_FIRST_PICK)
    pytester.makepyfile(TAKEN_PORT)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)


#: A user's image whose initdb keeps its default pg_hba: trust on 127.0.0.1.
TRUSTING_IMAGE = "pytest-integration-kit-test/postgres-trusts-loopback:1"
TRUSTING_DOCKERFILE = (
    "FROM {base}\n"
    'ENTRYPOINT ["sh", "-c", "unset POSTGRES_INITDB_ARGS; exec docker-entrypoint.sh \\"$@\\"",'
    ' "sh"]\n'
    'CMD ["postgres"]\n'
)

TRUSTING = (
    INSPECT
    + """
import psycopg


def test_on_the_bridge(postgres_server):
    info = container_of(postgres_server)
    assert info["HostConfig"]["NetworkMode"] != "host"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                        user=postgres_server.user, password="wrong",
                        dbname=postgres_server.database, connect_timeout=5)
"""
)


@pytest.fixture
def trusting_image() -> str:
    """An image of the test PostgreSQL whose data directory trusts the loopback."""
    client = docker.from_env()
    client.images.build(
        fileobj=io.BytesIO(TRUSTING_DOCKERFILE.format(base=TEST_IMAGES["postgres"]).encode()),
        tag=TRUSTING_IMAGE,
        network_mode="none",
        rm=True,
    )
    return TRUSTING_IMAGE


def test_an_image_that_trusts_the_loopback_runs_on_the_bridge(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, trusting_image: str
) -> None:
    monkeypatch.setenv("INTEGRATION_POSTGRES_IMAGE", trusting_image)
    pytester.makeini(
        "[pytest]\nintegration_backend = docker\nintegration_missing = fail\n"
        "integration_warm_start = false\n"
    )
    pytester.makepyfile(TRUSTING)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)
