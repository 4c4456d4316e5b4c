"""Exceptions raised by pytest-integration-kit.

The hierarchy::

    IntegrationKitError
    ├── ConfigError            a setting has a bad value (pytest turns it into a usage error)
    ├── BackendUnavailable     the chosen backend cannot run here (no engine, no binaries,
    │                          no URL); the missing-backend policy decides skip or fail
    └── ServerStartError       the backend ran but the server did not come up
        └── ServerNotReady     the readiness probe never succeeded in time
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "IntegrationKitError",
    "ServerNotReady",
    "ServerStartError",
]


class IntegrationKitError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(IntegrationKitError):
    """One or more settings have values outside what is allowed."""


class BackendUnavailable(IntegrationKitError):
    """The backend cannot provide the service on this machine.

    The message says what was tried and how to fix it, naming the setting.
    """


class ServerStartError(IntegrationKitError):
    """The backend launched the server but it failed to start."""


class ServerNotReady(ServerStartError):
    """The readiness probe did not succeed before the start-up timeout."""
