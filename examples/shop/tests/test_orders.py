from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shop.models import Order
from shop.orders import OutOfRange, place_order


def test_an_order_is_priced_and_stored(postgres_session: Session) -> None:
    order = place_order(postgres_session, "tea", 3)  # commits
    assert order.total_cents == 1350
    assert postgres_session.scalar(select(func.count()).select_from(Order)) == 1


def test_no_test_sees_another_tests_orders(postgres_session: Session) -> None:
    assert postgres_session.scalar(select(func.count()).select_from(Order)) == 0
    place_order(postgres_session, "cake", 1)
    assert postgres_session.scalar(select(func.count()).select_from(Order)) == 1


@pytest.mark.parametrize("quantity", [0, 101])
def test_quantities_out_of_range_are_refused(postgres_session: Session, quantity: int) -> None:
    with pytest.raises(OutOfRange):
        place_order(postgres_session, "tea", quantity)
