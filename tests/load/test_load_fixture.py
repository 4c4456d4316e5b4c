"""The load fixture on each backend: an app through app_client and Redis through
redis_client, budgets kept and missed with the figures in the message, errors counted,
the servers' resources sampled, the summary table and its history across two runs."""

from __future__ import annotations

import json

import pytest
from load_project import run, write_project

TESTS = """
import asyncio
import os

import pytest

BACKEND = os.environ["INTEGRATION_BACKEND"]


def test_app_budget_kept(load, app_client, redis_client):
    result = load(lambda: app_client.get("/items").raise_for_status(), n=120, concurrency=8,
                  warmup=5, name="GET /items")
    result.assert_budget(p95_ms=60_000, p99_ms=60_000, min_rps=0.5)
    assert (result.n, result.concurrency, result.mode, result.errors) == (120, 8, "threads", 0)
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert result.rps > 0 and result.seconds > 0
    assert int(redis_client.get("hits")) == 125  # every call reached the app (warm-up too)
    resources = result.resources
    assert sorted(resources.services()) == ["postgres", "redis"], resources
    pg = resources["postgres"]
    assert pg.backend == BACKEND
    if BACKEND == "url":
        assert pg.cpu_percent is None and pg.memory_mb is None and pg.connections is None
        assert "url backend" in pg.note
    else:
        assert pg.note == "", pg.note
        assert pg.samples >= 2
        assert pg.cpu_percent is not None and pg.cpu_percent >= 0  # clock ticks: may be 0
        assert 1 < pg.memory_mb < 4000
        assert pg.connections >= 1  # the app's pool, at least
        assert resources["redis"].memory_mb > 0
    print("RESOURCES", resources.describe())


async def test_async_budget_kept(load, app_async_client):
    result = await load.run_async(lambda: app_async_client.get("/items"), n=60, concurrency=8)
    result.assert_budget(p95_ms=60_000, min_rps=0.5)
    assert (result.mode, result.errors, result.name) == ("asyncio", 0, "load 1")


def test_coroutine_in_a_fresh_loop(load, redis_client):
    async def ping():
        await asyncio.sleep(0.001)
        redis_client.incr("pings")

    result = load(ping, n=40, concurrency=4, name="ping")
    assert result.mode == "asyncio" and int(redis_client.get("pings")) == 40


def test_budget_missed(load, redis_client):
    result = load(lambda: redis_client.incr("n"), n=50, concurrency=2, name="incr")
    result.assert_budget(p95_ms=0.000001, min_rps=10**9)


def test_errors_counted(load, app_client):
    result = load(lambda: app_client.get("/broken"), n=20, concurrency=4, name="broken")
    assert result.errors == 20
    assert "the handler failed" in result.first_error
    result.assert_budget(max_errors=20)  # allowed
    result.assert_budget(p95_ms=60_000)  # errors default to 0 allowed
"""


def _figures(pytester: pytest.Pytester) -> dict[str, dict[str, object]]:
    path = pytester.path / ".pytest_cache" / "v" / "pytest_integration_kit" / "load"
    blocks = json.loads(path.read_text())["blocks"]
    return {key.rpartition("::")[2]: value for key, value in blocks.items()}


