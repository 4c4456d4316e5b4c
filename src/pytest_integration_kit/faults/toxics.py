"""Toxiproxy's toxics, for :class:`~pytest_integration_kit.faults.proxy.FaultProxy`.

A toxic sits on one direction of every proxied connection: ``upstream`` (client to
server), ``downstream`` (server to client, the default, as in Toxiproxy) or ``both``.
It sees each chunk of bytes and decides when and how to pass it on. ``toxicity`` is the
chance that it applies to a given connection (drawn once per connection from that
connection's generator, seeded from the proxy's seed and the connection's number, so
a run can be replayed).

Units are seconds and bytes (Toxiproxy uses milliseconds and KB/s).
Each toxic returned by the proxy is a context manager that removes it on exit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from pytest_integration_kit.faults.forwarding import Link, ProxiedConnection
    from pytest_integration_kit.faults.proxy import FaultProxy

__all__ = [
    "Bandwidth",
    "Direction",
    "Latency",
    "LimitData",
    "LinkClosed",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Timeout",
    "Toxic",
]

Direction = Literal["upstream", "downstream", "both"]
#: How often a waiting toxic looks whether it was removed.
POLL_SECONDS = 0.005


class LinkClosed(Exception):
    """Raised by a toxic to end the connection: closed (FIN) or, with ``reset``, RST."""

    def __init__(self, *, reset: bool = False) -> None:
        super().__init__("reset" if reset else "close")
        self.reset = reset


@dataclass(eq=False)
class Toxic:
    """Base class: pass every chunk on unchanged. Subclasses override :meth:`pipe`."""

    kind: ClassVar[str] = "toxic"
    direction: Direction = field(default="downstream", kw_only=True)
    toxicity: float = field(default=1.0, kw_only=True)
    proxy: FaultProxy | None = field(default=None, kw_only=True, repr=False)
    active: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.direction not in ("upstream", "downstream", "both"):
            raise ValueError(f"direction={self.direction!r}: upstream, downstream or both")
        if not 0.0 <= self.toxicity <= 1.0:
            raise ValueError(f"toxicity={self.toxicity!r} must be between 0 and 1")

    def covers(self, direction: str) -> bool:
        return self.direction in ("both", direction)

    async def pipe(self, data: bytes, link: Link, send: Callable[[bytes], Awaitable[None]]) -> None:
        await send(data)

    async def on_eof(self, link: Link) -> None:
        """Called when the sending side of ``link`` closed, before the close is passed on."""

    def watch(self, connection: ProxiedConnection) -> Coroutine[Any, Any, None] | None:
        """A watchdog to run beside ``connection`` from when the toxic meets it (connect,
        or the toxic's arrival), whether data flows or not; None for most toxics."""
        return None

    async def wait_while_active(self, seconds: float | None) -> bool:
        """Sleep until removed or ``seconds`` pass (forever if None); True if still active."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while self.active:
            left = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - loop.time())
            if left <= 0:
                return True
            await asyncio.sleep(left)
        return False

    def remove(self) -> None:
        if self.proxy is not None:
            self.proxy.remove(self)

    def __enter__(self) -> Toxic:
        return self

    def __exit__(self, *_: object) -> None:
        self.remove()


@dataclass(eq=False)
class Latency(Toxic):
    """Delay every chunk by ``seconds`` ± a uniform ``jitter`` from when it arrived."""

    kind: ClassVar[str] = "latency"
    seconds: float = 0.0
    jitter: float = 0.0

    async def pipe(self, data: bytes, link: Link, send: Callable[[bytes], Awaitable[None]]) -> None:
        delay = self.seconds
        if self.jitter:
            delay += link.random.uniform(-self.jitter, self.jitter)
        # Counted from the chunk's arrival: a burst read in many chunks is delayed once.
        waited = asyncio.get_running_loop().time() - link.arrived
        await asyncio.sleep(max(0.0, delay - waited))
        await send(data)


@dataclass(eq=False)
class Bandwidth(Toxic):
    """Let at most ``rate`` bytes per second through."""

    kind: ClassVar[str] = "bandwidth"
    rate: float = 1024.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rate <= 0:
            raise ValueError("bandwidth rate must be > 0 bytes per second")

    async def pipe(self, data: bytes, link: Link, send: Callable[[bytes], Awaitable[None]]) -> None:
        # About 100 slices a second, paced against a deadline so sleep overshoot
        # does not add up over a long transfer.
        loop = asyncio.get_running_loop()
        step = max(1, int(self.rate / 100))
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            due = max(loop.time(), float(link.state.get(self, 0.0))) + len(piece) / self.rate
            link.state[self] = due
            await asyncio.sleep(due - loop.time())
            await send(piece)


@dataclass(eq=False)
class SlowClose(Toxic):
    """Hold a close (FIN) back for ``seconds``."""

    kind: ClassVar[str] = "slow_close"
    seconds: float = 0.0

    async def on_eof(self, link: Link) -> None:
        await asyncio.sleep(self.seconds)


@dataclass(eq=False)
class Timeout(Toxic):
    """Stop all data; close the connection ``seconds`` after the toxic met it (at connect,
    or when the toxic was added), or after data arrived, whichever is first.

    With ``seconds=0`` nothing is closed: data waits until the toxic is removed, then
    flows on, as in Toxiproxy.
    """

    kind: ClassVar[str] = "timeout"
    seconds: float = 0.0

    def watch(self, connection: ProxiedConnection) -> Coroutine[Any, Any, None] | None:
        if not self.seconds:
            return None

        async def close_when_due() -> None:
            if await self.wait_while_active(self.seconds):
                connection.close()

        return close_when_due()

    async def pipe(self, data: bytes, link: Link, send: Callable[[bytes], Awaitable[None]]) -> None:
        if await self.wait_while_active(self.seconds or None):
            raise LinkClosed
        await send(data)


@dataclass(eq=False)
class ResetPeer(Toxic):
    """Reset the connection (TCP RST) ``seconds`` after the toxic met it (at connect, or
    when added), idle or not, or ``seconds`` after data arrived if sooner; the data is
    lost. With ``seconds=0``: at the first data."""

    kind: ClassVar[str] = "reset_peer"
    seconds: float = 0.0

    def watch(self, connection: ProxiedConnection) -> Coroutine[Any, Any, None] | None:
        if not self.seconds:
            return None

        async def reset_when_due() -> None:
            if await self.wait_while_active(self.seconds):
                connection.close(reset=True)

        return reset_when_due()

    async def pipe(self, data: bytes, link: Link, send: Callable[[bytes], Awaitable[None]]) -> None:
        if self.seconds:
            await asyncio.sleep(self.seconds)
        raise LinkClosed(reset=True)


@dataclass(eq=False)
class Slicer(Toxic):
    """Cut data into pieces of ``average_size`` ± ``size_variation`` bytes, ``delay`` apart."""

    kind: ClassVar[str] = "slicer"
    average_size: int = 1
    size_variation: int = 0
    delay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.average_size < 1 or not 0 <= self.size_variation < self.average_size:
            raise ValueError("slicer needs average_size >= 1 and 0 <= size_variation < it")

    async def pipe(self, data: bytes, link: Link, send: Callable[[bytes], Awaitable[None]]) -> None:
        start = 0
        while start < len(data):
            size = self.average_size
            if self.size_variation:
                size += link.random.randint(-self.size_variation, self.size_variation)
            if start:
                await asyncio.sleep(self.delay)
            await send(data[start : start + size])
            start += size


@dataclass(eq=False)
class LimitData(Toxic):
    """Close the connection once ``limit`` bytes went through (in this direction)."""

    kind: ClassVar[str] = "limit_data"
    limit: int = 0

    async def pipe(self, data: bytes, link: Link, send: Callable[[bytes], Awaitable[None]]) -> None:
        sent = int(link.state.get(self, 0))
        allowed = max(0, self.limit - sent)
        if data[:allowed]:
            await send(data[:allowed])
        link.state[self] = sent + min(len(data), allowed)
        if len(data) >= allowed:
            raise LinkClosed
