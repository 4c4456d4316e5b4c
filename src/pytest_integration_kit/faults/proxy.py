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
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from pytest_integration_kit.faults.forwarding import Link, ProxiedConnection
from pytest_integration_kit.faults.loop_thread import LoopThread
from pytest_integration_kit.faults.toxics import (
    Bandwidth,
    Direction,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Timeout,
    Toxic,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FaultProxy", "FaultProxyFactory", "Link", "ProxiedConnection"]


#: How long stopping or disabling the proxy lets closed connections send what they hold.
SHUT_GRACE_SECONDS = 1.0


@runtime_checkable
class Addressable(Protocol):
    host: str
    port: int


class FaultProxyFactory(Protocol):
    """What the ``fault_proxy`` fixture is: annotate tests with it."""

    def __call__(
        self, target: Any, *, seed: int | str | None = None, port: int = 0
    ) -> FaultProxy: ...


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
        loop = asyncio.get_running_loop()
        return await loop.create_server(self._new_connection, self.host, self.port)

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
        # A closed connection still sends what it holds; one whose peer stopped reading
        # would stay open for ever (and Python 3.12's wait_closed would wait for it).
        await asyncio.sleep(0)  # the sockets with nothing left to send close now
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUT_GRACE_SECONDS
        while self._connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._connections):
            connection.abort()
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

    def _new_connection(self) -> asyncio.Protocol:
        """A client connected: its protocol, which connects on to the server (``forwarding``)."""
        self.accepted += 1
        connection = ProxiedConnection(
            self,
            self._random_for(self.accepted),
            (self.upstream_host, self.upstream_port),
            self._connections.discard,
        )
        self._connections.add(connection)
        return connection.client
