"""End to end, through the API as a customer sees it: sign up → order → pay → fulfil,
and the ways that goes wrong (a declined card, a rate-limited or unreachable provider)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio
import respx

from pytest_integration_kit.apps.clients import AsyncAppClient
from pytest_integration_kit.faults.http import ConnectionReset, RateLimit, Series, Status
from pytest_integration_kit.mocks import MockServer
from storefront.db import SessionLocal
from storefront.main import app
from storefront.payments import PaymentGateway
from storefront.routes import get_payments
from storefront.settings import settings
from storefront.worker import Worker

CHARGES = f"{settings.payment_api_url}/v1/charges"
pytestmark = pytest.mark.usefixtures("redis_client")  # events and cached prices: emptied after


async def _sign_up(client: AsyncAppClient, email: str) -> AsyncAppClient:
    """A new customer, through the API, logged in on a client of their own."""
    credentials = {"email": email, "password": "correct horse battery"}
    assert (await client.post("/users", json=credentials)).status_code == 201
    token = (await client.post("/login", json=credentials)).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


async def _stock(client: AsyncAppClient, product_id: int) -> int:
    products = (await client.get("/products")).json()
    return next(p["stock"] for p in products if p["id"] == product_id)


async def test_sign_up_order_pay_and_fulfil(
    app_async_client: AsyncAppClient,
    http_mock: respx.MockRouter,
    redis_async_client: redis.asyncio.Redis,
) -> None:
    charge = http_mock.post(CHARGES).respond(201, json={"id": "ch_e2e"})
    customer = await _sign_up(app_async_client, "new@example.com")

    order = (
        await customer.post("/orders", json={"lines": [{"product_id": 2, "quantity": 3}]})
    ).json()
    assert (order["status"], order["total_cents"]) == ("reserved", 3600)
    assert await _stock(customer, 2) == 17

    paid = await customer.post(f"/orders/{order['id']}/pay")
    assert paid.status_code == 200
    assert (paid.json()["status"], paid.json()["payment_id"]) == ("paid", "ch_e2e")
    assert charge.calls.last.request.headers["Idempotency-Key"] == f"order-{order['id']}"

    # The API announced it on the stream; the worker picks it up.
    assert await redis_async_client.xlen(settings.events_stream) == 1
    assert await Worker(redis_async_client, SessionLocal).run_once(block_ms=100) == 1
    assert (await customer.get(f"/orders/{order['id']}")).json()["status"] == "fulfilled"
    assert (await customer.post(f"/orders/{order['id']}/pay")).status_code == 409


async def test_a_declined_card_then_a_good_one(
    app_async_client: AsyncAppClient, http_mock: respx.MockRouter
) -> None:
    route = http_mock.post(CHARGES).respond(201, json={"id": "ch_second_try"})
    route.side_effect = Series(Status(402, json={"reason": "card expired"}), None)
    customer = await _sign_up(app_async_client, "declined@example.com")
    order = (
        await customer.post("/orders", json={"lines": [{"product_id": 1, "quantity": 1}]})
    ).json()

    declined = await customer.post(f"/orders/{order['id']}/pay")
    assert (declined.status_code, declined.json()["detail"]) == (
        402,
        "payment declined: card expired",
    )
    assert (await customer.get(f"/orders/{order['id']}")).json()["status"] == "payment_failed"

    assert (await customer.post(f"/orders/{order['id']}/pay")).json()["status"] == "paid"


async def test_a_rate_limited_provider_is_a_503_with_retry_after(
    app_async_client: AsyncAppClient,
    http_mock: respx.MockRouter,
    redis_async_client: redis.asyncio.Redis,
) -> None:
    route = http_mock.post(CHARGES).respond(201, json={"id": "never"})
    route.side_effect = RateLimit(0, per=30)
    customer = await _sign_up(app_async_client, "busy@example.com")
    order = (
        await customer.post("/orders", json={"lines": [{"product_id": 1, "quantity": 1}]})
    ).json()

    answer = await customer.post(f"/orders/{order['id']}/pay")
    assert answer.status_code == 503
    assert 1 < int(answer.headers["Retry-After"]) <= 30
    assert (await customer.get(f"/orders/{order['id']}")).json()["status"] == "reserved"
    assert await redis_async_client.exists(settings.events_stream) == 0  # nothing announced


async def test_an_unreachable_provider_then_the_customer_cancels(
    app_async_client: AsyncAppClient, http_mock: respx.MockRouter
) -> None:
    route = http_mock.post(CHARGES).respond(201, json={"id": "never"})
    route.side_effect = ConnectionReset()
    customer = await _sign_up(app_async_client, "patient@example.com")
    order = (
        await customer.post("/orders", json={"lines": [{"product_id": 3, "quantity": 1}]})
    ).json()
    assert await _stock(customer, 3) == 0

    answer = await customer.post(f"/orders/{order['id']}/pay")
    assert answer.status_code == 503
    assert "could not be reached" in answer.json()["detail"]
    assert route.call_count == settings.payment_attempts

    cancelled = await customer.post(f"/orders/{order['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert await _stock(customer, 3) == 1  # the teapot is back on the shelf
    assert (await customer.post(f"/orders/{order['id']}/cancel")).status_code == 409


@pytest.fixture
def provider_on_a_socket(mock_server: MockServer, monkeypatch: pytest.MonkeyPatch) -> MockServer:
    """The app's payment gateway talks to ``mock_server`` over a real socket."""

    async def gateway() -> AsyncIterator[PaymentGateway]:
        opened = PaymentGateway(mock_server.url, backoff=0)
        yield opened
        await opened.aclose()

    monkeypatch.setitem(app.dependency_overrides, get_payments, gateway)
    return mock_server


def test_checkout_over_real_sockets(
    live_server, app_client, provider_on_a_socket: MockServer
) -> None:
    route = provider_on_a_socket.post("/v1/charges").respond(201, json={"id": "ch_live"})
    route.side_effect = Series(Status(502), None)  # the provider's hiccup is retried
    headers = dict(app_client.as_user("ada@example.com").headers)
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=10) as customer:
        order = customer.post("/orders", json={"lines": [{"product_id": 1, "quantity": 4}]})
        paid = customer.post(f"/orders/{order.json()['id']}/pay")
    assert (paid.status_code, paid.json()["payment_id"]) == (200, "ch_live")
    assert route.call_count == 2
