"""Isolation: per-worker databases from a schema template, rollback sessions, clean Redis.

Plain library classes, usable without pytest; the fixtures in
``pytest_integration_kit.fixtures.isolation`` are thin over them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.exports import lazy_exports

if TYPE_CHECKING:
    from pytest_integration_kit.isolation.clone_pool import Clone, ClonePool
    from pytest_integration_kit.isolation.connections import (
        asyncpg_connection,
        driver_arguments,
        psycopg_connection,
        pymysql_connection,
    )
    from pytest_integration_kit.isolation.databases import IsolatedDatabases
    from pytest_integration_kit.isolation.errors import IsolationError, LeakError
    from pytest_integration_kit.isolation.factories import bind_factories
    from pytest_integration_kit.isolation.lease import STRATEGIES, DatabaseLease
    from pytest_integration_kit.isolation.naming import database_name, owner_token
    from pytest_integration_kit.isolation.redis import RedisKeyspace
    from pytest_integration_kit.isolation.schema import SchemaSource
    from pytest_integration_kit.isolation.sessions import async_rollback_session, rollback_session
    from pytest_integration_kit.isolation.workspace import IsolationWorkspace

__all__ = [
    "STRATEGIES",
    "Clone",
    "ClonePool",
    "DatabaseLease",
    "IsolatedDatabases",
    "IsolationError",
    "IsolationWorkspace",
    "LeakError",
    "RedisKeyspace",
    "SchemaSource",
    "async_rollback_session",
    "asyncpg_connection",
    "bind_factories",
    "database_name",
    "driver_arguments",
    "owner_token",
    "psycopg_connection",
    "pymysql_connection",
    "rollback_session",
]

# Imported on first use: a run that needs no server must not pay for the whole layer
# (mypy reads the imports above instead).
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        {
            "Clone": "clone_pool",
            "ClonePool": "clone_pool",
            "DatabaseLease": "lease",
            "IsolatedDatabases": "databases",
            "IsolationError": "errors",
            "IsolationWorkspace": "workspace",
            "LeakError": "errors",
            "RedisKeyspace": "redis",
            "STRATEGIES": "lease",
            "SchemaSource": "schema",
            "async_rollback_session": "sessions",
            "asyncpg_connection": "connections",
            "bind_factories": "factories",
            "database_name": "naming",
            "driver_arguments": "connections",
            "owner_token": "naming",
            "psycopg_connection": "connections",
            "pymysql_connection": "connections",
            "rollback_session": "sessions",
        },
    )
