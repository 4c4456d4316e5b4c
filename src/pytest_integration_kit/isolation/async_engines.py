"""The AsyncEngine for an isolated database, made the way its asyncio driver needs.

Tests run in many event loops. psycopg's connections can move between loops: they are
kept (:mod:`~pytest_integration_kit.isolation.crossloop`). asyncpg's belong to the loop
that opened them: they are opened and kept on the kit's own
(:mod:`~pytest_integration_kit.isolation.kitloop`). aiomysql's and asyncmy's are not kept
between uses (:mod:`~pytest_integration_kit.isolation.loopbound`).
:class:`~pytest_integration_kit.isolation.databases.IsolatedDatabases` keeps one per
database and driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.isolation import crossloop, kitloop, loopbound
from pytest_integration_kit.isolation.errors import IsolationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from pytest_integration_kit.isolation.admin import DatabaseAdmin
    from pytest_integration_kit.isolation.databases import IsolatedDatabases

__all__ = ["async_driver", "new_async_engine"]


def async_driver(admin: DatabaseAdmin, service: str) -> str:
    """The first installed asyncio driver for this kind of server."""
    import importlib.util  # noqa: PLC0415 - only asked when an async fixture is used

    for driver in admin.async_drivers:
        module = "psycopg" if driver == "psycopg_async" else driver
        if importlib.util.find_spec(module) is not None:
            return driver
    raise IsolationError(
        f"no asyncio driver for {service}: install one of " + ", ".join(admin.async_drivers)
    )


def new_async_engine(databases: IsolatedDatabases, database: str, driver: str) -> AsyncEngine:
    """A new AsyncEngine on ``database`` (of ``databases``' server) through ``driver``."""
    from sqlalchemy import event, make_url  # noqa: PLC0415 - optional dependency, imported when used

    admin = databases.admin
    url = make_url(databases.endpoint.with_database(database).url)
    url = url.set(drivername=f"{url.drivername.split('+', 1)[0]}+{driver}")
    if driver in crossloop.CROSS_LOOP_DRIVERS:
        engine = admin.kit_async_engine(url, poolclass=crossloop.cross_loop_pool())
        event.listen(engine.sync_engine, "checkout", crossloop.on_checkout)
        return engine
    if driver == "asyncpg" and kitloop.supported():
        return kitloop.kept_asyncpg_engine(admin, url, databases.admin_engine)
    return loopbound.loop_bound_engine(admin, url, databases.admin_engine)
