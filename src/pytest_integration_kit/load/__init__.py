"""Load: run a callable or coroutine N times at a concurrency, measure throughput and
p50/p95/p99 latency against a budget, and sample what the servers used meanwhile.

The ``load`` fixture is a :class:`LoadRunner` wired to the session's servers and the
end-of-run summary; the runner works the same from a script.

.. versionadded:: 0.1
"""

from __future__ import annotations

from pytest_integration_kit.load.resources import (
    Resources,
    ResourceSampler,
    ServerUsage,
    Target,
)
from pytest_integration_kit.load.result import Budget, LoadResult
from pytest_integration_kit.load.runner import LoadError, LoadRunner

__all__ = [
    "Budget",
    "LoadError",
    "LoadResult",
    "LoadRunner",
    "ResourceSampler",
    "Resources",
    "ServerUsage",
    "Target",
]
