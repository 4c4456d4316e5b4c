"""Keep a test on the loopback interface: traffic elsewhere fails with a clear message.

:class:`NetworkGuard` watches the interpreter's audit events ``socket.connect`` (also
raised by ``connect_ex``), ``socket.sendto`` and ``socket.sendmsg``. CPython raises them
inside the C socket methods, before the system call, so every Python-level socket is
covered: ``socket.socket`` and ``_socket.socket``, a bound ``connect`` captured before
the guard started, UDP datagrams, TCP Fast Open (``sendto(..., MSG_FASTOPEN, addr)``),
asyncio, and anything that patches ``socket.socket`` itself (pytest-socket does).
Loopback addresses, Unix sockets and the allowed hosts pass; anything else raises
:class:`NetworkBlocked` and is remembered for the report, so a test whose code
swallowed the error still fails.

An audit hook cannot be removed, so one hook is added the first time a guard starts
and consults the guards that are active (none: it returns at once). Out of reach:
sockets opened in C without Python's socket module (libpq under psycopg, libmysqlclient,
libuv under uvloop, libcurl, grpc, ctypes calls), other processes, and the name lookup
that precedes a connection (the resolver's own queries).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.errors import IntegrationKitError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["AllowList", "NetworkBlocked", "NetworkGuard", "install_audit_hook", "is_loopback"]

SETTING_HINT = (
    "integration_block_network is on: mark the test @pytest.mark.requires_network "
    "if it really needs the network, or point it at a mock (http_mock, mock_server)"
)

#: The audit events that put bytes on the wire towards an address.
EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})
_VERBS = {"socket.connect": "connect to", "socket.sendto": "send to", "socket.sendmsg": "send to"}
_INET = (socket.AF_INET, socket.AF_INET6)
_PACKET = getattr(socket, "AF_PACKET", None)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkBlocked(IntegrationKitError, ConnectionRefusedError):
    """Traffic beyond the loopback interface was attempted while the guard was on.

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
    addresses = _resolve(host)
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def _resolve(host: str) -> frozenset[str]:
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(str(info[4][0]).split("%", 1)[0] for info in infos)


@functools.lru_cache(maxsize=256)
def _resolve_cached(host: str) -> frozenset[str]:
    return _resolve(host)


class AllowList:
    """Hosts a guarded test may reach: names, IP addresses and networks (``10.0.0.0/8``).

    Entries are given as pytest-socket's ``--allow-hosts`` takes them (a list, or one
    comma-separated string). A name also allows the addresses it resolves to, since
    clients resolve before they connect; names are resolved only when an address
    outside loopback is checked, once per process.
    """

    def __init__(self, entries: Iterable[str] | str = ()) -> None:
        if isinstance(entries, str):
            entries = entries.split(",")
        self.names: set[str] = set()
        self.addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self.networks: list[IPNetwork] = []
        for raw in entries:
            entry = str(raw).strip().lower()
            if not entry:
                continue
            try:
                if "/" in entry:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(entry.strip("[]")))
            except ValueError:
                self.names.add(entry)

    def __bool__(self) -> bool:
        return bool(self.names or self.addresses or self.networks)

    def __contains__(self, host: object) -> bool:
        name = str(host).split("%", 1)[0].lower()
        if name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        if address in self.addresses or any(address in net for net in self.networks):
            return True
        return any(name in _resolve_cached(allowed) for allowed in self.names)

    def extend(self, other: AllowList) -> None:
        self.names |= other.names
        self.addresses |= other.addresses
        self.networks += other.networks

    def __repr__(self) -> str:
        entries = sorted(self.names) + sorted(map(str, self.addresses))
        return f"AllowList({entries + [str(n) for n in self.networks]!r})"


class NetworkGuard:
    """While active (``with guard:``), only loopback and ``allowed_hosts`` may be reached.

    ``allowed_hosts`` takes names, addresses and networks (see :class:`AllowList`).
    Guards nest; the innermost active one decides. It applies to every thread.
    """

    def __init__(self, *, allowed_hosts: Iterable[str] | str = (), test: str = "") -> None:
        self.allowed = AllowList(allowed_hosts)
        self.test = test
        self.blocked: list[str] = []

    @property
    def allowed_hosts(self) -> set[str]:
        """The allowed entries, as given (lower case)."""
        return (
            self.allowed.names
            | {str(a) for a in self.allowed.addresses}
            | {str(n) for n in self.allowed.networks}
        )

    def allows(self, host: str) -> bool:
        return is_loopback(host) or host in self.allowed

    def check(self, sock: Any, address: Any, event: str = "socket.connect") -> None:
        """Raise :class:`NetworkBlocked` if ``sock`` may not reach ``address``."""
        if address is None:  # sendmsg on a connected socket: its connect was checked
            return
        family = getattr(sock, "family", None)
        if family in _INET and isinstance(address, tuple):
            host, port = str(address[0]), address[1]
            if self.allows(host):
                return
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        elif _PACKET is not None and family == _PACKET and isinstance(address, tuple):
            if address[0] == "lo":  # raw frames: only the loopback interface
                return
            where = f"interface {address[0]}"
        else:  # Unix sockets, netlink and other local families
            return
        self.blocked.append(where)
        raise NetworkBlocked(
            f"{self.test or 'this test'} tried to {_VERBS.get(event, 'reach')} {where}; "
            f"{SETTING_HINT}"
        )

    def report(self) -> str:
        where = ", ".join(dict.fromkeys(self.blocked))
        return f"connections beyond loopback were blocked ({where}).\n{SETTING_HINT}"

    @property
    def active(self) -> bool:
        return self in _active

    def __enter__(self) -> NetworkGuard:
        global _active  # noqa: PLW0603 - replaced whole, so the hook reads it without a lock
        install_audit_hook()
        with _lock:
            _active = (*_active, self)
        return self

    def __exit__(self, *_: object) -> None:
        global _active  # noqa: PLW0603
        with _lock:
            _active = tuple(guard for guard in _active if guard is not self)


#: The guards that are on, innermost last; a tuple swapped whole under ``_lock``.
_active: tuple[NetworkGuard, ...] = ()
_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in EVENTS:
        return
    guards = _active
    if guards:
        guards[-1].check(args[0], args[1], event)


def install_audit_hook() -> None:
    """Add the (permanent, process-wide) audit hook once; it does nothing while no guard is on.

    Called by the first :class:`NetworkGuard` to start. Call it yourself only to order
    another audit hook after it.
    """
    global _hook_installed  # noqa: PLW0603
    with _lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True
