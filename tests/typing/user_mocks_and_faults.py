"""User-style code for mocks and faults that must type-check under mypy --strict (not collected)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from pytest_integration_kit import (
    Endpoint,
    fault_proxy_factory,
    http_mock_factory,
    mock_server_factory,
)
from pytest_integration_kit.faults import FaultProxy, FaultProxyFactory, Toxic
from pytest_integration_kit.faults.http import Delay, RateLimit, Series, Status, Timeout
from pytest_integration_kit.mocks import HttpMock, MockServer

lenient_http: Callable[..., Iterator[HttpMock]] = http_mock_factory(assert_all_called=False)
tls_server: Callable[..., Iterator[MockServer]] = mock_server_factory(https=True)
seeded_proxy: Callable[..., Iterator[FaultProxyFactory]] = fault_proxy_factory(seed=42)


def use_http_mock(http_mock: HttpMock) -> int:
    route = http_mock.get("https://api.test/users/7").respond(200, json={"id": 7})
    route.side_effect = Series(Status(503), Delay(0.1), None)
    status: int = httpx.get("https://api.test/users/7").status_code
    return status + route.call_count


def use_mock_server(mock_server: MockServer) -> str:
    mock_server.post("/v1/orders").mock(side_effect=RateLimit(10, per=1.0))
    mock_server.get("/v1/slow").respond(200).side_effect = Timeout()
    return mock_server.url


def use_fault_proxy(fault_proxy: FaultProxyFactory, redis_server: Endpoint) -> bool:
    proxy: FaultProxy = fault_proxy(redis_server, seed=7)
    client = redis.Redis.from_url(proxy.url)
    toxic: Toxic = proxy.latency(0.1, jitter=0.01, direction="both", toxicity=0.5)
    with toxic, proxy.down(), pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    port: int = proxy.port
    return port > 0 and bool(client.ping())
