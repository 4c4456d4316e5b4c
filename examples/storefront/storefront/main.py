"""The application: ``uvicorn storefront.main:app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from storefront.payments import PaymentGateway
from storefront.routes import Redis, Session, router
from storefront.schemas import Health
from storefront.settings import settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One Redis client and one payment gateway for the process, closed at shutdown."""
    app.state.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=2.0)
    app.state.payments = PaymentGateway()
    try:
        yield
    finally:
        await app.state.payments.aclose()
        await app.state.redis.aclose()


app = FastAPI(title="storefront", version="1.0", lifespan=lifespan)
app.include_router(router)


@app.exception_handler(DBAPIError)
@app.exception_handler(OSError)
async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A lost or refused database connection is a 503, not a stack trace."""
    lost = not isinstance(exc, DBAPIError) or exc.connection_invalidated
    if not lost and not isinstance(exc.orig, OSError) and "connection" not in str(exc).lower():
        raise exc  # a bug, not an outage
    return JSONResponse({"detail": "database unavailable"}, 503, {"Retry-After": "1"})


@app.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(session: Session, cache: Redis) -> JSONResponse:
    """Whether the database and Redis answer."""
    state = {"database": "ok", "redis": "ok"}
    try:
        await session.execute(text("SELECT 1"))
    except (DBAPIError, OSError):
        state["database"] = "unavailable"
    try:
        await cache.ping()
    except (RedisError, OSError):
        state["redis"] = "unavailable"
    healthy = set(state.values()) == {"ok"}
    return JSONResponse(state, 200 if healthy else 503)
