"""What runs: one spec per kind of server, the registry of them, and the endpoint every
backend returns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.exports import lazy_exports
from pytest_integration_kit.services.mysql import MySQLSpec
from pytest_integration_kit.services.postgres import PostgresSpec
from pytest_integration_kit.services.redis import RedisSpec
from pytest_integration_kit.services.registry import (
    ENTRY_POINT_GROUP,
    REGISTRY,
    ServiceRegistrationError,
    register_service,
    spec_for,
)
from pytest_integration_kit.services.spec import ServiceSpec

if TYPE_CHECKING:
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.launch import Credentials, LocalLaunch

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "Credentials",
    "Endpoint",
    "LocalLaunch",
    "MySQLSpec",
    "PostgresSpec",
    "RedisSpec",
    "ServiceRegistrationError",
    "ServiceSpec",
    "register_service",
    "spec_for",
]

# What only a started server uses, made on first use: every run imports this package (for
# the specs' settings), few start a server (issue #11).
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        {"Credentials": "launch", "Endpoint": "endpoint", "LocalLaunch": "launch"},
    )
