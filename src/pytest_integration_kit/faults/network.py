"""Keep a test on the loopback interface: connections elsewhere fail with a clear message.

:class:`NetworkGuard` patches ``socket.socket.connect``/``connect_ex`` (which
``socket.create_connection``, asyncio, urllib, requests and httpx all go through) while
it is active. Loopback addresses, Unix sockets and the hosts it was told about pass;
anything else raises :class:`NetworkBlocked` and is remembered for the report, so a
test whose code swallowed the error still fails. Native drivers that open sockets in
C (libpq under psycopg, say) are out of its reach.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.errors import IntegrationKitError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["NetworkBlocked", "NetworkGuard", "is_loopback"]

SETTING_HINT = (
    "integration_block_network is on: mark the test @pytest.mark.requires_network "
    "if it really needs the network, or point it at a mock (http_mock, mock_server)"
)


class NetworkBlocked(IntegrationKitError, ConnectionRefusedError):
    """A connection beyond the loopback interface was attempted while the guard was on.

    A ``ConnectionRefusedError`` too, so client libraries treat it as a refused connection.
    """


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (resolving names)."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        pass
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(is_loopback(str(a)) for a in addresses)


class NetworkGuard:
    """While active (``with guard:``), only loopback and ``allowed_hosts`` may be connected to."""

    _lock = threading.Lock()

    def __init__(self, *, allowed_hosts: Iterable[str] = (), test: str = "") -> None:
        self.allowed_hosts = {h.lower() for h in allowed_hosts if h}
        self.test = test
        self.blocked: list[str] = []
        self._originals: tuple[Callable[..., Any], Callable[..., Any]] | None = None

    def allows(self, host: str) -> bool:
        return host.lower() in self.allowed_hosts or is_loopback(host)

    def check(self, sock: socket.socket, address: Any) -> None:
        """Raise :class:`NetworkBlocked` if ``sock`` may not connect to ``address``."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host, port = str(address[0]), address[1]
        if self.allows(host):
            return
        where = f"{host}:{port}"
        self.blocked.append(where)
        raise NetworkBlocked(
            f"{self.test or 'this test'} tried to connect to {where}; {SETTING_HINT}"
        )

    def report(self) -> str:
        where = ", ".join(dict.fromkeys(self.blocked))
        return f"connections beyond loopback were blocked ({where}).\n{SETTING_HINT}"

    def __enter__(self) -> NetworkGuard:
        guard = self
        with self._lock:
            connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
            self._originals = (connect, connect_ex)

            def guarded_connect(sock: socket.socket, address: Any) -> None:
                guard.check(sock, address)
                connect(sock, address)

            def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
                guard.check(sock, address)
                return int(connect_ex(sock, address))

            socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
            socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            if self._originals is not None:
                connect, connect_ex = self._originals
                socket.socket.connect = connect  # type: ignore[method-assign]
                socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
                self._originals = None
