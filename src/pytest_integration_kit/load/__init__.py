"""Load: run a callable or coroutine N times at a concurrency, measure throughput and
p50/p95/p99 latency against a budget, and sample what the servers used meanwhile.

The ``load`` fixture is a :class:`LoadRunner` wired to the session's servers and the
end-of-run summary; the runner works the same from a script.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.exports import lazy_exports

if TYPE_CHECKING:
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

# Imported on first use: a run that needs no server must not pay for the whole layer
# (mypy reads the imports above instead).
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        {
            "Budget": "result",
            "LoadError": "runner",
            "LoadResult": "result",
            "LoadRunner": "runner",
            "ResourceSampler": "resources",
            "Resources": "resources",
            "ServerUsage": "resources",
            "Target": "resources",
        },
    )
