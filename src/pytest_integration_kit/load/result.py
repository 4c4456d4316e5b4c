"""What a load block measured, and its budget check.

Percentiles come from :func:`statistics.quantiles` (``method="inclusive"``) over the
latency of every call of the block, failed calls included; throughput is calls per
second of the block's wall time.

.. versionadded:: 0.1
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.load.resources import Resources

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Budget", "LoadResult", "latency_figures"]


def latency_figures(latencies: Sequence[float]) -> tuple[float, float, float, float]:
    """p50, p95, p99 and max in milliseconds of ``latencies`` (seconds)."""
    ms = [x * 1000.0 for x in latencies]
    if not ms:
        return (math.nan,) * 4
    if len(ms) == 1:
        return (ms[0],) * 4
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98], max(ms)


@dataclass(frozen=True)
class Budget:
    """One checked figure: ``p95_ms <= 50`` or ``rps >= 100``."""

    figure: str
    measured: float
    limit: float
    #: ``<=`` for latencies and errors, ``>=`` for throughput.
    op: str

    @property
    def ok(self) -> bool:
        if self.op == ">=":
            return self.measured >= self.limit
        return self.measured <= self.limit

    def describe(self) -> str:
        unit = " ms" if self.figure.endswith("_ms") else ""
        label = self.figure.removesuffix("_ms")
        value = f"{self.measured:.0f}" if self.figure == "errors" else f"{self.measured:.2f}"
        return f"{label} {value}{unit} (budget {self.op} {self.limit:g}{unit}): " + (
            "ok" if self.ok else "MISSED"
        )


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"assert_budget: {name}={value!r}; allowed: a number >= 0 or None")
    return float(value)


@dataclass(frozen=True)
class LoadResult:
    """The figures of one load block (times in milliseconds, ``rps`` calls per second).

    ``errors`` counts the calls that raised, ``first_error`` is the first one's repr;
    ``resources`` is what the session's servers used during the block.
    """

    name: str
    n: int
    concurrency: int
    #: ``threads`` or ``asyncio``.
    mode: str
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    first_error: str | None
    resources: Resources = field(default_factory=Resources)
    #: Every budget check made on this result, in order (the summary shows the last).
    checks: list[tuple[Budget, ...]] = field(default_factory=list, repr=False, compare=False)

    def budgets(
        self,
        *,
        p50_ms: float | None = None,
        p95_ms: float | None = None,
        p99_ms: float | None = None,
        min_rps: float | None = None,
        max_errors: int = 0,
    ) -> tuple[Budget, ...]:
        """The checks :meth:`assert_budget` makes, without raising."""
        checks = [
            Budget(figure, getattr(self, figure), _number(figure, limit), "<=")
            for figure, limit in (("p50_ms", p50_ms), ("p95_ms", p95_ms), ("p99_ms", p99_ms))
            if limit is not None
        ]
        if min_rps is not None:
            checks.append(Budget("rps", self.rps, _number("min_rps", min_rps), ">="))
        checks.append(Budget("errors", self.errors, _number("max_errors", max_errors), "<="))
        return tuple(checks)

    def assert_budget(
        self,
        *,
        p50_ms: float | None = None,
        p95_ms: float | None = None,
        p99_ms: float | None = None,
        min_rps: float | None = None,
        max_errors: int = 0,
    ) -> LoadResult:
        """Raise AssertionError, stating every measured figure against its budget, when
        one is missed; errors must stay within ``max_errors`` (0 unless given).

        Returns the result, so a check can be chained.
        """
        __tracebackhide__ = True  # the failure is the test's, not this module's
        checks = self.budgets(
            p50_ms=p50_ms, p95_ms=p95_ms, p99_ms=p99_ms, min_rps=min_rps, max_errors=max_errors
        )
        self.checks.append(checks)
        if all(check.ok for check in checks):
            return self
        lines = [f"load {self.name!r} missed its budget ({self.describe()}):"]
        lines += [f"  {check.describe()}" for check in checks]
        if self.first_error is not None:
            lines.append(f"  first error: {self.first_error}")
        raise AssertionError("\n".join(lines))

    @property
    def verdict(self) -> str:
        """``ok``, ``MISSED: p95 63.20 ms > 50`` or ``no budget`` (the last check made)."""
        if not self.checks:
            return "no budget"
        missed = [c for c in self.checks[-1] if not c.ok]
        if not missed:
            return "ok"
        return "MISSED: " + ", ".join(
            f"{c.figure.removesuffix('_ms')} {c.measured:.4g} "
            f"{'<' if c.op == '>=' else '>'} {c.limit:g}"
            for c in missed
        )

    def describe(self) -> str:
        """``n=200 concurrency=8 threads in 1.02 s: 196.1 rps, p50 …, errors 0``."""
        return (
            f"n={self.n} concurrency={self.concurrency} {self.mode} in {self.seconds:.2f} s: "
            f"{self.rps:.1f} rps, p50 {self.p50_ms:.2f} ms, p95 {self.p95_ms:.2f} ms, "
            f"p99 {self.p99_ms:.2f} ms, max {self.max_ms:.2f} ms, errors {self.errors}"
        )

    def to_json(self) -> dict[str, Any]:
        """The figures, the resources and the verdict as plain JSON types."""
        data = asdict(self)
        data.pop("checks")
        data["resources"] = self.resources.to_json()
        data["verdict"] = self.verdict
        return data
