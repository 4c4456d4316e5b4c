"""An asyncio TCP proxy in front of any service, with Toxiproxy's toxics, in-process.

``FaultProxy(postgres_server)`` listens on 127.0.0.1 and forwards to the server; its
``.host``, ``.port`` and ``.url`` stand in for the server's (for an
:class:`~pytest_integration_kit.services.endpoint.Endpoint` through ``with_address``,
so every other attribute is there too). Toxics are added with methods named as in
Toxiproxy and removed with ``with``::

    with FaultProxy(redis_server) as proxy:
        client = redis.Redis.from_url(proxy.url)
        with proxy.latency(0.2):
            client.ping()          # takes ≥ 0.2 s
        with proxy.down():
            client.ping()          # ConnectionError: refused

The proxy runs on its own event loop thread, so sync and async tests alike can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from pytest_integration_kit.faults.loop_thread import LoopThread
from pytest_integration_kit.faults.toxics import (
    Bandwidth,
    Direction,
    Latency,
    LimitData,
    LinkClosed,
    ResetPeer,
    Slicer,
    SlowClose,
    Timeout,
    Toxic,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FaultProxy", "FaultProxyFactory", "Link", "ProxiedConnection"]

CHUNK = 65536
#: Chunks read ahead of the toxics per direction (then the reader waits: backpressure).
INBOX_CHUNKS = 64


@runtime_checkable
class Addressable(Protocol):
    host: str
    port: int


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    raw = writer.get_extra_info("socket")
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _abort(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    raw = writer.get_extra_info("socket")
    if reset and raw is not None:
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxyFactory(Protocol):
    """What the ``fault_proxy`` fixture is: annotate tests with it."""

    def __call__(
        self, target: Any, *, seed: int | str | None = None, port: int = 0
    ) -> FaultProxy: ...


class ProxiedConnection:
    """One client connection and its connection to the server."""

    def __init__(
        self,
        client: asyncio.StreamWriter,
        server: asyncio.StreamWriter,
        rng: random.Random,
    ) -> None:
        self.client = client
        self.server = server
        self.random = rng
        self._applies: dict[Toxic, bool] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self.closed = False

    def applies(self, toxic: Toxic) -> bool:
        """Whether ``toxic`` acts on this connection: drawn once, by its toxicity."""
        decided = self._applies.get(toxic)
        if decided is None:
            decided = toxic.toxicity >= 1.0 or self.random.random() < toxic.toxicity
            self._applies[toxic] = decided
        return decided

    def watch(self, toxic: Toxic) -> None:
        """Run the toxic's watchdog (if any) on this connection; on the loop's thread."""
        if self.closed or not self.applies(toxic):
            return
        watchdog = toxic.watch(self)
        if watchdog is not None:
            task = asyncio.get_running_loop().create_task(watchdog)
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)

    def close(self, *, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        current = asyncio.current_task()
        for task in list(self._watchers):
            if task is not current:
                task.cancel()
        for writer in (self.client, self.server):
            if reset:
                _abort(writer, reset=True)
            elif not writer.transport.is_closing():
                writer.close()


class Link:
    """One direction of a proxied connection: what toxics see."""

    def __init__(
        self,
        connection: ProxiedConnection,
        direction: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.connection = connection
        self.direction = direction
        self.reader = reader
        self.writer = writer
        #: Per-toxic counters (LimitData's bytes sent, say).
        self.state: dict[Toxic, Any] = {}
        #: When the chunk being handled arrived (the loop's clock).
        self.arrived = 0.0
        #: Whether the pump is handling a chunk (then new data must queue behind it).
        self.busy = False

    @property
    def random(self) -> random.Random:
        return self.connection.random

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class FaultProxy:
    """A TCP proxy to ``target`` (an endpoint-like object or a ``(host, port)`` pair)."""

    def __init__(
        self,
        target: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | str | None = None,
    ) -> None:
        if isinstance(target, tuple):
            self.upstream_host, self.upstream_port = str(target[0]), int(target[1])
        elif isinstance(target, Addressable):
            self.upstream_host, self.upstream_port = target.host, int(target.port)
        else:
            raise TypeError(
                f"fault_proxy needs (host, port) or an object with .host/.port: {target!r}"
            )
        self.target = target
        self.host = host
        self.port = port
        self.seed = seed
        self._toxics: tuple[Toxic, ...] = ()
        self._loop = LoopThread(f"pytest-integration-kit fault proxy to {self.upstream_address}")
        self._server: asyncio.Server | None = None
        self._connections: set[ProxiedConnection] = set()
        self._started = False
        #: How many client connections were accepted (for tests of reconnect logic).
        self.accepted = 0

    # -- where it is ----------------------------------------------------------------

    @property
    def upstream_address(self) -> str:
        return f"{self.upstream_host}:{self.upstream_port}"

    @property
    def endpoint(self) -> Any:
        """The target as reached through the proxy (an Endpoint for an Endpoint)."""
        with_address = getattr(self.target, "with_address", None)
        if callable(with_address):
            return with_address(self.host, self.port)
        return None

    @property
    def url(self) -> str:
        """The target's URL with the proxy's address (``tcp://host:port`` for a bare pair)."""
        endpoint = self.endpoint
        if endpoint is not None and isinstance(getattr(endpoint, "url", None), str):
            return str(endpoint.url)
        url = getattr(self.target, "url", None)
        if isinstance(url, str) and "://" in url:
            parts = urlsplit(url)
            userinfo = parts.netloc.rpartition("@")[0]
            netloc = (userinfo + "@" if userinfo else "") + f"{self.host}:{self.port}"
            return urlunsplit(parts._replace(netloc=netloc))
        return f"tcp://{self.host}:{self.port}"

    def __getattr__(self, name: str) -> Any:
        # user, password, database, backend...: the proxied endpoint's.
        if name.startswith("_"):
            raise AttributeError(name)
        endpoint = self.__dict__.get("target")
        if endpoint is None or isinstance(endpoint, tuple):
            raise AttributeError(name)
        return getattr(endpoint, name)

    def __repr__(self) -> str:
        toxics = f" toxics={list(self._toxics)!r}" if self._toxics else ""
        return f"<FaultProxy {self.host}:{self.port} -> {self.upstream_address}{toxics}>"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> FaultProxy:
        if self._started:
            return self
        self._loop.start()
        self._server = self._loop.run(self._listen())
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._started = True
        return self

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, self.host, self.port, limit=CHUNK)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            self._loop.run(self._shut(), timeout=10.0)
        finally:
            self._loop.stop()

    async def _shut(self, *, reset: bool = False) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for connection in list(self._connections):
            connection.close(reset=reset)
        if server is not None:
            await server.wait_closed()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- toxics -----------------------------------------------------------------------

    @property
    def toxics(self) -> tuple[Toxic, ...]:
        return self._toxics

    def add(self, toxic: Toxic) -> Toxic:
        """Put ``toxic`` on every connection, current and future; returns it (a context manager)."""
        toxic.proxy = self
        toxic.active = True
        self._toxics = (*self._toxics, toxic)
        if self._started:
            self._loop.call_soon(lambda: self._watch_all(toxic))
        return toxic

    def _watch_all(self, toxic: Toxic) -> None:
        for connection in list(self._connections):
            connection.watch(toxic)

    def remove(self, toxic: Toxic) -> None:
        toxic.active = False
        self._toxics = tuple(t for t in self._toxics if t is not toxic)

    def reset(self) -> None:
        """Remove every toxic and bring the proxy back up if it was down."""
        for toxic in self._toxics:
            self.remove(toxic)
        if self._started and self._server is None:
            self.enable()

    def latency(
        self,
        seconds: float,
        jitter: float = 0.0,
        *,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
    ) -> Toxic:
        """Delay data by ``seconds`` ± ``jitter``."""
        return self.add(Latency(seconds, jitter, direction=direction, toxicity=toxicity))

    def bandwidth(
        self, rate: float, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> Toxic:
        """Limit throughput to ``rate`` bytes per second."""
        return self.add(Bandwidth(rate, direction=direction, toxicity=toxicity))

    def slow_close(
        self, seconds: float, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> Toxic:
        """Delay the closing of the connection by ``seconds``."""
        return self.add(SlowClose(seconds, direction=direction, toxicity=toxicity))

    def timeout(
        self, seconds: float = 0.0, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> Toxic:
        """Stop data; close ``seconds`` after it arrives (0: hold until removed)."""
        return self.add(Timeout(seconds, direction=direction, toxicity=toxicity))

    def reset_peer(
        self, seconds: float = 0.0, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> Toxic:
        """Reset the connection (RST) ``seconds`` after data arrives."""
        return self.add(ResetPeer(seconds, direction=direction, toxicity=toxicity))

    def slicer(
        self,
        average_size: int,
        size_variation: int = 0,
        delay: float = 0.0,
        *,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
    ) -> Toxic:
        """Slice data into small pieces with ``delay`` seconds between them."""
        return self.add(
            Slicer(average_size, size_variation, delay, direction=direction, toxicity=toxicity)
        )

    def limit_data(
        self, limit: int, *, direction: Direction = "downstream", toxicity: float = 1.0
    ) -> Toxic:
        """Close the connection after ``limit`` bytes."""
        return self.add(LimitData(limit, direction=direction, toxicity=toxicity))

    # -- down: the whole proxy ----------------------------------------------------------

    def disable(self) -> None:
        """Stop listening and drop every connection: clients see refused connections."""
        if self._started and self._server is not None:
            self._loop.run(self._shut())

    def enable(self) -> None:
        """Listen again, on the same port."""
        if self._started and self._server is None:
            self._server = self._loop.run(self._listen())

    @contextlib.contextmanager
    def down(self) -> Iterator[FaultProxy]:
        """The service is unavailable inside the block, back afterwards."""
        self.disable()
        try:
            yield self
        finally:
            self.enable()

    def _random_for(self, connection_number: int) -> random.Random:
        """Each connection draws from its own generator, seeded from the proxy's seed and
        its number, so concurrent connections do not disturb each other's draws."""
        if self.seed is None:
            return random.Random()  # noqa: S311 - fault injection, not security
        return random.Random(f"{self.seed}/{connection_number}")  # noqa: S311

    # -- forwarding ---------------------------------------------------------------------

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        _set_nodelay(client_writer)
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port, limit=CHUNK
            )
        except OSError:
            _abort(client_writer, reset=True)
            return
        _set_nodelay(server_writer)
        connection = ProxiedConnection(
            client_writer, server_writer, self._random_for(self.accepted)
        )
        self._connections.add(connection)
        for toxic in self._toxics:
            connection.watch(toxic)
        upstream = Link(connection, "upstream", client_reader, server_writer)
        downstream = Link(connection, "downstream", server_reader, client_writer)
        try:
            await asyncio.gather(self._pump(upstream), self._pump(downstream))
        except asyncio.CancelledError:
            # Stopping the proxy; Python 3.11's stream callback chokes on a cancelled task.
            pass
        finally:
            connection.close()
            self._connections.discard(connection)

    async def _pump(self, link: Link) -> None:
        """Forward one direction: chunks are read as they come (stamped with their arrival,
        so a latency toxic delays a burst once, not once per chunk) and handed to the
        toxics that act on this connection now."""
        connection = link.connection
        inbox: asyncio.Queue[tuple[float, bytes | BaseException]] = asyncio.Queue(INBOX_CHUNKS)
        reading = asyncio.get_running_loop().create_task(self._read_into(link, inbox))
        try:
            while True:
                arrived, data = await inbox.get()
                if isinstance(data, BaseException):
                    raise data
                link.busy, link.arrived = True, arrived
                toxics = [
                    t for t in self._toxics if t.covers(link.direction) and connection.applies(t)
                ]
                if not data:
                    for toxic in toxics:
                        await toxic.on_eof(link)
                    if link.writer.can_write_eof() and not link.writer.transport.is_closing():
                        link.writer.write_eof()
                    return
                if toxics:
                    await _through(toxics, data, link)
                else:
                    await link.send(data)
                link.busy = False
        except LinkClosed as closed:
            connection.close(reset=closed.reset)
        except (ConnectionError, OSError):
            connection.close(reset=True)
        finally:
            reading.cancel()

    async def _read_into(
        self, link: Link, inbox: asyncio.Queue[tuple[float, bytes | BaseException]]
    ) -> None:
        """Read chunks into ``inbox`` with their arrival time; EOF is ``b""``, errors are
        passed on. With no toxic on the proxy and nothing queued, data goes straight out."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await link.reader.read(CHUNK)
                if data and not self._toxics and not link.busy and inbox.empty():
                    await link.send(data)
                    continue
            except (ConnectionError, OSError) as exc:
                await inbox.put((loop.time(), exc))
                return
            await inbox.put((loop.time(), data))
            if not data:
                return


async def _through(toxics: list[Toxic], data: bytes, link: Link) -> None:
    """Hand ``data`` to the first toxic, whose ``send`` is the rest of the chain."""
    first, rest = toxics[0], toxics[1:]

    async def send(piece: bytes) -> None:
        if rest:
            await _through(rest, piece, link)
        else:
            await link.send(piece)

    await first.pipe(data, link, send)
