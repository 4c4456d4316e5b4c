from __future__ import annotations

import httpx
import pytest
import respx

from pytest_integration_kit.faults.http import RateLimit, Series
from pytest_integration_kit.mocks import MockServer
from shop.payments import PaymentDeclined, charge

API = "https://payments.example"


def test_a_charge_returns_the_payment_id(http_mock: respx.MockRouter) -> None:
    route = http_mock.post(f"{API}/v1/charges").respond(201, json={"id": "pay_1"})
    with httpx.Client(base_url=API) as client:
        assert charge(client, 1350) == "pay_1"
    assert route.calls.last.request.content == b'{"amount":1350}'


def test_a_declined_card_is_an_error(http_mock: respx.MockRouter) -> None:
    http_mock.post(f"{API}/v1/charges").respond(402, json={"reason": "insufficient funds"})
    with httpx.Client(base_url=API) as client, pytest.raises(PaymentDeclined):
        charge(client, 1350)


def test_a_rate_limit_is_retried_over_a_real_socket(mock_server: MockServer) -> None:
    route = mock_server.post("/v1/charges").respond(201, json={"id": "pay_2"})
    route.side_effect = Series(RateLimit(0, per=60))  # one 429, then the real answer
    with httpx.Client(base_url=mock_server.url) as client:
        assert charge(client, 300) == "pay_2"
    assert route.call_count == 2
