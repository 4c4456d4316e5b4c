"""How the fault proxy moves bytes: one client connection, its server connection and the
two directions between them, on asyncio protocols and transports.

A direction with no toxic acting on it is a straight pipe: each chunk a socket receives
is written to the other socket's transport from the ``data_received`` callback itself (no
task, no queue, no copy), and backpressure is the transports' own: when the receiving
side's write buffer passes its high-water mark, the sending side stops reading until the
buffer drains below the low one. While a toxic acts on a direction (toxics come and go
while connections are open), its chunks queue stamped with their arrival and one task
hands them to the toxics in order; once the queue is empty and no toxic acts, the
direction is a straight pipe again. asyncio sets ``TCP_NODELAY`` on both sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol, cast

from pytest_integration_kit.faults.toxics import LinkClosed

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from pytest_integration_kit.faults.toxics import Toxic

__all__ = ["Link", "ProxiedConnection", "ToxicSource"]

#: Bytes queued ahead of the toxics per direction before the sending side stops being read.
INBOX_BYTES = 1 << 20


class ToxicSource(Protocol):
    """Where a connection finds the toxics in force (the proxy)."""

    @property
    def toxics(self) -> tuple[Toxic, ...]: ...


def _abort(transport: asyncio.Transport, *, reset: bool) -> None:
    """Drop the connection at once; with ``reset``, the peer sees RST, not FIN."""
    raw = transport.get_extra_info("socket")
    if reset and raw is not None:
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Side(asyncio.Protocol):
    """One socket of a proxied connection (the client's or the server's)."""

    def __init__(self, connection: ProxiedConnection) -> None:
        self.connection = connection
        self.transport: asyncio.Transport | None = None
        #: The direction this socket's bytes go (set by the connection).
        self.inbound: Link
        #: The other socket.
        self.peer: Side
        #: This socket's write buffer is over its high-water mark.
        self.write_paused = False
        #: The other end sent EOF: nothing more to read, never resume reading.
        self.eof = False
        #: The socket is closed (asyncio called ``connection_lost``).
        self.gone = False
        self._reading_paused = False
        self._drain: asyncio.Future[None] | None = None

    # -- asyncio's callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.connection.made(self, self.transport)

    def data_received(self, data: bytes) -> None:
        self.inbound.feed(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.inbound.feed(b"")
        return True  # keep the socket open for the other direction (half-close)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.peer.update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake(None)
        self.peer.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self._wake(exc or ConnectionResetError("Connection lost"))
        self.connection.lost(exc)

    # -- flow control ------------------------------------------------------------------

    def update_reading(self) -> None:
        """Read while the connection is up, the peer's write buffer has room and this
        direction's queue is short; never again after EOF (asyncio would re-read it)."""
        transport = self.transport
        if self.eof or transport is None or transport.is_closing():
            return
        hold = (
            not self.connection.up or self.peer.write_paused or self.inbound.queued >= INBOX_BYTES
        )
        if hold != self._reading_paused:
            self._reading_paused = hold
            if hold:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    async def drained(self) -> None:
        """Wait until this socket's write buffer is under its low-water mark."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("Connection lost")
        if self.write_paused:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def _wake(self, exc: BaseException | None) -> None:
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)


class Link:
    """One direction of a proxied connection: what toxics see."""

    def __init__(self, connection: ProxiedConnection, direction: str, source: Side, sink: Side):
        self.connection = connection
        self.direction = direction
        #: The socket bytes come from, and the one they go to.
        self.source, self.sink = source, sink
        #: Per-toxic counters (LimitData's bytes sent, say).
        self.state: dict[Toxic, Any] = {}
        #: When the chunk being handled arrived (the loop's clock).
        self.arrived = 0.0
        #: Whether the pump is handling a chunk (then new data must queue behind it).
        self.busy = False
        #: Bytes waiting in the queue.
        self.queued = 0
        self._inbox: deque[tuple[float, bytes]] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._seen: tuple[Toxic, ...] | None = None
        self._acting: list[Toxic] = []

    @property
    def random(self) -> random.Random:
        return self.connection.random

    def toxics(self) -> list[Toxic]:
        """The toxics acting on this direction of this connection now; worked out again
        only when the proxy's toxics change (each change is a new tuple)."""
        current = self.connection.source.toxics
        if current is not self._seen:
            self._seen = current
            self._acting = [
                t for t in current if t.covers(self.direction) and self.connection.applies(t)
            ]
        return self._acting

    def feed(self, data: bytes) -> None:
        """A chunk (``b""``: EOF) from the source: straight out, or queued for the toxics
        or held until the server connection is made (the client's socket is paused until
        then, but older Pythons, 3.10 among them, start reading a new socket even when
        ``connection_made`` paused it: CPython gh-103607)."""
        if self._pump is None and self.connection.up and not self.toxics():
            if data:
                self.sink.write(data)
            else:
                self.end()
            return
        loop = asyncio.get_running_loop()
        self._inbox.append((loop.time(), data))
        self.queued += len(data)
        self.start()
        self.source.update_reading()

    def start(self) -> None:
        """Hand what is queued to the pump, once the connection is up."""
        if self._pump is None and self._inbox and self.connection.up:
            self._pump = asyncio.get_running_loop().create_task(self._run())

    async def send(self, data: bytes) -> None:
        """Write to the sink and wait while its buffer is full (a toxic's last step)."""
        self.sink.write(data)
        await self.sink.drained()

    def end(self) -> None:
        """The source sent EOF and everything before it went out: pass the EOF on."""
        sink = self.sink.transport
        if sink is not None and sink.can_write_eof() and not sink.is_closing():
            sink.write_eof()
        self.connection.ended(self)

    def cancel(self) -> None:
        """Stop the pump (the connection is closed), unless it is the caller."""
        if self._pump is not None and self._pump is not asyncio.current_task():
            self._pump.cancel()

    async def _run(self) -> None:
        """Hand queued chunks to the toxics acting now, in order, until the queue is empty."""
        try:
            while self._inbox:
                self.arrived, data = self._inbox.popleft()
                self.queued -= len(data)
                self.source.update_reading()
                self.busy = True
                toxics = self.toxics()
                if not data:
                    for toxic in toxics:
                        await toxic.on_eof(self)
                    self.end()
                    return
                if toxics:
                    await _through(toxics, data, self)
                else:
                    await self.send(data)
                self.busy = False
        except LinkClosed as closed:
            self.connection.close(reset=closed.reset)
        except (ConnectionError, OSError):
            self.connection.close(reset=True)
        finally:
            self.busy = False
            self._pump = None


