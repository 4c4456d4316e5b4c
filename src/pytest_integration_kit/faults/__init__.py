"""Faults: a TCP fault proxy for any service, the network guard, and (in ``faults.http``,
which needs httpx) one HTTP fault vocabulary for ``http_mock`` and ``mock_server`` routes.

.. versionadded:: 0.1
"""

from __future__ import annotations

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
