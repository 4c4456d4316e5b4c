"""factory_boy SQLAlchemy factories bound to the test's session, sync and async, and as seed."""

from __future__ import annotations

import pytest
from isolation_project import run, write_project

ORM_MODELS = """
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    total: Mapped[int]


metadata = Base.metadata
"""

FACTORIES = """
import factory
from factory.alchemy import SQLAlchemyModelFactory

from models import Order, User


class UserFactory(SQLAlchemyModelFactory):
    class Meta:
        model = User
        sqlalchemy_session_persistence = "commit"

    id = factory.Sequence(lambda n: 1000 + n)
    name = factory.Faker("first_name")


class OrderFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Order
        sqlalchemy_session_persistence = "flush"

    id = factory.Sequence(lambda n: 1000 + n)
    user_id = factory.LazyFunction(lambda: UserFactory().id)
    total = 10


def seed(connection):
    # Seed data from the same factories: a Session on the template's connection.
    from sqlalchemy.orm import Session

    from pytest_integration_kit.isolation import bind_factories

    with Session(bind=connection) as session, bind_factories(session, UserFactory):
        UserFactory(id=1, name="seeded one")
        UserFactory(id=2, name="seeded two")
"""

CONFTEST = """
import pytest

from factories import OrderFactory, UserFactory
from pytest_integration_kit.isolation import bind_factories


@pytest.fixture
def factories(postgres_session):
    with bind_factories(postgres_session, UserFactory, OrderFactory):
        yield


@pytest.fixture
async def async_factories(postgres_async_session):
    with bind_factories(postgres_async_session, UserFactory, OrderFactory):
        yield postgres_async_session
"""

TESTS = """
import pytest
from sqlalchemy import func, select, text

from factories import OrderFactory, UserFactory
from models import Order, User


def test_factories_write_into_the_test_session(factories, postgres_session):
    order = OrderFactory()  # commits its user: a savepoint, rolled back after the test
    assert postgres_session.get(User, order.user_id).id >= 1000
    assert postgres_session.scalar(select(func.count()).select_from(User)) == 3


def test_seed_from_factories_and_nothing_leaked(postgres_session):
    names = postgres_session.scalars(select(User.name).order_by(User.id)).all()
    assert names == ["seeded one", "seeded two"]
    assert postgres_session.scalar(select(func.count()).select_from(Order)) == 0


@pytest.mark.asyncio
async def test_async_session(async_factories):
    session = async_factories
    # Factories are sync: run them on the AsyncSession's greenlet, read ids there too.
    user_id = await session.run_sync(lambda _: UserFactory(name="async").id)
    assert (await session.get(User, user_id)).name == "async"


@pytest.mark.asyncio
async def test_async_nothing_leaked(postgres_async_session):
    count = await postgres_async_session.scalar(select(func.count()).select_from(User))
    assert count == 2


def test_unbound_afterwards():
    assert UserFactory._meta.sqlalchemy_session is None
"""


def test_factory_boy_recipe(pytester: pytest.Pytester, backend_env: str) -> None:
    write_project(pytester)
    pytester.makepyfile(models=ORM_MODELS, factories=FACTORIES, test_user=TESTS)
    pytester.makeconftest(CONFTEST)
    ini = pytester.path / "pytest.ini"
    ini.write_text(
        ini.read_text()
        .replace("integration_seed = seed.sql", "integration_seed = factories:seed")
        .replace("asyncio_mode = strict", "asyncio_mode = auto")
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=5)