class ProxiedConnection:
    """One client connection and its connection to the server."""

    def __init__(
        self,
        source: ToxicSource,
        rng: random.Random,
        upstream: tuple[str, int],
        forget: Callable[[ProxiedConnection], None],
    ) -> None:
        self.source = source
        self.random = rng
        self.upstream = upstream
        self._forget = forget
        self.client = Side(self)
        self.server = Side(self)
        self.client.peer, self.server.peer = self.server, self.client
        self.client.inbound = Link(self, "upstream", self.client, self.server)
        self.server.inbound = Link(self, "downstream", self.server, self.client)
        self._applies: dict[Toxic, bool] = {}
        self._watchers: dict[Toxic, asyncio.Task[None]] = {}
        self._connecting: asyncio.Task[None] | None = None
        self._ended = 0
        #: Both sockets are connected (the client's is not read before).
        self.up = False
        self.closed = False

    def applies(self, toxic: Toxic) -> bool:
        """Whether ``toxic`` acts on this connection: drawn once, by its toxicity."""
        decided = self._applies.get(toxic)
        if decided is None:
            decided = toxic.toxicity >= 1.0 or self.random.random() < toxic.toxicity
            self._applies[toxic] = decided
        return decided

    def watch(self, toxic: Toxic) -> None:
        """Run the toxic's watchdog (if any) on this connection, one at a time per toxic
        (a toxic added while the connection was being made is met twice); on the loop's
        thread."""
        if self.closed or not self.up or toxic in self._watchers or not self.applies(toxic):
            return
        watchdog = toxic.watch(self)
        if watchdog is not None:
            task = asyncio.get_running_loop().create_task(watchdog)
            self._watchers[toxic] = task
            task.add_done_callback(lambda done: self._unwatch(toxic, done))

    def _unwatch(self, toxic: Toxic, task: asyncio.Task[None]) -> None:
        if self._watchers.get(toxic) is task:
            del self._watchers[toxic]

    # -- from the sockets ------------------------------------------------------------

    def made(self, side: Side, transport: asyncio.Transport) -> None:
        """The client connected (hold its bytes, connect to the server) or the server did."""
        if self.closed:  # the server answered a connection dropped meanwhile
            _abort(transport, reset=True)
        elif side is self.client:
            side.update_reading()
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self.server, *self.upstream)
        except OSError:
            self.close(reset=True)  # the client sees the server's refusal as a reset
            return
        finally:
            self._connecting = None
        if self.closed:  # dropped (proxy down or stopped) while connecting
            return
        self.up = True
        for toxic in self.source.toxics:
            self.watch(toxic)
        for side in (self.client, self.server):
            side.inbound.start()
            side.update_reading()

    def ended(self, link: Link) -> None:
        """One direction passed its EOF on; once both have, the connection is done."""
        self._ended += 1
        if self._ended == 2:
            self.close()

    def lost(self, exc: Exception | None) -> None:
        """A socket closed under us (an error resets the other side, as a router would),
        or one we closed is done."""
        if not self.closed:
            self.close(reset=exc is not None)
        elif self.settled:
            self._forget(self)

    @property
    def settled(self) -> bool:
        """No socket of the connection is open any more."""
        return all(side.transport is None or side.gone for side in (self.client, self.server))

    def abort(self) -> None:
        """Drop at once what the sockets still hold to send (a peer that stopped reading
        would keep a closing socket open for ever)."""
        for side in (self.client, self.server):
            if side.transport is not None and not side.gone:
                side.transport.abort()

    def close(self, *, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        current = asyncio.current_task()
        for task in (*self._watchers.values(), self._connecting):
            if task is not None and task is not current:
                task.cancel()
        self.client.inbound.cancel()
        self.server.inbound.cancel()
        for side in (self.client, self.server):
            if side.transport is None:
                continue
            if reset:
                _abort(side.transport, reset=True)
            elif not side.transport.is_closing():
                side.transport.close()
        if self.settled:
            self._forget(self)


async def _through(toxics: list[Toxic], data: bytes, link: Link) -> None:
    """Hand ``data`` to the first toxic, whose ``send`` is the rest of the chain."""
    first, rest = toxics[0], toxics[1:]

    async def send(piece: bytes) -> None:
        if rest:
            await _through(rest, piece, link)
        else:
            await link.send(piece)

    await first.pipe(data, link, send)
