"""The HTTP endpoints: accounts, products, orders and payments."""

from __future__ import annotations

from typing import Annotated

import redis.asyncio as redis
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storefront import orders as service
from storefront.auth import AdminUser, CurrentUser
from storefront.db import get_session
from storefront.models import Order, Product, User
from storefront.payments import PaymentDeclined, PaymentGateway, PaymentUnavailable
from storefront.prices import PriceCache, UnknownProduct
from storefront.schemas import (
    Credentials,
    LineOut,
    OrderIn,
    OrderOut,
    PriceOut,
    Problem,
    ProductChange,
    ProductIn,
    ProductOut,
    SignUp,
    TokenOut,
    UserOut,
)
from storefront.security import hash_password, issue_token, verify_password
from storefront.settings import settings

router = APIRouter()
Session = Annotated[AsyncSession, Depends(get_session)]


def get_redis(request: Request) -> redis.Redis:
    """The application's Redis client (made by the lifespan)."""
    return request.app.state.redis  # type: ignore[no-any-return]


def get_payments(request: Request) -> PaymentGateway:
    """The application's payment gateway (made by the lifespan)."""
    return request.app.state.payments  # type: ignore[no-any-return]


Redis = Annotated[redis.Redis, Depends(get_redis)]
Payments = Annotated[PaymentGateway, Depends(get_payments)]
CONFLICT = {409: {"model": Problem}}


def _order_out(order: Order) -> OrderOut:
    return OrderOut(
        id=order.id,
        status=order.status,  # type: ignore[arg-type]
        total_cents=order.total_cents,
        created_at=order.created_at,
        lines=[LineOut.model_validate(line) for line in order.lines],
        payment_id=order.payment.provider_id if order.payment else None,
    )


@router.post("/users", status_code=201, response_model=UserOut, responses=CONFLICT)
async def sign_up(body: SignUp, session: Session) -> User:
    user = User(email=body.email.lower(), password_hash=hash_password(body.password))
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        raise HTTPException(409, "that email is already registered") from exc
    return user


@router.post("/login", response_model=TokenOut, responses={401: {"model": Problem}})
async def login(body: Credentials, session: Session) -> TokenOut:
    user = await session.scalar(select(User).where(User.email == body.email.lower()))
    if user is None or not verify_password(body.password, user.password_hash):
        raise HTTPException(401, "wrong email or password")
    return TokenOut(access_token=issue_token(user.id, user.role), expires_in=settings.token_ttl)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> User:
    return user


@router.get("/products", response_model=list[ProductOut])
async def products(session: Session) -> list[Product]:
    return list(await session.scalars(select(Product).order_by(Product.id)))


@router.post("/products", status_code=201, response_model=ProductOut, responses=CONFLICT)
async def add_product(body: ProductIn, session: Session, _: AdminUser) -> Product:
    product = Product(**body.model_dump())
    session.add(product)
    try:
        await session.commit()
    except IntegrityError as exc:
        raise HTTPException(409, f"sku {body.sku!r} exists") from exc
    return product


@router.patch("/products/{product_id}", response_model=ProductOut)
async def change_product(
    product_id: int, body: ProductChange, session: Session, cache: Redis, _: AdminUser
) -> Product:
    product = await session.get(Product, product_id)
    if product is None:
        raise HTTPException(404, "no such product")
    for field, value in body.model_dump(exclude_none=True).items():
        setattr(product, field, value)
    await session.commit()
    await PriceCache(cache).forget(product_id)
    return product


@router.get("/products/{product_id}/price", response_model=PriceOut)
async def price(product_id: int, session: Session, cache: Redis) -> PriceOut:
    try:
        cents = await PriceCache(cache).price(session, product_id)
    except UnknownProduct as exc:
        raise HTTPException(404, "no such product") from exc
    return PriceOut(product_id=product_id, price_cents=cents)


@router.post("/orders", status_code=201, response_model=OrderOut, responses=CONFLICT)
async def place_order(body: OrderIn, session: Session, user: CurrentUser) -> OrderOut:
    lines = [service.Line(line.product_id, line.quantity) for line in body.lines]
    try:
        order = await service.place_order(session, user.id, lines)
    except service.OutOfStock as exc:
        raise HTTPException(409, str(exc)) from exc
    return _order_out(order)


@router.get("/orders", response_model=list[OrderOut])
async def my_orders(session: Session, user: CurrentUser) -> list[OrderOut]:
    return [_order_out(order) for order in await service.list_orders(session, user.id)]


async def _own_order(session: AsyncSession, user: User, order_id: int) -> Order:
    try:
        return await service.get_order(session, order_id, None if user.role == "admin" else user.id)
    except LookupError as exc:
        raise HTTPException(404, "no such order") from exc


@router.get("/orders/{order_id}", response_model=OrderOut)
async def order(order_id: int, session: Session, user: CurrentUser) -> OrderOut:
    return _order_out(await _own_order(session, user, order_id))


@router.post(
    "/orders/{order_id}/pay",
    response_model=OrderOut,
    responses={402: {"model": Problem}, 409: {"model": Problem}, 503: {"model": Problem}},
)
async def pay(
    order_id: int,
    *,
    session: Session,
    user: CurrentUser,
    events: Redis,
    payments: Payments,
    response: Response,
) -> OrderOut:
    order = await _own_order(session, user, order_id)
    try:
        paid = await service.pay_order(session, events, payments, order)
    except service.WrongState as exc:
        raise HTTPException(409, str(exc)) from exc
    except PaymentDeclined as exc:
        raise HTTPException(402, f"payment declined: {exc}") from exc
    except PaymentUnavailable as exc:
        headers = {"Retry-After": str(round(exc.retry_after))} if exc.retry_after else None
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers) from exc
    return _order_out(paid)


@router.post("/orders/{order_id}/cancel", response_model=OrderOut, responses=CONFLICT)
async def cancel(order_id: int, session: Session, user: CurrentUser) -> OrderOut:
    order = await _own_order(session, user, order_id)
    try:
        return _order_out(await service.cancel_order(session, order))
    except service.WrongState as exc:
        raise HTTPException(409, str(exc)) from exc
