"""How the fault proxy forwards bytes, seen from both ends: a real client socket on one
side, a plain TCP server of the test's own on the other (so each edge can be driven:
half-closes, resets, a reader that stops reading, toxics coming and going mid-stream).

Most tests run twice: on the straight path (no toxic) and on the toxics' queued path
(a toxic that acts but changes nothing: zero latency on both directions).
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING

import pytest

from pytest_integration_kit.faults.proxy import FaultProxy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

PATHS = ["straight", "through a toxic"]


@contextlib.contextmanager
def upstream(handler: Callable[[socket.socket], None]) -> Iterator[tuple[str, int]]:
    """A TCP server on 127.0.0.1 running ``handler`` on each connection in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def run(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            with contextlib.suppress(OSError):
                handler(conn)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=run, args=(conn,), daemon=True).start()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stop.set()
        server.join(5)
        listener.close()


@contextlib.contextmanager
def proxied(
    handler: Callable[[socket.socket], None], path: str
) -> Iterator[tuple[FaultProxy, socket.socket]]:
    """A proxy in front of ``upstream(handler)`` and a client socket connected through it."""
    with upstream(handler) as address, FaultProxy(address, seed=1) as proxy:
        if path != "straight":
            proxy.latency(0.0, direction="both")
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
            yield proxy, sock


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def read_exactly(sock: socket.socket, size: int) -> bytearray:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = sock.recv_into(view[got:])
        assert n, f"EOF after {got} of {size} bytes"
        got += n
    return data


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- half-close: EOF from each side ----------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_the_clients_eof_reaches_the_server_and_its_answer_still_comes_back(path: str) -> None:
    def reverse_what_came_before_eof(conn: socket.socket) -> None:
        conn.sendall(read_to_eof(conn)[::-1])

    with proxied(reverse_what_came_before_eof, path) as (_, sock):
        sock.sendall(b"hello, ")
        sock.sendall(b"world")
        sock.shutdown(socket.SHUT_WR)
        assert read_to_eof(sock) == b"dlrow ,olleh"


@pytest.mark.parametrize("path", PATHS)
def test_the_servers_eof_reaches_the_client_which_can_still_send(path: str) -> None:
    after: queue.Queue[bytes] = queue.Queue()

    def say_bye_then_listen(conn: socket.socket) -> None:
        conn.sendall(b"bye")
        conn.shutdown(socket.SHUT_WR)
        after.put(read_to_eof(conn))

    with proxied(say_bye_then_listen, path) as (_, sock):
        assert read_to_eof(sock) == b"bye"
        sock.sendall(b"still here")
        sock.shutdown(socket.SHUT_WR)
        assert after.get(timeout=10) == b"still here"


@pytest.mark.parametrize("path", PATHS)
def test_what_the_client_sends_and_closes_at_once_reaches_the_server(path: str) -> None:
    """Bytes and EOF sent before the proxy reached the server wait for it, not dropped."""

    def echo(conn: socket.socket) -> None:
        conn.sendall(read_to_eof(conn))

    with proxied(echo, path) as (_, sock):
        sock.sendall(b"early")
        sock.shutdown(socket.SHUT_WR)
        assert read_to_eof(sock) == b"early"


# -- resets from each side ---------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_a_reset_from_the_server_resets_the_client(path: str) -> None:
    def reset_after_a_byte(conn: socket.socket) -> None:
        conn.recv(1)
        reset(conn)

    with proxied(reset_after_a_byte, path) as (_, sock):
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            read_to_eof(sock)


@pytest.mark.parametrize("path", PATHS)
def test_a_reset_from_the_client_resets_the_server(path: str) -> None:
    seen: queue.Queue[object] = queue.Queue()

    def watch(conn: socket.socket) -> None:
        try:
            seen.put(read_to_eof(conn))
        except OSError as exc:
            seen.put(type(exc))

    with proxied(watch, path) as (_, sock):
        sock.sendall(b"x")
        time.sleep(0.1)  # the proxy has connected on and passed the byte
        reset(sock)
        assert seen.get(timeout=10) is ConnectionResetError


def test_a_refused_server_connection_resets_the_client() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # the reset may come before connect() returns, on a busy machine
    with (
        FaultProxy(("127.0.0.1", closed_port)) as proxy,
        pytest.raises(ConnectionResetError),
        socket.create_connection((proxy.host, proxy.port), timeout=10) as sock,
    ):
        sock.recv(100)
    assert proxy.accepted == 1


