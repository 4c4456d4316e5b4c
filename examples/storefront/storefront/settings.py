"""Settings from the environment, read once at import.

Every value has a default that suits ``docker compose up`` (see docker-compose.yml);
production sets them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    payment_api_url: str
    payment_api_key: str
    payment_timeout: float  # seconds, per attempt
    payment_attempts: int  # tries per charge, the first included
    payment_max_wait: float  # the longest Retry-After worth waiting for, seconds
    jwt_secret: str
    token_ttl: int  # seconds
    password_iterations: int  # PBKDF2 rounds for new hashes
    price_ttl: int  # seconds a cached price lives
    events_stream: str
    events_group: str


settings = Settings(
    database_url=os.environ.get(
        "DATABASE_URL", "postgresql+asyncpg://storefront:storefront@localhost:5432/storefront"
    ),
    redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    payment_api_url=os.environ.get("PAYMENT_API_URL", "https://api.payments.example"),
    payment_api_key=os.environ.get("PAYMENT_API_KEY", ""),
    payment_timeout=_float("PAYMENT_TIMEOUT", 5.0),
    payment_attempts=_int("PAYMENT_ATTEMPTS", 3),
    payment_max_wait=_float("PAYMENT_MAX_WAIT", 10.0),
    jwt_secret=os.environ.get("JWT_SECRET", "change-me-in-production-32-bytes-or-more"),
    token_ttl=_int("TOKEN_TTL", 3600),
    password_iterations=_int("PASSWORD_ITERATIONS", 600_000),
    price_ttl=_int("PRICE_TTL", 300),
    events_stream=os.environ.get("EVENTS_STREAM", "storefront:events"),
    events_group=os.environ.get("EVENTS_GROUP", "fulfilment"),
)
