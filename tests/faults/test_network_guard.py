"""The network guard as a library object: what passes, what is blocked, and how it says so."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_integration_kit.faults.network import NetworkBlocked, NetworkGuard, is_loopback

if TYPE_CHECKING:
    from collections.abc import Iterator

OUTSIDE = ("192.0.2.1", 80)  # TEST-NET-1: never routed


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_loopback_connections_pass(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with NetworkGuard() as guard:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        socket.create_connection(("localhost", port), timeout=2).close()
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


def test_asyncio_connections_are_blocked_too() -> None:
    async def connect() -> None:
        await asyncio.wait_for(asyncio.open_connection(*OUTSIDE), 2)

    with NetworkGuard() as guard, pytest.raises(NetworkBlocked):
        asyncio.run(connect())
    assert guard.blocked == ["192.0.2.1:80"]


def test_allowed_hosts_pass() -> None:
    with NetworkGuard(allowed_hosts=["192.0.2.1"]) as guard:
        sock = socket.socket()
        sock.settimeout(0.05)
        try:
            code = sock.connect_ex(OUTSIDE)  # times out or is unreachable: not blocked
        finally:
            sock.close()
        assert code != 0
    assert guard.blocked == []


def test_the_patch_is_undone_on_exit() -> None:
    connect = socket.socket.connect
    with NetworkGuard():
        assert socket.socket.connect is not connect
    assert socket.socket.connect is connect


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.8.9.10")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("192.0.2.1")
    assert not is_loopback("2001:db8::1")
    assert not is_loopback("no-such-host.invalid")
