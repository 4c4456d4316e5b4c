"""The isolation layer's errors, under :class:`~pytest_integration_kit.errors.IntegrationKitError`.

The hierarchy::

    IsolationError    a test database could not be prepared
    └── LeakError     a test left a connection or a transaction behind
"""

from __future__ import annotations

from pytest_integration_kit.errors import IntegrationKitError

__all__ = ["IsolationError", "LeakError"]


class IsolationError(IntegrationKitError):
    """A test database could not be prepared (schema, seed, clone or drop failed)."""


class LeakError(IsolationError):
    """A test left a connection checked out or a transaction open (strict leak check)."""
