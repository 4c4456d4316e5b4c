"""Issue 11's targets, checked against one run's medians: a second table under the first.

Every target is a ratio or a difference between two rows of the same case measured in
the same run, never an absolute figure: the machine is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

Medians = dict[str, dict[str, float]]


@dataclass(frozen=True)
class Target:
    """One promise: which case, and how its medians keep it."""

    what: str
    case: str  # a part of the case's title
    check: Callable[[dict[str, float]], tuple[str, bool] | None]


def _ratio(
    tool: str, other: str, limit: float
) -> Callable[[dict[str, float]], tuple[str, bool] | None]:
    def check(m: dict[str, float]) -> tuple[str, bool] | None:
        if tool not in m or other not in m:
            return None
        ratio = m[tool] / m[other]
        return f"{ratio:.2f}x", ratio <= limit

    return check


def _over(
    tool: str, other: str, limit: float, scale: float, unit: str
) -> Callable[[dict[str, float]], tuple[str, bool] | None]:
    def check(m: dict[str, float]) -> tuple[str, bool] | None:
        if tool not in m or other not in m:
            return None
        over = m[tool] - m[other]
        return f"{over * scale:+.2f} {unit}", over <= limit

    return check


def _at_most(
    tool: str, limit: float, scale: float, unit: str
) -> Callable[[dict[str, float]], tuple[str, bool] | None]:
    def check(m: dict[str, float]) -> tuple[str, bool] | None:
        if tool not in m:
            return None
        return f"{m[tool] * scale:.3g} {unit}", m[tool] <= limit

    return check


def _lead_over_peers(factor: float) -> Callable[[dict[str, float]], tuple[str, bool] | None]:
    def check(m: dict[str, float]) -> tuple[str, bool] | None:
        peers = [v for k, v in m.items() if k != "ours" and not k.startswith(("ours", "floor"))]
        if "ours" not in m or not peers:
            return None
        lead = min(peers) / m["ours"]
        return f"best peer {lead:.2f}x ours", lead >= factor

    return check


def _together(limit: float) -> Callable[[dict[str, float]], tuple[str, bool] | None]:
    def check(m: dict[str, float]) -> tuple[str, bool] | None:
        alone = [v for k, v in m.items() if k.endswith(" alone") and k.startswith("ours")]
        if "ours" not in m or not alone:
            return None
        ratio = m["ours"] / max(alone)
        return f"{ratio:.2f}x the slowest alone", ratio <= limit

    return check


_FLOOR = "floor: raw connection, BEGIN/ROLLBACK"
TARGETS = (
    Target(
        "no server: ≤ bare pytest + 50 ms",
        "a run that needs no server",
        _over("ours", "floor: bare pytest", 0.050, 1000, "ms"),
    ),
    Target(
        "postgres_session ≤ 1.5x the floor, local",
        "per test, postgres_session, local",
        _ratio("ours", _FLOOR, 1.5),
    ),
    Target(
        "postgres_session ≤ the recipe, local",
        "per test, postgres_session, local",
        _ratio("ours", "hand-written recipe", 1.0),
    ),
    Target(
        "postgres_session ≤ 1.5x the floor, docker",
        "per test, postgres_session, docker",
        _ratio("ours", _FLOOR, 1.5),
    ),
    Target(
        "postgres_session ≤ the recipe, docker",
        "per test, postgres_session, docker",
        _ratio("ours", "hand-written recipe", 1.0),
    ),
    Target(
        "mysql_session ≤ 1.5x the floor, local",
        "per test, mysql_session, local",
        _ratio("ours", _FLOOR, 1.5),
    ),
    Target(
        "mysql_session ≤ the recipe, local",
        "per test, mysql_session, local",
        _ratio("ours", "hand-written recipe", 1.0),
    ),
    Target(
        "async session, a loop per test ≤ 2x sync (default driver)",
        "per test, async session",
        _ratio("ours, asyncpg (default driver)", "floor: ours, sync postgres_session", 2.0),
    ),
    Target(
        "async session, a loop per test ≤ 2x sync (psycopg_async)",
        "per test, async session",
        _ratio("ours, psycopg_async", "floor: ours, sync postgres_session", 2.0),
    ),
    Target(
        "redis_client ≤ floor + 0.3 ms, local",
        "per test, redis_client, local",
        _over("ours", "floor: raw SET + GET", 0.0003, 1000, "ms"),
    ),
    Target(
        "redis_client ≤ floor + 0.3 ms, docker",
        "per test, redis_client, docker",
        _over("ours", "floor: raw SET + GET", 0.0003, 1000, "ms"),
    ),
    Target(
        "truncate ≤ 2x rollback",
        "per test, strategies",
        _ratio("ours, truncate", "floor: ours, rollback", 2.0),
    ),
    Target(
        "clone from a warm pool ≤ 5 ms per test (2,000 tests)",
        "per test, strategies",
        lambda m: next((_at_most(k, 0.005, 1000, "ms")(m) for k in m if "clone" in k), None),
    ),
    Target(
        "warm start ≤ bare pytest + 150 ms, local",
        "warm start to first test, local",
        _over("ours", "floor: bare pytest", 0.150, 1000, "ms"),
    ),
    Target(
        # Like for like: pytest-postgresql's fixture is a psycopg connection, as
        # postgres_connection is; the postgres_session row adds SQLAlchemy's ORM import.
        "warm start ahead of pytest-postgresql noproc (a psycopg connection each)",
        "warm start to first test, local",
        _ratio("ours, postgres_connection", "pytest-postgresql noproc", 1.0),
    ),
    Target(
        "warm start ahead of pytest-mock-resources (pre-started)",
        "warm start to first test, docker",
        _ratio("ours", "pytest-mock-resources, container started by `pmr`", 1.0),
    ),
    Target(
        "warm start ≤ bare pytest + 150 ms, docker",
        "warm start to first test, docker",
        _over("ours", "floor: bare pytest", 0.150, 1000, "ms"),
    ),
    Target(
        "cold start, PG local ≤ pytest-postgresql",
        "cold start to first test, PG, local",
        _ratio("ours", "pytest-postgresql", 1.0),
    ),
    Target(
        "cold start, PG docker: 2x ahead of every peer",
        "cold start to first test, PG, docker",
        _lead_over_peers(2.0),
    ),
    Target(
        "cold start, three together ≤ 1.2x the slowest alone, local",
        "cold start to first test, PG + Redis + MySQL, local",
        _together(1.2),
    ),
    Target(
        "cold start, three together ≤ 1.2x the slowest alone, docker",
        "cold start to first test, PG + Redis + MySQL, docker",
        _together(1.2),
    ),
    Target(
        "fault proxy ≤ 100 µs per round trip (p50)",
        "fault proxy",
        _at_most("ours", 100e-6, 1e6, "µs"),
    ),
    Target(
        "-n 2 on a DB-bound suite ≤ 0.6x serial",
        "DB-bound tests",
        _ratio("ours", "floor: ours, serial", 0.6),
    ),
)


def render_targets(medians: Medians) -> str:
    """A markdown table: target, measured, held (or not measured in this run)."""
    lines = ["| target | measured | holds |", "|---|---|---|"]
    for target in TARGETS:
        case = next((m for title, m in medians.items() if target.case in title), None)
        verdict = target.check(case) if case else None
        if verdict is None:
            lines.append(f"| {target.what} | not measured | — |")
        else:
            measured, holds = verdict
            lines.append(f"| {target.what} | {measured} | {'yes' if holds else '**no**'} |")
    return "\n".join(lines)
