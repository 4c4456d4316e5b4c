"""Benchmark of the lifecycle: what starting, reusing and sharing servers costs a run.

Three tables, in one run, per backend (docker when the engine and the offline test
images are there, local always):

1. Time to the first test of a user's project using PostgreSQL, MySQL and Redis: from
   pytest's session start to the first test body, cold (nothing cached) vs a warm local
   data dir vs a kept server attached with ``--integration-reuse``. Floor: cold.
   Target: reuse ≤ 0.2 x cold.
2. Three services started one after the other vs all at once (a ServerSet's parallel
   start), next to the slowest single one; for local also from warm data dirs.
   Floor: the slowest single service. Target: parallel ≤ 1.2 x the slowest.
3. A DB-bound suite (each test writes rows and waits on the server) run serially vs
   with ``-n 2`` (one server shared by both workers). Floor: serial.

Run with ``nox -s bench`` or ``python bench/bench_lifecycle.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_integration_kit.backends import default_backends
from pytest_integration_kit.lifecycle.kept import KeptServers
from pytest_integration_kit.lifecycle.requests import ServerRequest
from pytest_integration_kit.lifecycle.servers import ServerSet
from pytest_integration_kit.settings import resolve_settings

SERVICES = ("postgres", "mysql", "redis")
TEST_IMAGES = {
    "postgres": "pytest-integration-kit/postgres:15",
    "mysql": "pytest-integration-kit/mysql:10.11",
    "redis": "pytest-integration-kit/redis:7",
}
ROUNDS = 3

TIMING_CONFTEST = """
import json, os, time
import pytest

def pytest_sessionstart(session):
    session.config._bench_start = time.time()

@pytest.fixture
def first_test_mark(request):
    path = os.environ["BENCH_OUT"]
    if not os.path.exists(path):
        with open(path, "w") as out:
            json.dump({"to_first_test": time.time() - request.config._bench_start}, out)
"""

FIRST_TEST = """
def test_first(postgres_server, mysql_server, redis_server, first_test_mark):
    assert postgres_server.port and mysql_server.port and redis_server.port
"""

DB_BOUND_SUITE = """
import os, psycopg, pytest

TABLE = "t_" + os.environ.get("PYTEST_XDIST_WORKER", "main")

@pytest.mark.parametrize("n", range(60))
def test_db(postgres_server, n):
    with psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                         user=postgres_server.user, password=postgres_server.password,
                         dbname=postgres_server.database, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (n int, body text)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {TABLE} VALUES (%s, %s)",
                            [(i, "x" * 100) for i in range(200)])
        conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        conn.execute("SELECT pg_sleep(0.1)")
