"""pytest-integration-kit: real servers, isolated data, mock services and faults for pytest."""

from __future__ import annotations

from pytest_integration_kit.errors import (
    BackendUnavailable,
    ConfigError,
    IntegrationKitError,
    ServerNotReady,
    ServerStartError,
)
from pytest_integration_kit.fixtures.services import (
    mysql_server_factory,
    postgres_server_factory,
    redis_server_factory,
    server_fixture_factory,
)
from pytest_integration_kit.services.endpoint import Endpoint

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "Endpoint",
    "IntegrationKitError",
    "ServerNotReady",
    "ServerStartError",
    "mysql_server_factory",
    "postgres_server_factory",
    "redis_server_factory",
    "server_fixture_factory",
]
