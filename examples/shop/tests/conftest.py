"""The shop's fixtures: a schema on the plugin's PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from shop.models import Product, metadata
from sqlalchemy.orm import Session

from pytest_integration_kit import Endpoint


@pytest.fixture(scope="session")
def engine(postgres_server: Endpoint) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_server.url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    # The code under test commits: wrap it in an outer transaction rolled back after.
    with engine.connect() as conn, conn.begin() as outer:
        with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
            session.add_all(
                [Product(name="tea", price_cents=450), Product(name="cake", price_cents=300)]
            )
            session.flush()
            yield session
        outer.rollback()
