"""Where the tests reach a container: its published port, or its own address.

A local engine publishes a container's port on 127.0.0.1, and a connection to it goes
through docker-proxy, a process that copies the bytes of every connection both ways:
a Redis ``PING`` took 215 µs a round trip that way here, 135 µs to the container's own
address on the engine's bridge network, and 125 µs to a server on the loopback. A
test makes several round trips, so where this machine is on that network (the
network's gateway is one of its addresses, and a connection to the container's port
is accepted there) the endpoint is the container's own address and port
(``integration_docker_direct``). Nothing is opened wider by it: the container's
server listens on that address either way (docker-proxy connects to it there), and
the published port stays, on 127.0.0.1 only.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pytest_integration_kit.services.endpoint import LOOPBACK

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = ["LOOPBACK", "direct_address", "direct_endpoint", "engine_address", "is_own_address"]

#: How long a connection to a container's own address may take before the published
#: port is used instead (a firewall that drops it, rather than refusing it).
PROBE_TIMEOUT = 0.2


def engine_address(base_url: str, docker_host: str | None = None) -> tuple[str, str]:
    """Where to connect to published ports, and which host IP to publish them on.

    A local engine (unix socket, or TCP on loopback) publishes on 127.0.0.1 only. A
    remote engine (``DOCKER_HOST=tcp://docker:2375``, CI's Docker-in-Docker) publishes
    on its own host, whose loopback we cannot reach, so it binds all its interfaces and
    we connect to its host name. ``TESTCONTAINERS_HOST_OVERRIDE`` wins for the former.
    """
    override = os.environ.get("TESTCONTAINERS_HOST_OVERRIDE")
    parts = urlsplit(base_url)
    host = parts.hostname
    if docker_host and docker_host.startswith("ssh://"):
        host = urlsplit(docker_host).hostname
    elif parts.scheme in ("http+docker", "http+unix", "unix", "npipe"):
        host = None
    if host is None or host in LOOPBACK:
        return override or "127.0.0.1", "127.0.0.1"
    return override or host, "0.0.0.0"  # noqa: S104 - a remote engine's loopback is unreachable


def direct_address(attrs: Mapping[str, Any], port: int) -> str | None:
    """The container's address on a network this machine is on, where ``port`` accepts
    a connection; None: only its published port reaches it (rootless or remote engines,
    Docker Desktop's VM, a firewall in between).

    ``attrs``: the container's ``docker inspect``, reloaded after its start.
    """
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    for network in networks.values():
        address, gateway = network.get("IPAddress"), network.get("Gateway")
        if not address or not gateway or not is_own_address(gateway):
            continue
        try:
            with socket.create_connection((address, port), timeout=PROBE_TIMEOUT):
                return str(address)
        except OSError:
            continue
    return None


def direct_endpoint(endpoint: Endpoint, spec: ServiceSpec, attrs: Mapping[str, Any]) -> Endpoint:
    """``endpoint`` at the container's own address and ports if this machine reaches
    them (:func:`direct_address`), else ``endpoint`` as it is."""
    address = direct_address(attrs, spec.container_port)
    if address is None:
        return endpoint
    return dataclasses.replace(
        endpoint,
        host=address,
        port=spec.container_port,
        ports=dict(spec.extra_ports) if spec.extra_ports else endpoint.ports,
    )


def is_own_address(address: str) -> bool:
    """Whether ``address`` is one of this machine's: binding to it succeeds only then."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True