def test_load_blocks_on_a_backend(pytester: pytest.Pytester, backend_env: str) -> None:
    write_project(pytester)
    pytester.makepyfile(test_perf=TESTS)
    result = run(pytester, "-s", "-m", "slow")  # the load fixture marks its tests slow
    result.assert_outcomes(passed=3, failed=2)
    # Every measured figure against its budget, the passing ones too.
    result.stdout.re_match_lines(
        [
            r"E +AssertionError: load 'incr' missed its budget \(n=50 concurrency=2 threads .*",
            r"E +p95 [\d.]+ ms \(budget <= 1e-06 ms\): MISSED",
            r"E +rps [\d.]+ \(budget >= 1e\+09\): MISSED",
            r"E +errors 0 \(budget <= 0\): ok",
        ]
    )
    result.stdout.re_match_lines(
        [
            r"E +AssertionError: load 'broken' missed its budget .* errors 20\):",
            r"E +p95 [\d.]+ ms \(budget <= 60000 ms\): ok",
            r"E +errors 20 \(budget <= 0\): MISSED",
            r"E +first error: RuntimeError\('the handler failed'\)",
        ]
    )
    result.stdout.re_match_lines([r".*RESOURCES postgres .*; redis .*"])
    # The summary: one line per block, new on a first run; the history saved.
    result.stdout.re_match_lines(
        [
            r"=+ integration load =+",
            r"test +name +n +conc +rps +p50 ms +p95 ms +p99 ms +budget +vs last run",
            r"test_perf.py::test_app_budget_kept +GET /items +120 +8 +[\d.]+ .* ok +new",
            r"test_perf.py::test_async_budget_kept +load 1 +60 +8 .* ok +new",
            r"test_perf.py::test_coroutine_in_a_fresh_loop +ping +40 +4 .* no budget +new",
            r"test_perf.py::test_budget_missed +incr +50 +2 .* MISSED: p95 .* > 1e-06, "
            r"rps .* < 1e\+09 +new",
            r"test_perf.py::test_errors_counted +broken +20 +4 .* MISSED: errors 20 > 0 "
            r"\(errors: 20\) +new",
            r"history saved in .*pytest_integration_kit/load",
        ]
    )
    first = _figures(pytester)
    assert first["GET /items"]["previous"] is None
    assert first["GET /items"]["latest"]["n"] == 120
    # A second run compares with the first, block by block.
    result = run(pytester, "-k", "app_budget_kept or budget_missed", "-v")
    result.assert_outcomes(passed=1, failed=1, deselected=3)
    result.stdout.re_match_lines(
        [
            r"test_perf.py::test_app_budget_kept +GET /items .* ok +rps [+-]\d+%, p95 [+-]\d+%",
            r" +resources: postgres \w+: .*; redis \w+: .*",
            r"test_perf.py::test_budget_missed +incr .* rps [+-]\d+%, p95 [+-]\d+%",
        ]
    )
    second = _figures(pytester)
    assert second["GET /items"]["previous"] == first["GET /items"]["latest"]
    assert second["ping"] == first["ping"]  # not run this time: kept as it was


def test_selected_out_with_not_slow(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_quick="""
        def test_load(load):
            load(lambda: None, n=5)

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-m", "not slow")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.no_fnmatch_line("*integration load*")


XDIST_TESTS = """
import pytest


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_sizes(load, redis_client, size):
    load(lambda: redis_client.set("k", "x" * size), n=20, concurrency=2, name=f"SET {size}")
"""


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_blocks_of_every_worker_reach_the_summary(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings =\n    error\n"
    )
    pytester.makepyfile(test_sizes=XDIST_TESTS)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=4)
    for size in (1, 2, 3, 4):
        result.stdout.re_match_lines([rf"test_sizes.py::test_sizes\[{size}\] +SET {size} .* new"])
    assert sorted(_figures(pytester)) == ["SET 1", "SET 2", "SET 3", "SET 4"]


def test_figures_in_pytest_benchmark_extra_info(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_benchmark")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_bench="""
        def test_both(benchmark, load):
            benchmark(sum, range(100))
            load(lambda: sum(range(100)), n=30, concurrency=3, name="sum x3")
        """
    )
    result = run(pytester, "--benchmark-json=bench.json")
    result.assert_outcomes(passed=1)
    (bench,) = json.loads((pytester.path / "bench.json").read_text())["benchmarks"]
    block = bench["extra_info"]["load"]["sum x3"]
    assert (block["n"], block["concurrency"], block["errors"]) == (30, 3, 0)
    assert block["p95_ms"] >= block["p50_ms"] >= 0
