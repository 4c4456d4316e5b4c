"""pytest-integration-kit: real servers, isolated data, mock services and faults for pytest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.errors import (
    BackendUnavailable,
    ConfigError,
    IntegrationKitError,
    IntegrationKitWarning,
    ServerNotReady,
    ServerStartError,
)
from pytest_integration_kit.exports import lazy_exports

if TYPE_CHECKING:
    from pytest_integration_kit.fixtures.compose import compose_environment_factory
    from pytest_integration_kit.fixtures.connections import (
        mysql_connection_factory,
        postgres_async_connection_factory,
        postgres_connection_factory,
    )
    from pytest_integration_kit.fixtures.faults import fault_proxy_factory
    from pytest_integration_kit.fixtures.isolation import (
        mysql_async_session_factory,
        mysql_engine_factory,
        mysql_session_factory,
        postgres_async_session_factory,
        postgres_engine_factory,
        postgres_session_factory,
    )
    from pytest_integration_kit.fixtures.load import load_fixture_factory
    from pytest_integration_kit.fixtures.mocks import http_mock_factory, mock_server_factory
    from pytest_integration_kit.fixtures.redis_clients import (
        redis_async_client_factory,
        redis_client_factory,
    )
    from pytest_integration_kit.fixtures.services import (
        container_server_factory,
        mysql_server_factory,
        postgres_server_factory,
        redis_server_factory,
        server_fixture_factory,
    )
    from pytest_integration_kit.services.container import Command, Http, LogLine, Tcp
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.launch import Credentials, LocalLaunch
    from pytest_integration_kit.services.registry import register_service
    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = [
    "BackendUnavailable",
    "Command",
    "ConfigError",
    "Credentials",
    "Endpoint",
    "Http",
    "IntegrationKitError",
    "IntegrationKitWarning",
    "LocalLaunch",
    "LogLine",
    "ServerNotReady",
    "ServerStartError",
    "ServiceSpec",
    "Tcp",
    "compose_environment_factory",
    "container_server_factory",
    "fault_proxy_factory",
    "http_mock_factory",
    "load_fixture_factory",
    "mock_server_factory",
    "mysql_async_session_factory",
    "mysql_connection_factory",
    "mysql_engine_factory",
    "mysql_server_factory",
    "mysql_session_factory",
    "postgres_async_connection_factory",
    "postgres_async_session_factory",
    "postgres_connection_factory",
    "postgres_engine_factory",
    "postgres_server_factory",
    "postgres_session_factory",
    "redis_async_client_factory",
    "redis_client_factory",
    "redis_server_factory",
    "register_service",
    "server_fixture_factory",
]

# Imported on first use: a run that needs no server must not pay for the whole layer
# (mypy reads the imports above instead).
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        {
            "Command": "services.container",
            "Credentials": "services.launch",
            "Endpoint": "services.endpoint",
            "Http": "services.container",
            "LocalLaunch": "services.launch",
            "LogLine": "services.container",
            "ServiceSpec": "services.spec",
            "Tcp": "services.container",
            "compose_environment_factory": "fixtures.compose",
            "container_server_factory": "fixtures.services",
            "fault_proxy_factory": "fixtures.faults",
            "http_mock_factory": "fixtures.mocks",
            "load_fixture_factory": "fixtures.load",
            "mock_server_factory": "fixtures.mocks",
            "mysql_async_session_factory": "fixtures.isolation",
            "mysql_connection_factory": "fixtures.connections",
            "mysql_engine_factory": "fixtures.isolation",
            "mysql_server_factory": "fixtures.services",
            "mysql_session_factory": "fixtures.isolation",
            "postgres_async_connection_factory": "fixtures.connections",
            "postgres_async_session_factory": "fixtures.isolation",
            "postgres_connection_factory": "fixtures.connections",
            "postgres_engine_factory": "fixtures.isolation",
            "postgres_server_factory": "fixtures.services",
            "postgres_session_factory": "fixtures.isolation",
            "redis_async_client_factory": "fixtures.redis_clients",
            "redis_client_factory": "fixtures.redis_clients",
            "redis_server_factory": "fixtures.services",
            "register_service": "services.registry",
            "server_fixture_factory": "fixtures.services",
        },
    )
