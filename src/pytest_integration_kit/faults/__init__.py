"""Faults: a TCP fault proxy for any service, the network guard, and (in ``faults.http``,
which needs httpx) one HTTP fault vocabulary for ``http_mock`` and ``mock_server`` routes.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.exports import lazy_exports

if TYPE_CHECKING:
    from pytest_integration_kit.faults.network import NetworkBlocked, NetworkGuard
    from pytest_integration_kit.faults.proxy import FaultProxy, FaultProxyFactory
    from pytest_integration_kit.faults.toxics import (
        Bandwidth,
        Latency,
        LimitData,
        ResetPeer,
        Slicer,
        SlowClose,
        Timeout,
        Toxic,
    )

__all__ = [
    "Bandwidth",
    "FaultProxy",
    "FaultProxyFactory",
    "Latency",
    "LimitData",
    "NetworkBlocked",
    "NetworkGuard",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Timeout",
    "Toxic",
]

# Imported on first use: a run that needs no server must not pay for the whole layer
# (mypy reads the imports above instead).
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        {
            "Bandwidth": "toxics",
            "FaultProxy": "proxy",
            "FaultProxyFactory": "proxy",
            "Latency": "toxics",
            "LimitData": "toxics",
            "NetworkBlocked": "network",
            "NetworkGuard": "network",
            "ResetPeer": "toxics",
            "Slicer": "toxics",
            "SlowClose": "toxics",
            "Timeout": "toxics",
            "Toxic": "toxics",
        },
    )
