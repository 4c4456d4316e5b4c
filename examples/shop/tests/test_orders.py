from __future__ import annotations

import pytest
from shop.models import Order
from shop.orders import OutOfRange, place_order
from sqlalchemy import func, select
from sqlalchemy.orm import Session


def test_an_order_is_priced_and_stored(session: Session) -> None:
    order = place_order(session, "tea", 3)
    assert order.total_cents == 1350
    assert session.scalar(select(func.count()).select_from(Order)) == 1


def test_the_previous_test_left_no_orders(session: Session) -> None:
    assert session.scalar(select(func.count()).select_from(Order)) == 0
    place_order(session, "cake", 1)
    assert session.scalar(select(func.count()).select_from(Order)) == 1


@pytest.mark.parametrize("quantity", [0, 101])
def test_quantities_out_of_range_are_refused(session: Session, quantity: int) -> None:
    with pytest.raises(OutOfRange):
        place_order(session, "tea", quantity)
