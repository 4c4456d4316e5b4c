"""The cases of the side-by-side run: a title, and per tool a way to measure it once.

Each case's title ends in its unit; its ``floor:`` rows are what the issue's targets
compare against (see ``targets.py``). A tool that fails is reported under the table.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import suites
from harness import OURS_IMAGES, PG_CTL, REDIS
from suites import Suite

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PER_TEST = 300
PER_DB_TEST = 30  # database-per-test tools: a test costs them a database
CLONE_TESTS = 2000  # the clone target is a steady state over 2,000 tests
BOUND_TESTS = 400  # the -n 2 case: tests that wait on the server, on a kept one
BOUND_SLEEP_MS = 30

Case = dict[str, Callable[[], float | None]]
#: Failures by "case / tool", printed under the table.
ERRORS: dict[str, str] = {}
#: Containers started by the -n 2 runs, by tool: the last measured run's count.
CONTAINERS: dict[str, int] = {}


def guarded(title: str, tool: str, measure: Callable[[], float | None]) -> float | None:
    """One measurement; a tool that fails is reported under the table, not fatal."""
    try:
        return measure()
    except Exception as exc:
        ERRORS[f"{title} / {tool}"] = f"{type(exc).__name__}: {exc}"
        return None


def _measure(suite: Suite, what: str, *args: str, xdist: int = 0, tool: str = "") -> float:
    result = harness.run_suite(suite, *args, xdist=xdist, count_containers=bool(tool))
    if result.error:
        raise RuntimeError(result.error)
    if tool and result.containers is not None:
        CONTAINERS[tool] = result.containers
    value = result.wall if what == "wall" else getattr(result, what)
    if value is None:
        raise RuntimeError(f"the run measured no {what}")
    return float(value)


def first(suite: Suite, *args: str) -> Callable[[], float | None]:
    """Seconds from launching pytest to the first test body."""
    return lambda: _measure(suite, "first", *args)


def per_test(suite: Suite) -> Callable[[], float | None]:
    """Seconds per test, the second test's start to the last one's end."""
    return lambda: _measure(suite, "per_test")


def wall(suite: Suite, *args: str, xdist: int = 0, tool: str = "") -> Callable[[], float | None]:
    """Seconds from launch to exit (with ``tool``: counting the containers started)."""
    return lambda: _measure(suite, "wall", *args, xdist=xdist, tool=tool)


def proxy_overhead(endpoint: Any) -> Callable[[], float | None]:
    """Seconds a Redis ``PING`` takes through the fault proxy over a direct one (p50)."""

    def measure() -> float:
        import bench_faults  # noqa: PLC0415 - bench/ is on the path only for this case

        from pytest_integration_kit.faults.proxy import FaultProxy  # noqa: PLC0415

        with FaultProxy(endpoint, seed=1) as proxy:
            direct_sock, direct = bench_faults.redis_pinger(endpoint.host, endpoint.port, endpoint)
            proxy_sock, proxied = bench_faults.redis_pinger(proxy.host, proxy.port, endpoint)
            try:
                floor_samples, through = bench_faults.measure_interleaved(direct, proxied)
            finally:
                direct_sock.close()
                proxy_sock.close()
        return statistics.median(p - f for p, f in zip(through, floor_samples, strict=True))

    return measure


def pmr_prestarted(n: int) -> Callable[[], float | None]:
    """pytest-mock-resources on the container its CLI started before the run."""

    def measure() -> float:
        subprocess.run(["pmr", "postgres"], check=True, capture_output=True, timeout=300)
        try:
            return _measure(suites.pytest_mock_resources(n), "first")
        finally:
            # Left running, it would make pytest-mock-resources' next "cold" start warm.
            subprocess.run(["pmr", "--stop", "postgres"], capture_output=True, check=False)

    return measure


def build_cases(floors: dict[str, dict[str, Any]], docker: bool) -> dict[str, Case]:
    pg_ctl = PG_CTL[0]
    both = ("postgres", "redis")
    three = ("postgres", "redis", "mysql")
    local, dock = floors["local"], floors.get("docker", {})
    bound = suites.ours_pg(BOUND_TESTS, sleep_ms=BOUND_SLEEP_MS)
    cases: dict[str, Case] = {
        "a run that needs no server (the plugin loaded), 3 tests: wall (s)": {
            "ours": wall(suites.bare(3, ours=True)),
            "floor: bare pytest": wall(suites.bare(3)),
        },
        "cold start to first test, PG, local (s)": {
            "ours": first(suites.ours_cold(("postgres",))),
            "pytest-postgresql": first(suites.pytest_postgresql_cold(("postgres",), pg_ctl, REDIS)),
            "floor: raw initdb + start": harness.raw_cold_start,
        },
        "cold start to first test, PG + Redis + MySQL, local (s)": {
            "ours": first(suites.ours_cold(three)),
            "pytest-postgresql + pytest-redis (PG + Redis)": first(
                suites.pytest_postgresql_cold(both, pg_ctl, REDIS)
            ),
            "ours, MySQL alone": first(suites.ours_cold(("mysql",))),
            "ours, Redis alone": first(suites.ours_cold(("redis",))),
            "ours, PG alone": first(suites.ours_cold(("postgres",))),
        },
        "per test, postgres_session, local (ms)": {
            "ours": per_test(suites.ours_pg(PER_TEST)),
            "hand-written recipe": per_test(suites.recipe_pg(PER_TEST, url=local["postgres"])),
            "pytest-postgresql": per_test(suites.pytest_postgresql(PER_DB_TEST, pg_ctl)),
            "floor: raw connection, BEGIN/ROLLBACK": per_test(
                suites.floor_pg(PER_TEST, local["postgres"])
            ),
            "bare test": per_test(suites.bare(PER_TEST)),
        },
        "per test, mysql_session, local (ms)": {
            "ours": per_test(suites.ours_mysql(PER_TEST)),
            "hand-written recipe": per_test(suites.recipe_pg(PER_TEST, url=local["mysql"])),
            "floor: raw connection, BEGIN/ROLLBACK": per_test(
                suites.floor_mysql(PER_TEST, local["mysql_connect"])
            ),
        },
        "per test, strategies, PG, local (ms)": {
            "ours, truncate": per_test(suites.ours_pg(PER_TEST, isolation="truncate")),
            f"ours, clone ({CLONE_TESTS} tests)": per_test(
                suites.ours_pg(CLONE_TESTS, isolation="clone")
            ),
            "floor: ours, rollback": per_test(suites.ours_pg(PER_TEST)),
        },
        "per test, async session, a loop per test, PG, local (ms)": {
            "ours, asyncpg (default driver)": per_test(suites.ours_pg_async(PER_TEST)),
            "ours, psycopg_async": per_test(suites.ours_pg_async(PER_TEST, driver="psycopg_async")),
            "floor: ours, sync postgres_session": per_test(suites.ours_pg(PER_TEST)),
        },
        "per test, redis_client, local (ms)": {
            "ours": per_test(suites.ours_redis(PER_TEST)),
            "pytest-redis": per_test(suites.pytest_redis(PER_TEST, REDIS)),
            "floor: raw SET + GET": per_test(suites.floor_redis(PER_TEST, local["redis"])),
        },
        "fault proxy: added per round trip, p50 (µs)": {
            "ours": proxy_overhead(local["redis_endpoint"]),
        },
        f"-n 2, {BOUND_TESTS} DB-bound tests ({BOUND_SLEEP_MS} ms each), kept server: wall (s)": {
            "ours": wall(bound, "--integration-reuse", xdist=2),
            "floor: ours, serial": wall(bound, "--integration-reuse"),
        },
        "warm start to first test, local (s)": {
            "ours": first(suites.ours_pg(1), "--integration-reuse"),
            "ours, postgres_connection": first(suites.ours_pg_connection(1), "--integration-reuse"),
            "pytest-postgresql noproc": first(
                suites.pytest_postgresql(
                    1,
                    pg_ctl,
                    noproc={
                        "BENCH_PG_PORT": local["pg_port"],
                        "BENCH_PG_PASSWORD": local["pg_password"],
                    },
                )
            ),
            "floor: bare pytest": first(suites.bare(1)),
            "bare pytest + SQLAlchemy ORM and psycopg imports": first(suites.bare_with_imports()),
        },
    }
    if docker:
        cases |= _docker_cases(dock)
    return cases


def _docker_cases(dock: dict[str, Any]) -> dict[str, Case]:
    img = OURS_IMAGES
    three = ("postgres", "redis", "mysql")
    return {
        "cold start to first test, PG, docker (s)": {
            "ours": first(suites.ours_cold(("postgres",), img)),
            "pytest-databases": first(suites.pytest_databases_cold(("postgres",))),
            "pytest-mock-resources": first(suites.pytest_mock_resources_cold(("postgres",))),
            "testcontainers": first(suites.testcontainers_cold(("postgres",), img)),
        },
        "cold start to first test, PG + Redis + MySQL, docker (s)": {
            "ours": first(suites.ours_cold(three, img)),
            "pytest-databases": first(suites.pytest_databases_cold(three)),
            "testcontainers": first(suites.testcontainers_cold(three, img)),
            "ours, MySQL alone": first(suites.ours_cold(("mysql",), img)),
            "ours, Redis alone": first(suites.ours_cold(("redis",), img)),
            "ours, PG alone": first(suites.ours_cold(("postgres",), img)),
        },
        "per test, postgres_session, docker (ms)": {
            "ours": per_test(suites.ours_pg(PER_TEST, img["postgres"])),
            "hand-written recipe": per_test(suites.recipe_pg(PER_TEST, image=img["postgres"])),
            "pytest-databases": per_test(suites.pytest_databases_pg(PER_TEST)),
            "pytest-mock-resources": per_test(suites.pytest_mock_resources(PER_DB_TEST)),
            "floor: raw connection, BEGIN/ROLLBACK": per_test(
                suites.floor_pg(PER_TEST, dock["postgres"])
            ),
        },
        "per test, redis_client, docker (ms)": {
            "ours": per_test(suites.ours_redis(PER_TEST, img["redis"])),
            "pytest-databases + FLUSHDB": per_test(suites.pytest_databases_redis(PER_TEST)),
            "floor: raw SET + GET": per_test(suites.floor_redis(PER_TEST, dock["redis"])),
        },
        "-n 2, 60 DB tests, docker: wall (s)": {
            "ours": wall(suites.ours_pg(60, img["postgres"]), xdist=2, tool="ours"),
            "pytest-databases": wall(
                suites.pytest_databases_pg(60), xdist=2, tool="pytest-databases"
            ),
            "hand-written recipe": wall(
                suites.recipe_pg(60, image=img["postgres"]), xdist=2, tool="hand-written recipe"
            ),
        },
        "warm start to first test, docker (s)": {
            "ours": first(suites.ours_pg(1, img["postgres"]), "--integration-reuse"),
            "pytest-mock-resources, container started by `pmr`": pmr_prestarted(1),
            "floor: bare pytest": first(suites.bare(1)),
        },
    }
