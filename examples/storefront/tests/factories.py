"""factory_boy factories for the storefront's rows; conftest binds them to the test's session."""

from __future__ import annotations

import factory

from storefront.models import Order, OrderLine, Product, User
from storefront.security import hash_password

PASSWORD = "factory-password"
#: Computed once: every factory user has the same (cheap) hash of PASSWORD.
PASSWORD_HASH = hash_password(PASSWORD, iterations=1000)


class Factory(factory.alchemy.SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_persistence = "commit"  # the application must see the rows


class UserFactory(Factory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password_hash = PASSWORD_HASH
    role = "customer"


class ProductFactory(Factory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Faker("catch_phrase")
    price_cents = factory.Faker("pyint", min_value=100, max_value=10_000)
    stock = 10


class OrderFactory(Factory):
    class Meta:
        model = Order

    user = factory.SubFactory(UserFactory)
    status = "reserved"
    total_cents = 0


class OrderLineFactory(Factory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = 1
    price_cents = factory.SelfAttribute("product.price_cents")


FACTORIES = (UserFactory, ProductFactory, OrderFactory, OrderLineFactory)
