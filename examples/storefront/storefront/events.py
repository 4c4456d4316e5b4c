"""Domain events on a Redis stream: the API appends, the worker consumes.

Each entry holds ``type`` and a JSON ``data`` field. The worker reads through a
consumer group, so each event is handled once even with several workers, and an
event whose handling failed stays pending for a retry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis

from storefront.settings import settings


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]

    def encode(self) -> dict[str, str]:
        return {"type": self.type, "data": json.dumps(self.data, sort_keys=True)}

    @classmethod
    def decode(cls, fields: dict[bytes | str, bytes | str]) -> Event:
        text = {_str(k): _str(v) for k, v in fields.items()}
        return cls(type=text["type"], data=json.loads(text["data"]))


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def publish(client: redis.Redis, event: Event, *, stream: str | None = None) -> str:
    """Append ``event``; returns its stream id. The stream is capped near 10 000 entries."""
    entry_id = await client.xadd(
        stream or settings.events_stream, event.encode(), maxlen=10_000, approximate=True
    )
    return _str(entry_id)
