"""The network guard as a library object: what passes, what is blocked, and how it says so.

No test here sends a packet off this machine: a *tripwire* audit hook, added after the
guard's own, raises :class:`Tripwire` for any socket call towards an address beyond
loopback that got past the guard — just before the system call. An unguarded call
reaching the tripwire proves the test would have gone out; a guarded one raising
``NetworkBlocked`` instead proves the guard stopped it first.
"""

from __future__ import annotations

import _socket
import asyncio
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_integration_kit.faults.network import (
    EVENTS,
    AllowList,
    NetworkBlocked,
    NetworkGuard,
    install_audit_hook,
    is_loopback,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

OUTSIDE = ("192.0.2.1", 80)  # TEST-NET-1: documentation only; the tripwire keeps it local
OUTSIDE_DNS = ("192.0.2.1", 53)


class Tripwire(Exception):
    """A socket call towards a non-loopback address got past every guard."""


_armed = threading.Event()


def _tripwire(event: str, args: tuple[Any, ...]) -> None:
    if not _armed.is_set() or event not in EVENTS or args[1] is None:
        return
    sock, address = args
    inet = getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6)
    if inet and not is_loopback(str(address[0])):
        raise Tripwire(f"{event} {address!r} would have left this machine")


install_audit_hook()  # the guard's hook first: audit hooks run in the order added
sys.addaudithook(_tripwire)


@pytest.fixture(autouse=True)
def tripwire() -> Iterator[None]:
    """Arm the tripwire for the test: a connection that escapes the guard is seen."""
    _armed.set()
    try:
        yield
    finally:
        _armed.clear()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1 (a free port) for loopback connections."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_loopback_connections_pass(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with NetworkGuard() as guard:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        socket.create_connection(("localhost", port), timeout=2).close()
    assert guard.blocked == []


def test_loopback_datagrams_pass() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        address = receiver.getsockname()
        with NetworkGuard() as guard:
            sender.sendto(b"one", address)
            sender.sendmsg([b"two"], [], 0, address)
            sender.connect(address)
            sender.sendmsg([b"three"])  # connected: no address to check
        assert [receiver.recv(16) for _ in range(3)] == [b"one", b"two", b"three"]
    assert guard.blocked == []


def test_unix_sockets_pass() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "s")
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.listen()
        try:
            with NetworkGuard() as guard, socket.socket(socket.AF_UNIX) as client:
                client.connect(path)
        finally:
            server.close()
    assert guard.blocked == []


def test_outside_is_blocked_with_advice() -> None:
    with NetworkGuard(test="tests/test_x.py::test_y") as guard:
        with pytest.raises(NetworkBlocked, match="requires_network") as raised:
            socket.create_connection(OUTSIDE, timeout=2)
        assert isinstance(raised.value, ConnectionRefusedError)
        assert "tests/test_x.py::test_y tried to connect to 192.0.2.1:80" in str(raised.value)
        sock = socket.socket()
        with pytest.raises(NetworkBlocked):
            sock.connect_ex(OUTSIDE)
        sock.close()
    assert guard.blocked == ["192.0.2.1:80", "192.0.2.1:80"]
    assert "(192.0.2.1:80)" in guard.report()


def _udp_sendto() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", OUTSIDE_DNS)


def _udp_sendmsg() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendmsg([b"x"], [], 0, OUTSIDE_DNS)


def _tcp_fast_open() -> None:
    with socket.socket() as sock:
        sock.sendto(b"GET / HTTP/1.0\r\n\r\n", getattr(socket, "MSG_FASTOPEN", 0x20000000), OUTSIDE)


def _raw_socket_class() -> None:
    sock = _socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(0.05)
        sock.connect(OUTSIDE)
    finally:
        sock.close()


def _ipv6() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", ("2001:db8::1", 53))


def _udp_connect_then_send() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(OUTSIDE_DNS)
        sock.send(b"x")


BYPASSES: dict[str, Callable[[], None]] = {
    "udp-sendto": _udp_sendto,
    "udp-sendmsg": _udp_sendmsg,
    "tcp-fast-open": _tcp_fast_open,
    "_socket.socket.connect": _raw_socket_class,
    "ipv6-sendto": _ipv6,
    "udp-connect": _udp_connect_then_send,
}


@pytest.mark.parametrize("name", BYPASSES)
def test_without_the_guard_the_call_would_go_out(name: str) -> None:
    """The control: each call below really reaches the socket layer with its address."""
    with pytest.raises(Tripwire):
        BYPASSES[name]()


@pytest.mark.parametrize("name", BYPASSES)
def test_every_way_out_is_blocked_before_the_system_call(name: str) -> None:
    with NetworkGuard() as guard, pytest.raises(NetworkBlocked, match="requires_network"):
        BYPASSES[name]()
    assert len(guard.blocked) == 1


def test_a_connect_captured_before_the_guard_is_blocked() -> None:
    sock = socket.socket()
    connect = sock.connect  # as a library that bound it at import time would
    try:
        with NetworkGuard() as guard, pytest.raises(NetworkBlocked):
            connect(OUTSIDE)
    finally:
        sock.close()
    assert guard.blocked == ["192.0.2.1:80"]


