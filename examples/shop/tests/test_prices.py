from __future__ import annotations

import redis

from shop.prices import PriceCache


def test_prices_are_loaded_once(redis_client: redis.Redis) -> None:
    cache = PriceCache(redis_client, load={"tea": 450}.__getitem__)
    assert cache.price("tea") == 450
    assert cache.price("tea") == 450
    assert cache.misses == 1
    assert 0 < redis_client.ttl("price:tea") <= 60


def test_the_cache_starts_empty_in_every_test(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
