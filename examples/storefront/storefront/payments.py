"""Charging cards through the payment provider's HTTP API (httpx).

``POST /v1/charges`` with ``{"amount": cents, "currency": "eur", "reference": …}`` and an
``Idempotency-Key`` header answers ``201 {"id": …}`` or ``402 {"reason": …}``. Timeouts,
connection errors and 5xx answers are retried (same key: the provider charges once);
a 429 is retried after its ``Retry-After`` when that is short enough to wait for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from storefront.settings import settings


class PaymentError(Exception):
    """A charge that did not go through."""


class PaymentDeclined(PaymentError):
    """The provider refused the card (402): the customer must act."""


class PaymentUnavailable(PaymentError):
    """The provider could not be reached or kept failing: try again later.

    ``retry_after`` is the provider's own estimate in seconds, when it gave one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Charge:
    provider_id: str
    attempts: int


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date or garbage: treat as "unknown"


class PaymentGateway:
    """The provider's API; one per application (it keeps a connection pool)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        attempts: int | None = None,
        max_wait: float | None = None,
        backoff: float = 0.05,
    ) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url or settings.payment_api_url,
            timeout=timeout or settings.payment_timeout,
            headers={"Authorization": f"Bearer {settings.payment_api_key}"},
        )
        self.attempts = attempts or settings.payment_attempts
        self.max_wait = settings.payment_max_wait if max_wait is None else max_wait
        self.backoff = backoff

    async def aclose(self) -> None:
        await self.client.aclose()

    async def charge(self, amount_cents: int, reference: str) -> Charge:
        """Charge ``amount_cents``; ``reference`` (our order) doubles as idempotency key."""
        body = {"amount": amount_cents, "currency": "eur", "reference": reference}
        headers = {"Idempotency-Key": reference}
        problem = "no attempt made"
        for attempt in range(1, self.attempts + 1):
            wait = self.backoff * 2 ** (attempt - 1)
            try:
                response = await self.client.post("/v1/charges", json=body, headers=headers)
            except httpx.TimeoutException:
                problem = "the payment provider timed out"
            except httpx.TransportError as exc:
                problem = f"the payment provider could not be reached ({type(exc).__name__})"
            else:
                if response.status_code == 201:
                    return Charge(provider_id=str(response.json()["id"]), attempts=attempt)
                if response.status_code == 402:
                    raise PaymentDeclined(response.json().get("reason", "declined"))
                if response.status_code == 429:
                    retry_after = _retry_after(response)
                    if retry_after is None or retry_after > self.max_wait:
                        raise PaymentUnavailable(
                            "the payment provider is rate limiting", retry_after
                        )
                    problem, wait = "the payment provider is rate limiting", retry_after
                elif response.status_code >= 500:
                    problem = f"the payment provider failed ({response.status_code})"
                else:
                    raise PaymentError(
                        f"unexpected answer {response.status_code} from the provider"
                    )
            if attempt < self.attempts:
                await asyncio.sleep(wait)
        raise PaymentUnavailable(f"{problem}, {self.attempts} attempts")