def test_a_patched_socket_class_is_blocked_too() -> None:
    """Another tool replacing ``socket.socket.connect`` (pytest-socket does) goes around
    nothing: the audit event is raised below it."""
    original = socket.socket.connect

    def patched(self: socket.socket, address: Any) -> None:
        calls.append(address)
        original(self, address)

    calls: list[Any] = []
    socket.socket.connect = patched  # type: ignore[method-assign]
    try:
        with NetworkGuard(), socket.socket() as sock, pytest.raises(NetworkBlocked):
            sock.connect(OUTSIDE)
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]
    assert calls == [OUTSIDE]


def test_asyncio_connections_and_datagrams_are_blocked_too() -> None:
    async def connect() -> None:
        await asyncio.wait_for(asyncio.open_connection(*OUTSIDE), 2)

    received: list[Exception] = []

    class Protocol(asyncio.DatagramProtocol):
        def error_received(self, exc: Exception) -> None:  # the transport hands errors here
            received.append(exc)

    async def datagram() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Protocol, family=socket.AF_INET)
        try:
            transport.sendto(b"x", OUTSIDE_DNS)
        finally:
            transport.close()

    with NetworkGuard() as guard:
        with pytest.raises(NetworkBlocked):
            asyncio.run(connect())
        asyncio.run(datagram())
    assert [type(e) for e in received] == [NetworkBlocked]
    assert guard.blocked == ["192.0.2.1:80", "192.0.2.1:53"]


def test_other_threads_are_guarded() -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _udp_sendto()
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    with NetworkGuard():
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(5)
    assert [type(e) for e in errors] == [NetworkBlocked]


def test_allowed_hosts_pass() -> None:
    """Allowed: the call goes past the guard (and then trips the test's tripwire)."""
    for allowed in (["192.0.2.1"], ["192.0.2.0/24"], "10.0.0.1, 192.0.2.1"):
        with NetworkGuard(allowed_hosts=allowed) as guard, pytest.raises(Tripwire):
            _udp_sendto()
        assert guard.blocked == []


def test_an_allowed_name_allows_its_addresses() -> None:
    allowed = AllowList(["LocalHost", "10.1.0.0/16", "::2"])
    assert "localhost" in allowed
    assert "10.1.2.3" in allowed
    assert "::2" in allowed
    assert "127.0.0.1" in allowed  # what localhost resolves to
    assert "10.2.0.1" not in allowed
    assert "192.0.2.1" not in allowed


def test_guards_nest_and_stop() -> None:
    with NetworkGuard() as outer:
        with NetworkGuard(allowed_hosts=["192.0.2.1"]) as inner, pytest.raises(Tripwire):
            _udp_sendto()
        assert inner.blocked == []
        assert not inner.active
        with pytest.raises(NetworkBlocked):
            _udp_sendto()
    assert outer.blocked == ["192.0.2.1:53"]
    assert not outer.active
    with pytest.raises(Tripwire):  # no guard any more: it would go out
        _udp_sendto()


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.8.9.10")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("192.0.2.1")
    assert not is_loopback("2001:db8::1")
    assert not is_loopback("no-such-host.invalid")


# -- as users meet it: integration_block_network in a pytester project ------------------

INI = """
[pytest]
addopts = -p no:randomly -p no:cacheprovider
asyncio_default_fixture_loop_scope = function
"""

TRIPWIRE_CONFTEST = """
import socket
import sys

from pytest_integration_kit.faults.network import EVENTS, install_audit_hook, is_loopback


class Tripwire(Exception):
    pass


def _tripwire(event, args):
    if event in EVENTS and args[1] is not None:
        if args[0].family in (socket.AF_INET, socket.AF_INET6):
            if not is_loopback(str(args[1][0])):
                raise Tripwire(f"{event} {args[1]!r} got past the guard")


install_audit_hook()
sys.addaudithook(_tripwire)
"""

BYPASSING = """
import _socket
import socket
import pytest

OUT = ("192.0.2.1", 53)
CAPTURED = socket.socket()
CONNECT = CAPTURED.connect  # bound at import, before any guard

def test_udp_sendto():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(ConnectionRefusedError, match="requires_network"):
            sock.sendto(b"x", OUT)

def test_udp_sendmsg():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(ConnectionRefusedError, match="requires_network"):
            sock.sendmsg([b"x"], [], 0, OUT)

def test_tcp_fast_open():
    with socket.socket() as sock:
        with pytest.raises(ConnectionRefusedError, match="requires_network"):
            sock.sendto(b"x", getattr(socket, "MSG_FASTOPEN", 0x20000000), OUT)

def test_underlying_socket_class():
    sock = _socket.socket()
    try:
        with pytest.raises(ConnectionRefusedError, match="requires_network"):
            sock.connect(OUT)
    finally:
        sock.close()

def test_connect_captured_before_the_guard():
    with pytest.raises(ConnectionRefusedError, match="requires_network"):
        CONNECT(OUT)

@pytest.mark.requires_network
def test_marked_goes_through():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(Exception) as raised:
            sock.sendto(b"x", OUT)
    assert type(raised.value).__name__ == "Tripwire"
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A user project on the local backend whose conftest arms the tripwire."""
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    pytester.makeini(INI)
    pytester.makeconftest(TRIPWIRE_CONFTEST)
    return pytester


