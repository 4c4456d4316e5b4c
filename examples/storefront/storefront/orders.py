"""Orders: stock reserved at checkout, paid through the provider, fulfilled by the worker.

Stock is reserved with one conditional ``UPDATE … WHERE stock >= :quantity`` per line,
so two customers racing for the last item cannot both get it; an order whose lines
cannot all be reserved is rolled back whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storefront.events import Event, publish
from storefront.models import Order, OrderLine, Payment, Product
from storefront.payments import PaymentDeclined, PaymentGateway


class OrderError(Exception):
    """An order that cannot be placed or changed as asked."""


class OutOfStock(OrderError):
    """Not enough stock for a line; ``product_id`` says which."""

    def __init__(self, product_id: int) -> None:
        super().__init__(f"product {product_id} is out of stock")
        self.product_id = product_id


class WrongState(OrderError):
    """The order's status does not allow that."""


@dataclass(frozen=True)
class Line:
    product_id: int
    quantity: int


async def place_order(session: AsyncSession, user_id: int, lines: Sequence[Line]) -> Order:
    """Reserve stock for every line and record the order, or change nothing."""
    if not lines:
        raise OrderError("an order needs at least one line")
    order = Order(user_id=user_id, status="reserved", total_cents=0)
    session.add(order)
    try:
        await session.flush()  # the order's id, for its lines
        total = 0
        for line in sorted(lines, key=lambda item: item.product_id):  # one lock order: no deadlock
            if line.quantity <= 0:
                raise OrderError(f"quantity must be positive, not {line.quantity}")
            price = await session.scalar(
                update(Product)
                .where(Product.id == line.product_id, Product.stock >= line.quantity)
                .values(stock=Product.stock - line.quantity)
                .returning(Product.price_cents)
            )
            if price is None:
                raise OutOfStock(line.product_id)
            total += price * line.quantity
            session.add(
                OrderLine(
                    order_id=order.id,
                    product_id=line.product_id,
                    quantity=line.quantity,
                    price_cents=price,
                )
            )
        order.total_cents = total
        order_id = order.id
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    return await get_order(session, order_id)


async def get_order(session: AsyncSession, order_id: int, user_id: int | None = None) -> Order:
    """The order with its lines and payment (``user_id``: only if it is theirs)."""
    query = (
        select(Order)
        .where(Order.id == order_id)
        .options(selectinload(Order.lines), selectinload(Order.payment))
        .execution_options(populate_existing=True)
    )
    if user_id is not None:
        query = query.where(Order.user_id == user_id)
    order = await session.scalar(query)
    if order is None:
        raise LookupError(order_id)
    return order


async def list_orders(session: AsyncSession, user_id: int) -> Sequence[Order]:
    """The user's orders, newest first, lines loaded in one more query."""
    query = (
        select(Order)
        .where(Order.user_id == user_id)
        .order_by(Order.id.desc())
        .options(selectinload(Order.lines), selectinload(Order.payment))
    )
    return (await session.scalars(query)).all()


async def _release_stock(session: AsyncSession, order: Order) -> None:
    for line in order.lines:
        await session.execute(
            update(Product)
            .where(Product.id == line.product_id)
            .values(stock=Product.stock + line.quantity)
        )


async def cancel_order(session: AsyncSession, order: Order) -> Order:
    """Cancel a reserved (or failed) order and put its stock back."""
    if order.status not in {"reserved", "payment_failed"}:
        raise WrongState(f"a {order.status} order cannot be cancelled")
    await _release_stock(session, order)
    order.status = "cancelled"
    order_id = order.id
    await session.commit()
    return await get_order(session, order_id)


async def pay_order(
    session: AsyncSession, events: redis.Redis, gateway: PaymentGateway, order: Order
) -> Order:
    """Charge the order's total; on success record the payment and announce ``order.paid``.

    A declined card marks the order ``payment_failed`` (stock stays reserved for a
    retry); an unreachable provider changes nothing and the error propagates.
    """
    if order.status not in {"reserved", "payment_failed"}:
        raise WrongState(f"a {order.status} order cannot be paid")
    order_id, total = order.id, order.total_cents  # commits expire attributes
    try:
        charge = await gateway.charge(total, reference=f"order-{order_id}")
    except PaymentDeclined:
        order.status = "payment_failed"
        await session.commit()
        raise
    session.add(Payment(order_id=order_id, provider_id=charge.provider_id, amount_cents=total))
    order.status = "paid"
    await session.commit()
    await publish(events, Event("order.paid", {"order_id": order_id, "amount_cents": total}))
    return await get_order(session, order_id)


async def fulfil_order(session: AsyncSession, order_id: int) -> bool:
    """Mark a paid order fulfilled; False if it was not paid (already done, or never)."""
    result = await session.execute(
        update(Order).where(Order.id == order_id, Order.status == "paid").values(status="fulfilled")
    )
    await session.commit()
    return bool(result.rowcount)
