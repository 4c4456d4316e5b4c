"""Placing orders: the code under test commits, as real application code does."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.models import Order, Product


class OutOfRange(ValueError):
    """A quantity the shop does not sell."""


def place_order(session: Session, product_name: str, quantity: int) -> Order:
    if not 1 <= quantity <= 100:
        raise OutOfRange(quantity)
    product = session.scalars(select(Product).where(Product.name == product_name)).one()
    order = Order(
        product_id=product.id, quantity=quantity, total_cents=product.price_cents * quantity
    )
    session.add(order)
    session.commit()
    return order
