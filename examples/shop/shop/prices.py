"""A read-through price cache in Redis."""

from __future__ import annotations

from collections.abc import Callable

import redis


class PriceCache:
    def __init__(self, client: redis.Redis, load: Callable[[str], int], ttl: int = 60) -> None:
        self.client = client
        self.load = load
        self.ttl = ttl
        self.misses = 0

    def price(self, name: str) -> int:
        cached = self.client.get(f"price:{name}")
        if cached is not None:
            return int(cached)
        self.misses += 1
        value = self.load(name)
        self.client.set(f"price:{name}", value, ex=self.ttl)
        return value
