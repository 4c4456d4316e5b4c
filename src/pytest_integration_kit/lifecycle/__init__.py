"""How long servers live and who shares them."""

from __future__ import annotations

from pytest_integration_kit.lifecycle.servers import ServerRequest, ServerSet, StartRecord

__all__ = ["ServerRequest", "ServerSet", "StartRecord"]
