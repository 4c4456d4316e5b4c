"""Mock external HTTP services: respx routes in-process and the same routes on a real socket."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.exports import lazy_exports

if TYPE_CHECKING:
    from pytest_integration_kit.mocks.router import HttpMock
    from pytest_integration_kit.mocks.server import MockServer

__all__ = ["HttpMock", "MockServer"]

# Imported on first use: a run that needs no server must not pay for the whole layer
# (mypy reads the imports above instead).
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        {
            "HttpMock": "router",
            "MockServer": "server",
        },
    )
