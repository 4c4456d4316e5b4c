from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from shop.prices import PriceCache

from pytest_integration_kit import Endpoint


@pytest.fixture
def client(redis_server: Endpoint) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


def test_prices_are_loaded_once(client: redis.Redis) -> None:
    cache = PriceCache(client, load={"tea": 450}.__getitem__)
    assert cache.price("tea") == 450
    assert cache.price("tea") == 450
    assert cache.misses == 1
    assert 0 < client.ttl("price:tea") <= 60
