"""A read-through price cache in Redis, in front of the products table.

Redis is an optimisation here: when it is slow or down, prices come from the database
and the failure is counted, never shown to the customer.
"""

from __future__ import annotations

import logging

import redis.asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storefront.models import Product
from storefront.settings import settings

log = logging.getLogger(__name__)


class UnknownProduct(LookupError):
    """No product with that id."""


class PriceCache:
    """``price(session, product_id)``: Redis first, the database on a miss or an error."""

    def __init__(self, client: redis.Redis, ttl: int | None = None) -> None:
        self.client = client
        self.ttl = ttl or settings.price_ttl
        self.hits = self.misses = self.errors = 0

    @staticmethod
    def key(product_id: int) -> str:
        return f"price:{product_id}"

    async def price(self, session: AsyncSession, product_id: int) -> int:
        """The product's price in cents."""
        try:
            cached = await self.client.get(self.key(product_id))
        except RedisError as exc:
            self.errors += 1
            log.warning("price cache unavailable, reading the database: %s", exc)
            return await self._load(session, product_id)
        if cached is not None:
            self.hits += 1
            return int(cached)
        self.misses += 1
        price = await self._load(session, product_id)
        try:
            await self.client.set(self.key(product_id), price, ex=self.ttl)
        except RedisError as exc:
            self.errors += 1
            log.warning("price cache unavailable, not caching: %s", exc)
        return price

    async def forget(self, product_id: int) -> None:
        """Drop a cached price (after a price change)."""
        try:
            await self.client.delete(self.key(product_id))
        except RedisError as exc:
            self.errors += 1
            log.warning("price cache unavailable, stale price until its TTL: %s", exc)

    @staticmethod
    async def _load(session: AsyncSession, product_id: int) -> int:
        price = await session.scalar(select(Product.price_cents).where(Product.id == product_id))
        if price is None:
            raise UnknownProduct(product_id)
        return price
