"""Mock external HTTP services: respx routes in-process and the same routes on a real socket."""

from __future__ import annotations

from pytest_integration_kit.mocks.router import HttpMock
from pytest_integration_kit.mocks.server import MockServer

__all__ = ["HttpMock", "MockServer"]
