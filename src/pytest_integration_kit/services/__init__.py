"""What runs: one spec per kind of server, and the endpoint every backend returns."""

from __future__ import annotations

from pytest_integration_kit.services.endpoint import Endpoint
from pytest_integration_kit.services.mysql import MySQLSpec
from pytest_integration_kit.services.postgres import PostgresSpec
from pytest_integration_kit.services.redis import RedisSpec
from pytest_integration_kit.services.spec import Credentials, LocalLaunch, ServiceSpec

__all__ = [
    "SPECS",
    "Credentials",
    "Endpoint",
    "LocalLaunch",
    "MySQLSpec",
    "PostgresSpec",
    "RedisSpec",
    "ServiceSpec",
    "spec_for",
]

#: The built-in services by name.
SPECS: dict[str, ServiceSpec] = {
    spec.name: spec for spec in (PostgresSpec(), MySQLSpec(), RedisSpec())
}


def spec_for(service: str | ServiceSpec) -> ServiceSpec:
    if isinstance(service, ServiceSpec):
        return service
    try:
        return SPECS[service]
    except KeyError:
        raise ValueError(
            f"unknown service {service!r}; known: {', '.join(sorted(SPECS))}"
        ) from None
