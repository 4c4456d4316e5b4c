"""Charging a card through an external payment API."""

from __future__ import annotations

import httpx


class PaymentDeclined(Exception):
    """The provider said no."""


def charge(client: httpx.Client, amount_cents: int) -> str:
    """Charge ``amount_cents``; return the provider's payment id. Retries once on 429."""
    for _ in range(2):
        response = client.post("/v1/charges", json={"amount": amount_cents})
        if response.status_code != 429:
            break
    if response.status_code == 402:
        raise PaymentDeclined(response.json()["reason"])
    response.raise_for_status()
    return str(response.json()["id"])
