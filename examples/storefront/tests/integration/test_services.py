"""The service layer: the payment client against a mocked provider and its faults, the
price cache, and the worker consuming the Redis stream."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import redis.asyncio
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from pytest_integration_kit.faults.http import (
    ConnectionReset,
    Malformed,
    RateLimit,
    Series,
    Status,
    Timeout,
    Truncated,
)
from pytest_integration_kit.mocks import MockServer
from storefront.db import SessionLocal
from storefront.events import Event, publish
from storefront.models import Order
from storefront.payments import PaymentDeclined, PaymentGateway, PaymentUnavailable
from storefront.prices import PriceCache
from storefront.settings import settings
from storefront.worker import Worker
from tests.factories import OrderFactory

PROVIDER = settings.payment_api_url  # https://payments.example.test (pytest.ini)
CHARGES = f"{PROVIDER}/v1/charges"


# --- the payment provider, in process (http_mock) ----------------------------------


async def test_a_charge_carries_amount_reference_and_idempotency_key(
    http_mock: respx.MockRouter,
) -> None:
    route = http_mock.post(CHARGES).respond(201, json={"id": "ch_1"})
    gateway = PaymentGateway()
    charge = await gateway.charge(1350, reference="order-7")
    await gateway.aclose()
    assert (charge.provider_id, charge.attempts) == ("ch_1", 1)
    sent = route.calls.last.request
    assert sent.headers["Idempotency-Key"] == "order-7"
    assert sent.headers["Authorization"] == "Bearer sk_test_storefront"  # PAYMENT_API_KEY
    assert sent.content == b'{"amount":1350,"currency":"eur","reference":"order-7"}'


async def test_failures_are_retried_with_the_same_key(http_mock: respx.MockRouter) -> None:
    route = http_mock.post(CHARGES).respond(201, json={"id": "ch_2"})
    route.side_effect = Series(Status(503), ConnectionReset(), Timeout(), None)
    gateway = PaymentGateway(attempts=4, timeout=0.1, backoff=0)
    charge = await gateway.charge(500, reference="order-8")
    await gateway.aclose()
    assert charge.attempts == 4
    assert {call.request.headers["Idempotency-Key"] for call in route.calls} == {"order-8"}


async def test_a_provider_that_keeps_failing_is_unavailable(http_mock: respx.MockRouter) -> None:
    route = http_mock.post(CHARGES).respond(500)
    gateway = PaymentGateway(attempts=3, backoff=0)
    with pytest.raises(PaymentUnavailable, match=r"failed \(500\), 3 attempts"):
        await gateway.charge(500, reference="order-9")
    await gateway.aclose()
    assert route.call_count == 3


async def test_a_declined_card_is_not_retried(http_mock: respx.MockRouter) -> None:
    route = http_mock.post(CHARGES).respond(402, json={"reason": "insufficient funds"})
    gateway = PaymentGateway()
    with pytest.raises(PaymentDeclined, match="insufficient funds"):
        await gateway.charge(500, reference="order-10")
    await gateway.aclose()
    assert route.call_count == 1


# --- the payment provider on a real socket (mock_server) ---------------------------


async def test_a_short_retry_after_is_waited_for(mock_server: MockServer) -> None:
    route = mock_server.post("/v1/charges").respond(201, json={"id": "ch_3"})
    route.side_effect = Series(Status(429, headers={"Retry-After": "1"}), None)
    gateway = PaymentGateway(mock_server.url)
    started = time.perf_counter()
    charge = await gateway.charge(500, reference="order-11")
    await gateway.aclose()
    assert charge.attempts == 2
    assert time.perf_counter() - started >= 1.0


async def test_a_long_retry_after_is_passed_on_not_waited_for(mock_server: MockServer) -> None:
    route = mock_server.post("/v1/charges").respond(201, json={"id": "ch_4"})
    route.side_effect = RateLimit(0, per=60)  # every request: 429, Retry-After ≤ 60
    gateway = PaymentGateway(mock_server.url)  # waits at most PAYMENT_MAX_WAIT = 1 s
    started = time.perf_counter()
    with pytest.raises(PaymentUnavailable) as failure:
        await gateway.charge(500, reference="order-12")
    await gateway.aclose()
    assert failure.value.retry_after is not None
    assert failure.value.retry_after > 1
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "fault", [Malformed(), Truncated(), ConnectionReset(), Timeout()], ids=type
)
async def test_a_broken_answer_is_asked_again(mock_server: MockServer, fault: object) -> None:
    route = mock_server.post("/v1/charges").respond(201, json={"id": "ch_5"})
    route.side_effect = Series(fault, None)
    gateway = PaymentGateway(mock_server.url, timeout=0.2, backoff=0)
    assert (await gateway.charge(500, reference="order-13")).attempts == 2
    await gateway.aclose()


@pytest.mark.requires_network
@pytest.mark.skipif(
    not os.environ.get("PAYMENT_SANDBOX_URL"),
    reason="the provider's sandbox: set PAYMENT_SANDBOX_URL and PAYMENT_API_KEY",
)
async def test_the_provider_sandbox_accepts_a_charge() -> None:
    gateway = PaymentGateway(os.environ["PAYMENT_SANDBOX_URL"])
    charge = await gateway.charge(100, reference=f"contract-{time.time_ns()}")
    await gateway.aclose()
    assert charge.provider_id


# --- the price cache ----------------------------------------------------------------


async def test_prices_are_read_through_the_cache(
    redis_async_client: redis.asyncio.Redis, postgres_async_session: AsyncSession
) -> None:
    cache = PriceCache(redis_async_client, ttl=60)
    assert [await cache.price(postgres_async_session, 2) for _ in range(3)] == [1200] * 3
    assert (cache.misses, cache.hits, cache.errors) == (1, 2, 0)
    assert await redis_async_client.get("price:2") == b"1200"
    assert 0 < await redis_async_client.ttl("price:2") <= 60


async def test_a_redis_that_resets_connections_costs_hits_not_answers(
    fault_proxy, redis_database, postgres_async_session: AsyncSession
) -> None:
    proxy = fault_proxy(redis_database)
    client = redis.asyncio.Redis.from_url(proxy.url, socket_timeout=0.5)
    cache = PriceCache(client)
    with proxy.reset_peer():
        assert await cache.price(postgres_async_session, 1) == 450
    assert cache.errors >= 1
    assert await cache.price(postgres_async_session, 1) == 450  # cached now
    await cache.forget(1)  # this test's key, through the proxy, is gone again
    await client.aclose()


# --- events and the worker ----------------------------------------------------------


def test_events_survive_the_stream_encoding() -> None:
    event = Event("order.paid", {"order_id": 7, "amount_cents": 1350, "note": "ünïcode"})
    wire = {key.encode(): value.encode() for key, value in event.encode().items()}
    assert Event.decode(wire) == event


async def _statuses(*order_ids: int) -> list[str]:
    async with SessionLocal() as session:
        query = select(Order.status).where(Order.id.in_(order_ids)).order_by(Order.id)
        return list(await session.scalars(query))


@pytest.mark.usefixtures("factories")
async def test_the_worker_fulfils_paid_orders(redis_async_client: redis.asyncio.Redis) -> None:
    paid = OrderFactory(status="paid", user_id=1)
    await publish(redis_async_client, Event("order.paid", {"order_id": paid.id}))
    worker = Worker(redis_async_client, SessionLocal)
    assert await worker.run_once(block_ms=100) == 1
    assert await _statuses(paid.id) == ["fulfilled"]
    pending = await redis_async_client.xpending(settings.events_stream, settings.events_group)
    assert pending["pending"] == 0


@pytest.mark.usefixtures("factories")
async def test_an_event_that_fails_stays_pending_until_the_database_is_back(
    redis_async_client: redis.asyncio.Redis, fault_proxy, postgres_database
) -> None:
    paid = OrderFactory(status="paid", user_id=1)
    await publish(redis_async_client, Event("order.paid", {"order_id": paid.id}))
    proxy = fault_proxy(postgres_database)
    engine = create_async_engine(proxy.endpoint.url_for("asyncpg"))
    worker = Worker(redis_async_client, async_sessionmaker(engine), claim_after=0)
    with proxy.down():
        assert await worker.run_once(block_ms=100) == 0
    assert worker.failed == 1
    assert await _statuses(paid.id) == ["paid"]
    assert await worker.run_once(block_ms=100) == 1  # claimed again, handled
    assert await _statuses(paid.id) == ["fulfilled"]
    await engine.dispose()


@pytest.mark.usefixtures("factories")
async def test_two_workers_handle_each_event_once(redis_async_client: redis.asyncio.Redis) -> None:
    orders = OrderFactory.create_batch(10, status="paid", user_id=1)
    for order in orders:
        await publish(redis_async_client, Event("order.paid", {"order_id": order.id}))
    workers = [Worker(redis_async_client, SessionLocal, name=n) for n in ("w1", "w2")]

    async def drain(worker: Worker) -> None:
        while await worker.run_once(block_ms=50, count=3):
            await asyncio.sleep(0)

    await asyncio.gather(*(drain(worker) for worker in workers))
    assert sum(worker.handled for worker in workers) == 10
    assert all(worker.handled for worker in workers)  # both took a share
    assert set(await _statuses(*(order.id for order in orders))) == {"fulfilled"}


@pytest.mark.usefixtures("factories")
async def test_the_worker_runs_until_stopped(redis_async_client: redis.asyncio.Redis) -> None:
    stop = asyncio.Event()
    worker = Worker(redis_async_client, SessionLocal)
    running = asyncio.create_task(worker.run(stop))
    paid = OrderFactory(status="paid", user_id=1)
    await publish(redis_async_client, Event("order.paid", {"order_id": paid.id}))
    async with asyncio.timeout(5):
        while await _statuses(paid.id) != ["fulfilled"]:
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(running, timeout=2)
