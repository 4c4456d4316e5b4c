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
            headers={"Authorization": f"Bearer {settings.payment_api_key}"}
            if settings.payment_api_key
            else None,
        )
        self.attempts = attempts or settings.payment_attempts
        self.max_wait = settings.payment_max_wait if max_wait is None else max_wait
        self.backoff = backoff

    async def aclose(self) -> None:
        await self.client.aclose()

    async def charge(self, amount_cents: int, reference: str) -> Charge:
        """Charge ``amount_cents``; ``reference`` (our order) doubles as idempotency key."""
        body = {"amount": amount_cents, "currency": "eur", "reference": reference}
        problem = "no attempt made"
        for attempt in range(1, self.attempts + 1):
            outcome = await self._attempt(body, reference)
            if isinstance(outcome, str):
                return Charge(provider_id=outcome, attempts=attempt)
            problem, wait = outcome
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1) if wait is None else wait)
        raise PaymentUnavailable(f"{problem}, {self.attempts} attempts")

    async def _attempt(self, body: dict[str, object], key: str) -> str | tuple[str, float | None]:
        """The provider's payment id, or (why it failed, how long to wait) for a retry."""
        try:
            response = await self.client.post(
                "/v1/charges", json=body, headers={"Idempotency-Key": key}
            )
        except httpx.TimeoutException:
            return "the payment provider timed out", None
        except httpx.TransportError as exc:
            return f"the payment provider could not be reached ({type(exc).__name__})", None
        status = response.status_code
        if status == 201:
            try:
                return str(response.json()["id"])
            except (ValueError, KeyError, TypeError):
                # Charged or not, the same idempotency key makes asking again safe.
                return "the payment provider's answer was malformed", None
        if status == 402:
            raise PaymentDeclined(response.json().get("reason", "declined"))
        if status == 429:
            retry_after = _retry_after(response)
            if retry_after is None or retry_after > self.max_wait:
                raise PaymentUnavailable("the payment provider is rate limiting", retry_after)
            return "the payment provider is rate limiting", retry_after
        if status >= 500:
            return f"the payment provider failed ({status})", None
        raise PaymentError(f"unexpected answer {status} from the provider")