def test_block_network_leaves_no_way_out(project: pytest.Pytester) -> None:
    project.makepyfile(BYPASSING)
    result = project.runpytest_subprocess("--integration-block-network")
    result.assert_outcomes(passed=6, errors=5)
    for test in ("udp_sendto", "udp_sendmsg", "tcp_fast_open", "underlying_socket_class"):
        result.stdout.fnmatch_lines(
            [f"*ERROR at teardown of test_{test}*", "*beyond loopback were blocked (192.0.2.1:53)*"]
        )
    result.stdout.no_fnmatch_line("*Tripwire*")


def test_without_block_network_the_tripwire_sees_every_call(project: pytest.Pytester) -> None:
    """The control for the test above: unguarded, each call would have gone out."""
    project.makepyfile(BYPASSING)
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=5)
    assert result.stdout.str().count("Tripwire: socket.") == 5


ALLOWING = """
import socket
import pytest

def send(host):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", (host, 53))

def test_allowed_host_goes_through():
    with pytest.raises(Exception) as raised:
        send("192.0.2.1")
    assert type(raised.value).__name__ == "Tripwire"  # past the guard, stopped by the test

def test_another_host_is_blocked():
    with pytest.raises(ConnectionRefusedError, match="requires_network"):
        send("192.0.2.99")
"""


@pytest.mark.parametrize("where", ["cli", "env", "ini"])
def test_integration_allow_hosts(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    project.makepyfile(ALLOWING)
    args = ["--integration-block-network"]
    if where == "cli":
        args.append("--integration-allow-hosts=api.internal,192.0.2.0/30")
    elif where == "env":
        monkeypatch.setenv("INTEGRATION_ALLOW_HOSTS", "192.0.2.1 10.0.0.0/8")
    else:
        project.makeini(INI + "integration_allow_hosts = 192.0.2.1\n")
    result = project.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_another_host_is_blocked*", "*blocked (192.0.2.99:53)*"]
    )


def test_a_bad_allow_list_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makepyfile("def test_x(): pass")
    result = project.runpytest_subprocess("--integration-allow-hosts=10.0.0.0/33")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*integration_allow_hosts*'10.0.0.0/33'*networks*"])
    assert "Traceback" not in result.stderr.str()


PYTEST_SOCKET_MARKED = """
import socket
import pytest

def send(host):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", (host, 53))

def tripped(host):
    with pytest.raises(Exception) as raised:
        send(host)
    return type(raised.value).__name__ == "Tripwire"

@pytest.mark.enable_socket
def test_enable_socket_marker():
    assert tripped("192.0.2.1")

def test_socket_enabled_fixture(socket_enabled):
    assert tripped("192.0.2.1")

@pytest.mark.allow_hosts(["192.0.2.1"])
def test_allow_hosts_marker_list():
    assert tripped("192.0.2.1")
    with pytest.raises(ConnectionRefusedError, match="requires_network"):
        send("192.0.2.2")

@pytest.mark.allow_hosts("192.0.2.5,192.0.2.6")
def test_allow_hosts_marker_string():
    assert tripped("192.0.2.6")

@pytest.mark.allow_hosts(["127.0.0.1"])
def test_allow_hosts_marker_adds_hosts_only():
    with pytest.raises(ConnectionRefusedError, match="requires_network"):
        send("192.0.2.1")

def test_unmarked_is_blocked():
    with pytest.raises(ConnectionRefusedError, match="requires_network"):
        send("192.0.2.1")
"""


def test_pytest_socket_markers_and_fixture_are_honoured(project: pytest.Pytester) -> None:
    project.makepyfile(PYTEST_SOCKET_MARKED)
    result = project.runpytest_subprocess("--integration-block-network", "--strict-markers")
    result.assert_outcomes(passed=6, errors=3)
    for test in ("list", "adds_hosts_only"):
        result.stdout.fnmatch_lines([f"*ERROR at teardown of test_allow_hosts_marker_{test}*"])
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_unmarked_is_blocked*"])


def test_pytest_socket_allow_hosts_option_is_honoured(project: pytest.Pytester) -> None:
    project.makepyfile(ALLOWING)
    result = project.runpytest_subprocess(
        "--integration-block-network", "--allow-hosts=127.0.0.1,192.0.2.1"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*blocked (192.0.2.99:53)*"])


def test_pytest_socket_force_enable_lets_everything_through(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import socket
        import pytest

        def test_x():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                with pytest.raises(Exception) as raised:
                    sock.sendto(b"x", ("192.0.2.1", 53))
            assert type(raised.value).__name__ == "Tripwire"
        """
    )
    result = project.runpytest_subprocess("--integration-block-network", "--force-enable-socket")
    result.assert_outcomes(passed=1)