"""


def docker_ready() -> bool:
    try:
        import docker  # noqa: PLC0415

        client = docker.from_env(timeout=5)
        for image in TEST_IMAGES.values():
            client.images.get(image)
    except Exception:
        return False
    return True


def backend_env(backend: str, cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATION_")}
    env["INTEGRATION_BACKEND"] = backend
    env["INTEGRATION_MISSING"] = "fail"
    env["INTEGRATION_CACHE_DIR"] = str(cache_dir)
    for service, image in TEST_IMAGES.items():
        env[f"INTEGRATION_{service.upper()}_IMAGE"] = image
    return env


def new_cache() -> Path:
    path = Path(tempfile.mkdtemp(prefix="pik-bench-cache-"))
    path.chmod(0o711)  # servers run as their own users when we are root
    return path


def drop_cache(cache_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pytest_integration_kit", "kept", "remove"],
        env={**os.environ, "INTEGRATION_CACHE_DIR": str(cache_dir)},
        capture_output=True,
        check=False,
    )
    shutil.rmtree(cache_dir, ignore_errors=True)


def project(tests: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="pik-bench-project-"))
    (root / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (root / "conftest.py").write_text(TIMING_CONFTEST)
    (root / "test_bench.py").write_text(tests)
    return root


def run_pytest(root: Path, env: dict[str, str], *args: str) -> tuple[float, float]:
    """(seconds to the first test, wall seconds of the whole run)."""
    out = root / "timing.json"
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            *args,
        ],
        cwd=root,
        env={**env, "BENCH_OUT": str(out)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"pytest failed in {root}:\n{result.stdout}\n{result.stderr}")
    first = json.loads(out.read_text())["to_first_test"] if out.exists() else float("nan")
    return first, wall


def table(title: str, rows: list[tuple[str, float, float, str]]) -> None:
    print(f"\n{title}")
    print(f"  {'case':<44} {'seconds':>9} {'x floor':>9}  target")
    for name, seconds, ratio, target in rows:
        print(f"  {name:<44} {seconds:>9.3f} {ratio:>9.2f}  {target}".rstrip())


def first_test_rows(backend: str) -> list[tuple[str, float, float, str]]:
    root = project(FIRST_TEST)
    cold_runs, warm_dir_runs, reuse_runs = [], [], []
    try:
        for _ in range(ROUNDS):
            cache = new_cache()
            env = backend_env(backend, cache)
            try:
                cold_runs.append(run_pytest(root, env)[0])
                if backend == "local":
                    warm_dir_runs.append(run_pytest(root, env)[0])
                run_pytest(root, env, "--integration-reuse")  # keeps the servers
                reuse_runs.append(run_pytest(root, env, "--integration-reuse")[0])
            finally:
                drop_cache(cache)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cold = statistics.median(cold_runs)
    rows = [(f"{backend}: cold (nothing cached)", cold, 1.0, "floor")]
    if warm_dir_runs:
        warm = statistics.median(warm_dir_runs)
        rows.append((f"{backend}: warm data dir (no reuse)", warm, warm / cold, ""))
    reuse = statistics.median(reuse_runs)
    rows.append((f"{backend}: kept server attached (reuse)", reuse, reuse / cold, "≤ 0.20"))
    return rows


def start_rows(backend: str, *, warm: bool = False) -> list[tuple[str, float, float, str]]:
    """Singles, serial and parallel starts; ``warm``: local servers copy cached data dirs."""
    settings = resolve_settings(
        cli={"backend": backend, **{f"{s}_image": TEST_IMAGES[s] for s in SERVICES}}, ini={}
    )
    backends = default_backends()
    cache = new_cache()
    kept = KeptServers(cache) if warm else None
    label = f"{backend}, warm data dirs" if warm else backend
    if warm:  # fill the cache first
        for service in SERVICES:
            servers = ServerSet(settings, session_id="benchfill", backends=backends, kept=kept)
            servers.get(ServerRequest(service))
            servers.stop_all()
    singles: dict[str, list[float]] = {s: [] for s in SERVICES}
    serial_runs, parallel_runs = [], []
    for _ in range(ROUNDS):
        # Serially: each service on its own, one after the other (stops not counted).
        serial = 0.0
        for service in SERVICES:
            servers = ServerSet(settings, session_id="benchserial", backends=backends, kept=kept)
            started = time.perf_counter()
            servers.get(ServerRequest(service))
            took = time.perf_counter() - started
            singles[service].append(took)
            serial += took
            servers.stop_all()
        serial_runs.append(serial)
        # In parallel, as after collection.
        servers = ServerSet(settings, session_id="benchparallel", backends=backends, kept=kept)
        started = time.perf_counter()
        requests = [ServerRequest(s) for s in SERVICES]
        servers.start_all(requests)
        for request in requests:
            servers.get(request)
        parallel_runs.append(time.perf_counter() - started)
        servers.stop_all()
    shutil.rmtree(cache, ignore_errors=True)
    single = {s: statistics.median(t) for s, t in singles.items()}
    slowest = max(single.values())
    rows = [
        (f"{label}: {s} alone", t, t / slowest, "floor" if t == slowest else "")
        for s, t in single.items()
    ]
    serial = statistics.median(serial_runs)
    parallel = statistics.median(parallel_runs)
    rows.append((f"{label}: three, serially", serial, serial / slowest, ""))
    rows.append((f"{label}: three, in parallel", parallel, parallel / slowest, "≤ 1.20"))
    return rows


def xdist_rows(backend: str) -> list[tuple[str, float, float, str]]:
    root = project(DB_BOUND_SUITE)
    cache = new_cache()
    env = backend_env(backend, cache)
    serial_runs, parallel_runs = [], []
    try:
        # Servers kept across the rounds: the rows compare running tests, not starting.
        run_pytest(root, env, "--integration-reuse")
        for _ in range(2):
            serial_runs.append(run_pytest(root, env, "--integration-reuse")[1])
            parallel_runs.append(run_pytest(root, env, "--integration-reuse", "-n", "2")[1])
    finally:
        drop_cache(cache)
        shutil.rmtree(root, ignore_errors=True)
    serial = statistics.median(serial_runs)
    parallel = statistics.median(parallel_runs)
    return [
        (f"{backend}: 60 DB-bound tests, serial", serial, 1.0, "floor"),
        (f"{backend}: 60 DB-bound tests, -n 2", parallel, parallel / serial, "< 1"),
    ]


def main() -> int:
    backends = ["local"] + (["docker"] if docker_ready() else [])
    print(f"bench_lifecycle: backends {', '.join(backends)}; median of {ROUNDS} rounds")
    rows: list[tuple[str, float, float, str]] = []
    for backend in backends:
        rows += first_test_rows(backend)
    table("1. Time to the first test (pytest session start → first test body)", rows)
    rows = []
    for backend in backends:
        rows += start_rows(backend)
    rows += start_rows("local", warm=True)
    table("2. Starting PostgreSQL + MySQL + Redis", rows)
    rows = []
    for backend in backends:
        rows += xdist_rows(backend)
    table("3. A DB-bound suite, serial vs -n 2 (wall time of the run)", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
