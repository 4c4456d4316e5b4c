"""Exceptions raised by pytest-integration-kit.

The hierarchy::

    IntegrationKitError
    ├── ConfigError            a setting has a bad value (pytest turns it into a usage error)
    ├── BackendUnavailable     the chosen backend cannot run here (no engine, no binaries,
    │   │                      no URL); under ``auto`` the missing-backend policy decides
    │   │                      skip or fail, a backend chosen by name always fails
    │   └── MissingExtra       a pip extra (a driver) is not installed: always an error
    └── ServerStartError       the backend ran but the server did not come up
        └── ServerNotReady     the readiness probe never succeeded in time

    IntegrationKitWarning      (a pytest.PytestWarning) a decision or a documented limit
                               the user should see: why ``auto`` chose a backend, tests
                               skipped for a missing server, a leak rollback cannot undo
"""

from __future__ import annotations

import pytest

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "IntegrationKitError",
    "IntegrationKitWarning",
    "MissingExtra",
    "ServerNotReady",
    "ServerStartError",
]


class IntegrationKitError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(IntegrationKitError):
    """One or more settings have values outside what is allowed."""


class BackendUnavailable(IntegrationKitError):
    """The backend cannot provide the service on this machine.

    The message says what was tried and how to fix it, naming the setting; ``tried``
    lists, for ``auto``, why each backend could not (``"docker: …"``).
    """

    def __init__(self, message: object = "", *, tried: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.tried = tried


class MissingExtra(BackendUnavailable):
    """A package the service needs (its Python driver) is not installed.

    Not a matter of this machine's servers: installing the extra is the fix, so it is
    an error whatever ``integration_missing`` says.
    """


class ServerStartError(IntegrationKitError):
    """The backend launched the server but it failed to start."""


class ServerNotReady(ServerStartError):
    """The readiness probe did not succeed before the start-up timeout."""


class IntegrationKitWarning(pytest.PytestWarning):
    """A decision the kit made, or a documented limit it met, that the user should see.

    A :class:`pytest.PytestWarning`, so ``-W error::pytest_integration_kit.IntegrationKitWarning``
    and ``filterwarnings`` treat it like pytest's own.
    """
