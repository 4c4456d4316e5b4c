"""What runs: one spec per kind of server, the registry of them, and the endpoint every
backend returns."""

from __future__ import annotations

from pytest_integration_kit.services.endpoint import Endpoint
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
from pytest_integration_kit.services.spec import Credentials, LocalLaunch, ServiceSpec

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
