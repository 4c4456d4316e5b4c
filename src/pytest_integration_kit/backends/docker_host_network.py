"""Containers in this machine's network: no bridge, no published port, no docker-proxy.

On the engine's bridge network a container gets a network namespace of its own, a
veth pair, NAT rules and, for each published port, a docker-proxy process. Here that
made ``docker run`` of three containers at once take 0.55 s and 1.0 CPU-s, and 0.27 s
and 0.5 CPU-s with the three in the host's network. So a service that can be told
where to listen (:meth:`~pytest_integration_kit.services.spec.ServiceSpec.host_network`:
PostgreSQL, MySQL/MariaDB, Redis) runs in this machine's network, its server on
127.0.0.1 at a free port and nowhere else (``integration_docker_host_network``).

Only where the engine runs its containers in this process's network namespace: its
bridge network's gateway is one of this machine's addresses. A rootless engine, Docker
Desktop's VM, a remote engine, or tests in a job container beside the engine fail
that check, and their containers stay on the bridge network with a published port.

The port is picked free, then bound by the server a moment later: another process may
take it in between. The server then exits saying so, and the start is tried again on
another port (``PORT_ATTEMPTS`` in all, as the local backend does).

On this machine's loopback a server may trust whoever connects: the official
PostgreSQL image's ``initdb`` writes ``trust`` for 127.0.0.1 unless told otherwise (the
kit tells it, ``--auth-host``), and a user's image may do the same. So once ready, a
login with a wrong password must be refused (:func:`lets_anyone_in`); a server that
lets it in is removed and started on the bridge network instead.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import threading
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.backends.docker_route import is_own_address
from pytest_integration_kit.backends.ports import says_port_taken
from pytest_integration_kit.errors import ServerStartError
from pytest_integration_kit.services.readiness import login_refused

if TYPE_CHECKING:
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.launch import Credentials
    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = [
    "HostLaunch",
    "OpenOnLoopback",
    "PortTaken",
    "engine_shares_network",
    "lets_anyone_in",
    "port_taken",
]

_lock = threading.Lock()
#: Whether each engine (by its base URL) runs containers in this network namespace.
_shares: dict[str, bool] = {}


class PortTaken(ServerStartError):
    """The server exited because another process took its port first: try another."""


@dataclasses.dataclass(frozen=True)
class HostLaunch:
    """A container in this machine's network: its server's port on 127.0.0.1, and the
    environment and arguments (the spec's ``host_network``) that put it there."""

    port: int
    env: dict[str, str]
    args: list[str]

    @property
    def added(self) -> tuple[dict[str, str], list[str]]:
        """What the container's environment and command get."""
        return self.env, self.args

    def endpoint(self, spec: ServiceSpec, credentials: Credentials, backend: str) -> Endpoint:
        """Where the tests reach the server."""
        return spec.endpoint(
            host="127.0.0.1", port=self.port, credentials=credentials, backend=backend
        )

    def check_login(self, spec: ServiceSpec, endpoint: Endpoint, timeout: float) -> None:
        """Raise :class:`OpenOnLoopback` if the ready server lets a wrong password in."""
        if endpoint.password and lets_anyone_in(spec, endpoint, timeout):
            raise OpenOnLoopback(f"{spec.title} trusts a login from 127.0.0.1")


class OpenOnLoopback(ServerStartError):
    """The server let a login with a wrong password in: start it on the bridge network."""


def lets_anyone_in(spec: ServiceSpec, endpoint: Endpoint, timeout: float) -> bool:
    """Whether the ready server at ``endpoint`` does not refuse a login with a wrong
    password as a login (an error of another kind counts as letting it in: the bridge
    network is the safe side)."""
    wrong = dataclasses.replace(endpoint, password=secrets.token_urlsafe(16))
    try:
        spec.probe(wrong, timeout)
    except Exception as exc:  # refused, as it must be, or not a login at all
        return not login_refused(exc)
    return True


def port_taken(error: BaseException) -> bool:
    """Whether ``error`` (a start's, with the server's log tail) says the port was taken."""
    return isinstance(error, ServerStartError) and says_port_taken(str(error))


def engine_shares_network(client: Any) -> bool:
    """Whether ``client``'s engine runs its containers in this process's network
    namespace: its ``bridge`` network's gateway is one of this machine's addresses.
    Asked once per engine."""
    key = str(client.api.base_url)
    with _lock:
        if key in _shares:
            return _shares[key]
    shares = False
    try:
        configs = client.networks.get("bridge").attrs.get("IPAM", {}).get("Config") or []
        shares = any(is_own_address(_gateway(config)) for config in configs)
    except Exception:  # noqa: S110 - no bridge network (Podman's is "podman"): not shared
        pass
    with _lock:
        _shares[key] = shares
    return shares


def _gateway(config: dict[str, Any]) -> str:
    """A bridge subnet's gateway: as configured, else the engine's pick, its first host
    address (Docker 28 lists the default bridge's subnet without it)."""
    if config.get("Gateway"):
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
