"""The fulfilment worker: reads ``order.paid`` events from the Redis stream.

Run it as ``python -m storefront.worker``. It joins the consumer group (made on first
start), handles each event, and acknowledges it only once the database says so: an
event whose handling failed stays pending and is claimed again after
``claim_after`` seconds, by this worker or another.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storefront.db import SessionLocal
from storefront.events import Event
from storefront.orders import fulfil_order
from storefront.settings import settings

log = logging.getLogger(__name__)
Handler = Callable[[AsyncSession, Event], Awaitable[None]]


async def _fulfil(session: AsyncSession, event: Event) -> None:
    if not await fulfil_order(session, int(event.data["order_id"])):
        log.info("order %s was not waiting for fulfilment", event.data["order_id"])


HANDLERS: dict[str, Handler] = {"order.paid": _fulfil}


class Worker:
    """One consumer of the events stream."""

    def __init__(
        self,
        client: redis.Redis,
        sessions: async_sessionmaker[AsyncSession],
        *,
        name: str | None = None,
        stream: str | None = None,
        group: str | None = None,
        claim_after: float = 30.0,
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.stream = stream or settings.events_stream
        self.group = group or settings.events_group
        self.claim_after_ms = int(claim_after * 1000)
        self.handled = 0
        self.failed = 0

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless they exist."""
        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run_once(self, block_ms: int = 1000, count: int = 50) -> int:
        """Handle what is waiting (stale pending entries first); returns how many were acked."""
        await self.ensure_group()
        entries: list[tuple[bytes | str, dict[bytes | str, bytes | str]]] = []
        _, claimed, _ = await self.client.xautoclaim(
            self.stream, self.group, self.name, self.claim_after_ms, count=count
        )
        entries.extend(claimed)
        if not entries:
            answer = await self.client.xreadgroup(
                self.group, self.name, {self.stream: ">"}, count=count, block=block_ms
            )
            for _, batch in answer or []:
                entries.extend(batch)
        acked = 0
        for entry_id, fields in entries:
            if await self._handle(entry_id, fields):
                acked += 1
        return acked

    async def _handle(self, entry_id: bytes | str, fields: dict[bytes | str, bytes | str]) -> bool:
        try:
            event = Event.decode(fields)
            handler = HANDLERS.get(event.type)
            if handler is not None:
                async with self.sessions() as session:
                    await handler(session, event)
        except Exception:
            self.failed += 1
            log.exception("event %r failed; it stays pending", entry_id)
            return False
        await self.client.xack(self.stream, self.group, entry_id)
        self.handled += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Handle events until ``stop`` is set."""
        while not stop.is_set():
            await self.run_once(block_ms=500)


async def main() -> None:  # pragma: no cover - the process entry point
    logging.basicConfig(level=logging.INFO)
    client = redis.Redis.from_url(settings.redis_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await Worker(client, SessionLocal).run(stop)
    finally:
        await client.aclose()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(main())