# -- backpressure ------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_a_client_that_stops_reading_holds_the_server_back(path: str) -> None:
    """The proxy reads no faster than the client: with 32 MiB to send, the server's send
    cannot finish while the client reads nothing (the sockets' buffers on the way held
    about 8 MiB here)."""
    data = os.urandom(1 << 16) * 512
    sent = threading.Event()

    def send_everything(conn: socket.socket) -> None:
        conn.settimeout(60)
        conn.sendall(data)
        sent.set()

    with proxied(send_everything, path) as (_, sock):
        assert not sent.wait(1.0), "the proxy buffered everything the client did not read"
        assert read_exactly(sock, len(data)) == data
        assert sent.wait(10)


@pytest.mark.parametrize("path", PATHS)
def test_a_server_that_stops_reading_holds_the_client_back(path: str) -> None:
    data = os.urandom(1 << 16) * 512
    start_reading = threading.Event()
    sent = threading.Event()
    got: queue.Queue[bytearray] = queue.Queue()

    def read_late(conn: socket.socket) -> None:
        start_reading.wait(10)
        conn.settimeout(60)
        got.put(read_exactly(conn, len(data)))

    with proxied(read_late, path) as (_, sock):

        def send_everything() -> None:
            sock.settimeout(60)
            sock.sendall(data)
            sent.set()

        sender = threading.Thread(target=send_everything, daemon=True)
        sender.start()
        assert not sent.wait(1.0), "the proxy buffered everything the server did not read"
        start_reading.set()
        assert got.get(timeout=30) == data
        assert sent.wait(10)
        sender.join(10)


# -- toxics coming and going mid-stream -----------------------------------------------------


def test_toxics_added_and_removed_mid_stream_keep_every_byte_in_order() -> None:
    """Each direction switches between the straight path and the toxics' queue many
    times while 8 MiB go each way through an echo server."""
    data = os.urandom(8 << 20)

    def echo(conn: socket.socket) -> None:
        while chunk := conn.recv(1 << 16):
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)

    with proxied(echo, "straight") as (proxy, sock):
        done = threading.Event()

        def toggle() -> None:
            while not done.is_set():
                with proxy.slicer(5000, 1000, direction="both"):
                    time.sleep(0.005)
                time.sleep(0.005)
                with proxy.latency(0.001, direction="upstream"):
                    time.sleep(0.005)

        def send() -> None:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

        threads = [threading.Thread(target=f, daemon=True) for f in (toggle, send)]
        for thread in threads:
            thread.start()
        try:
            assert read_to_eof(sock) == data
        finally:
            done.set()
            for thread in threads:
                thread.join(10)


def test_a_toxic_removed_and_added_again_watches_open_connections_again() -> None:
    def hold(conn: socket.socket) -> None:
        conn.recv(1)

    with proxied(hold, "straight") as (proxy, sock):
        time.sleep(0.05)  # connected on to the server
        toxic = proxy.timeout(0.3)
        time.sleep(0.05)
        toxic.remove()  # before it closed anything
        time.sleep(0.05)
        proxy.add(toxic)
        start = time.perf_counter()
        assert sock.recv(100) == b""
        assert 0.3 <= time.perf_counter() - start < 1.0


def test_both_sockets_are_nodelay() -> None:
    """Small writes go out at once (no Nagle wait for the peer's ACK) on both hops."""

    def hold(conn: socket.socket) -> None:
        conn.recv(1)

    with proxied(hold, "straight") as (proxy, sock):
        sock.sendall(b"x")
        deadline = time.monotonic() + 5
        while not proxy._connections or not all(c.up for c in proxy._connections):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (connection,) = proxy._connections
        for side in (connection.client, connection.server):
            assert side.transport is not None
            raw = side.transport.get_extra_info("socket")
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize("path", PATHS)
def test_stopping_with_a_client_that_stopped_reading_closes_everything(path: str) -> None:
    """What the proxy still holds for a client that does not read cannot be flushed: the
    stop drops it after a short grace instead of leaving the socket open."""
    data = os.urandom(1 << 16) * 512

    def send_everything(conn: socket.socket) -> None:
        conn.sendall(data)

    with proxied(send_everything, path) as (proxy, sock):
        time.sleep(0.5)  # the buffers on the way are full
        start = time.perf_counter()
        proxy.stop()
        assert time.perf_counter() - start < 5
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(1 << 20):
                pass  # everything up to the end: the proxy's socket is closed
        gc.collect()  # an unclosed transport would warn here (an error in this suite)
