"""Isolation: per-worker databases from a schema template, rollback sessions, clean Redis.

Plain library classes, usable without pytest; the fixtures in
``pytest_integration_kit.fixtures.isolation`` are thin over them.
"""

from __future__ import annotations

from pytest_integration_kit.isolation.clone_pool import Clone, ClonePool
from pytest_integration_kit.isolation.connections import (
    asyncpg_connection,
    driver_arguments,
    psycopg_connection,
    pymysql_connection,
)
from pytest_integration_kit.isolation.databases import (
    IsolatedDatabases,
    IsolationError,
    LeakError,
    database_name,
    owner_token,
)
from pytest_integration_kit.isolation.factories import bind_factories
from pytest_integration_kit.isolation.lease import STRATEGIES, DatabaseLease
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
