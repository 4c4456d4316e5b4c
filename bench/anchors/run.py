"""Side by side with the peers: the same tiny suites through each tool, interleaved.

    nox -s bench-anchors [-- --reps 3 --only per-test]

Peers, each in its documented, idiomatic setup with its own default server settings:
pytest-postgresql (+ pytest-redis), pytest-databases, pytest-mock-resources, and
testcontainers with SQLAlchemy's join-an-external-transaction recipe written by hand.
Every suite runs in a fresh directory with plugin autoloading off and only its own
plugin loaded, so the tools never see each other. Repetitions are interleaved (every
case and tool once, then again), and the table shows medians, as ratios to ours and to
the floor of the case, because this machine is shared: compare within one run only.

The peers want official image names (``postgres:18``, ``redis:latest``…) and cannot
pull them here: those names are tagged onto the offline test images for the duration
of the run and untagged after. pytest-postgresql and pytest-redis start servers as the
current user and PostgreSQL refuses root: they run as the ``postgres`` user.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import suites
from suites import Suite

OURS_IMAGES = {
    "postgres": "pytest-integration-kit/postgres:15",
    "mysql": "pytest-integration-kit/mysql:10.11",
    "redis": "pytest-integration-kit/redis:7",
}
#: Official names the peers ask for, tagged onto our offline images during the run.
PEER_TAGS = {
    "postgres:18": "postgres",
    "postgres:9.6.10-alpine": "postgres",
    "redis:latest": "redis",
    "redis:5.0.7": "redis",
    "mysql:8.4": "mysql",
}
#: Our kept servers and warm data dirs for the bench only: never the user's.
CACHE_DIR = Path(tempfile.gettempdir()) / f"pik-anchors-cache-{os.getuid()}"
PER_TEST = 300
PER_DB_TEST = 60  # database-per-test tools
PG_CTL = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1:] or ["pg_ctl"]
REDIS = shutil.which("redis-server") or "redis-server"


@dataclass
class Result:
    first: float | None = None  # seconds from launch to the first test body
    per_test: float | None = None  # seconds per test, second test to last
    wall: float = 0.0
    containers: int | None = None
    error: str = ""


def _env(suite: Suite, directory: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INTEGRATION_", "PYTEST_", "TESTCONTAINERS_"))
    }
    env.update(
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        # A PYTHONPATH of the caller comes after (a worktree's src/ measured as is).
        PYTHONPATH=os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH")) if p),
        BENCH_OUT=str(directory / "out.json"),
        BENCH_FIRST=str(directory / "first.txt"),
        INTEGRATION_MISSING="fail",
        INTEGRATION_CACHE_DIR=str(CACHE_DIR),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(suite.env)
    return env


def run_suite(suite: Suite, *args: str, xdist: int = 0, count_containers: bool = False) -> Result:
    directory = Path(tempfile.mkdtemp(prefix="pik-anchor-"))
    try:
        for name, body in {**suite.files, "timing.py": suites.TIMING}.items():
            (directory / name).write_text(body)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "timing"]
        for plugin in suite.plugins:
            cmd += ["-p", plugin]
        if xdist:
            cmd += ["-p", "xdist.plugin", "-n", str(xdist)]
        cmd += [*suite.args, *args]
        env = _env(suite, directory)
        if suite.user:
            shutil.chown(directory, suite.user)
            for path in directory.iterdir():
                shutil.chown(path, suite.user)
            cmd = ["runuser", "-u", suite.user, "--", _python_for(suite.user), *cmd[1:]]
            env["HOME"] = str(directory)
            # The same CPython minor version, so this environment's packages import as is.
            env["PYTHONPATH"] += os.pathsep + os.pathsep.join(site.getsitepackages())
        since = time.time()
        started = time.time()
        # Output goes to a file, not a pipe: a server a tool leaves running (a kept
        # server, a daemonised redis) would hold a pipe open after pytest exits.
        log_path = directory / "log.txt"
        with log_path.open("w") as log:
            try:
                done = subprocess.run(
                    cmd,
                    cwd=directory,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=900,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return Result(error="timed out after 900 s")
        result = Result(wall=time.time() - started)
        if done.returncode != 0:
            result.error = log_path.read_text()[-3000:].strip()
            return result
        first = directory / "first.txt"
        if first.exists():
            result.first = float(first.read_text()) - started
        out = directory / "out.json"
        if out.exists():
            data = json.loads(out.read_text())
            starts, ends = data["starts"], data["ends"]
            if len(starts) > 2:
                result.per_test = (max(ends) - sorted(starts)[1]) / (len(starts) - 1)
        if count_containers:
            result.containers = _containers_started(since, time.time())
        return result
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _python_for(user: str) -> str:
    """This interpreter if ``user`` may run it, else the system's of the same version.

    A pyenv interpreter under /root cannot be run by another user.
    """
    probe = subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-c", ""], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit(f"no {version} that the user {user} can run: install Debian's {version}")


def _containers_started(since: float, until: float) -> int:
    events = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{until + 0.5:.3f}",
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--format",
            "{{.ID}}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return len({line for line in events.stdout.split() if line})


@contextlib.contextmanager
def peer_image_names() -> Iterator[None]:
    made = []
    for name, service in PEER_TAGS.items():
        present = subprocess.run(
            ["docker", "image", "inspect", name], capture_output=True, check=False
        )
        if present.returncode != 0:
            subprocess.run(["docker", "tag", OURS_IMAGES[service], name], check=True)
            made.append(name)
    try:
        yield
    finally:
        for name in made:
            subprocess.run(["docker", "rmi", name], capture_output=True, check=False)


@contextlib.contextmanager
def floor_servers(backend_name: str) -> Iterator[dict[str, str]]:
    """A PostgreSQL and a Redis of our own library, for floors, the recipe and noproc."""
    from pytest_integration_kit.backends.base import ServerOptions  # noqa: PLC0415
    from pytest_integration_kit.backends.docker import DockerBackend  # noqa: PLC0415
    from pytest_integration_kit.backends.local import LocalBackend  # noqa: PLC0415
    from pytest_integration_kit.services import spec_for  # noqa: PLC0415

    backend = DockerBackend() if backend_name == "docker" else LocalBackend()
    running = []
    try:
        info: dict[str, str] = {}
        for service in ("postgres", "redis"):
            server = backend.start(
                ServerOptions(
                    spec=spec_for(service),
                    image=OURS_IMAGES[service],
                    startup_timeout=120,
                    session_id=f"anchors-{os.getpid()}",
                )
            )
            running.append(server)
            endpoint = server.endpoint
            info[service] = endpoint.url
            if service == "postgres":
                info["pg_port"] = str(endpoint.port)
                info["pg_password"] = endpoint.password or ""
        yield info
    finally:
        for server in running:
            server.stop()


def raw_cold_start() -> float:
    """The floor of a local cold start: initdb, start, first connection, as `postgres`."""
    bin_dir = Path(PG_CTL[0]).parent
    directory = Path(tempfile.mkdtemp(prefix="pik-anchor-raw-"))
    shutil.chown(directory, "postgres")
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    data = directory / "data"
    started = time.time()
    try:
        as_pg = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [
                *as_pg,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "--no-sync",
                "-U",
                "postgres",
                "--auth=trust",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_pg,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(directory / "log"),
                "-o",
                f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        import psycopg  # noqa: PLC0415

        psycopg.connect(host="127.0.0.1", port=int(port), user="postgres").close()
        return time.time() - started
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


# --- the cases ---------------------------------------------------------------------------

Case = dict[str, Callable[[], float | None]]


def _guarded(title: str, tool: str, measure: Callable[[], float | None]) -> float | None:
    """One measurement; a tool that fails is reported under the table, not fatal."""
    try:
        return measure()
    except Exception as exc:
        ERRORS[f"{title} / {tool}"] = f"{type(exc).__name__}: {exc}"
        return None


def _first(suite: Suite, *args: str) -> Callable[[], float | None]:
    return lambda: _measure(suite, "first", *args)


def _per_test(suite: Suite) -> Callable[[], float | None]:
    return lambda: _measure(suite, "per_test")


ERRORS: dict[str, str] = {}


def _measure(suite: Suite, what: str, *args: str, xdist: int = 0) -> float | None:
    result = run_suite(suite, *args, xdist=xdist)
    if result.error:
        raise RuntimeError(result.error)
    value = result.wall if what == "wall" else getattr(result, what)
    return None if value is None else float(value)


def build_cases(floors: dict[str, dict[str, str]], docker: bool) -> dict[str, Case]:
    pg_ctl = PG_CTL[0]
    both = ("postgres", "redis")
    local, dock = floors["local"], floors.get("docker", {})
    cases: dict[str, Case] = {
        "cold start to first test, PG, local (s)": {
            "ours": _first(suites.ours_cold(("postgres",))),
            "pytest-postgresql": _first(
                suites.pytest_postgresql_cold(("postgres",), pg_ctl, REDIS)
            ),
            "floor: raw initdb + start": raw_cold_start,
        },
        "cold start to first test, PG + Redis, local (s)": {
            "ours": _first(suites.ours_cold(both)),
            "pytest-postgresql + pytest-redis": _first(
                suites.pytest_postgresql_cold(both, pg_ctl, REDIS)
            ),
        },
        "per test, postgres_session, local (ms)": {
            "ours": _per_test(suites.ours_pg(PER_TEST)),
            "hand-written recipe": _per_test(suites.recipe_pg(PER_TEST, url=local["postgres"])),
            "pytest-postgresql": _per_test(suites.pytest_postgresql(PER_DB_TEST, pg_ctl)),
            "floor: raw connection, BEGIN/ROLLBACK": _per_test(
                suites.floor_pg(PER_TEST, local["postgres"])
            ),
            "floor: bare test": _per_test(suites.bare(PER_TEST)),
        },
        "per test, redis_client, local (ms)": {
            "ours": _per_test(suites.ours_redis(PER_TEST)),
            "pytest-redis": _per_test(suites.pytest_redis(PER_TEST, REDIS)),
            "floor: raw SET + GET": _per_test(suites.floor_redis(PER_TEST, local["redis"])),
        },
        "warm start to first test, local (s)": {
            "ours": _first(suites.ours_pg(1), "--integration-reuse"),
            "pytest-postgresql noproc": _first(
                suites.pytest_postgresql(
                    1,
                    pg_ctl,
                    noproc={
                        "BENCH_PG_PORT": local["pg_port"],
                        "BENCH_PG_PASSWORD": local["pg_password"],
                    },
                )
            ),
            "floor: bare pytest": _first(suites.bare(1)),
        },
    }
    if docker:
        img = OURS_IMAGES
        three = ("postgres", "redis", "mysql")
        cases |= {
            "cold start to first test, PG, docker (s)": {
                "ours": _first(suites.ours_cold(("postgres",), img)),
                "pytest-databases": _first(suites.pytest_databases_cold(("postgres",))),
                "pytest-mock-resources": _first(suites.pytest_mock_resources_cold(("postgres",))),
                "testcontainers": _first(suites.testcontainers_cold(("postgres",), img)),
            },
            "cold start to first test, PG + Redis + MySQL, docker (s)": {
                "ours": _first(suites.ours_cold(three, img)),
                "pytest-databases": _first(suites.pytest_databases_cold(three)),
            },
            "per test, postgres_session, docker (ms)": {
                "ours": _per_test(suites.ours_pg(PER_TEST, img["postgres"])),
                "hand-written recipe": _per_test(suites.recipe_pg(PER_TEST, image=img["postgres"])),
                "pytest-databases": _per_test(suites.pytest_databases_pg(PER_TEST)),
                "pytest-mock-resources": _per_test(suites.pytest_mock_resources(PER_DB_TEST)),
                "floor: raw connection, BEGIN/ROLLBACK": _per_test(
                    suites.floor_pg(PER_TEST, dock["postgres"])
                ),
            },
            "per test, redis_client, docker (ms)": {
                "ours": _per_test(suites.ours_redis(PER_TEST, img["redis"])),
                "pytest-databases + FLUSHDB": _per_test(suites.pytest_databases_redis(PER_TEST)),
                "floor: raw SET + GET": _per_test(suites.floor_redis(PER_TEST, dock["redis"])),
            },
            "-n 2, 60 DB tests, docker: wall (s)": {
                "ours": lambda: _measure(suites.ours_pg(60, img["postgres"]), "wall", xdist=2),
                "pytest-databases": lambda: _measure(
                    suites.pytest_databases_pg(60), "wall", xdist=2
                ),
                "hand-written recipe": lambda: _measure(
                    suites.recipe_pg(60, image=img["postgres"]), "wall", xdist=2
                ),
                "floor: ours, serial": lambda: _measure(
                    suites.ours_pg(60, img["postgres"]), "wall"
                ),
            },
            "warm start to first test, docker (s)": {
                "ours": _first(suites.ours_pg(1, img["postgres"]), "--integration-reuse"),
                "floor: bare pytest": _first(suites.bare(1)),
            },
        }
    return cases


def _kept_remove() -> None:
    subprocess.run(
        [sys.executable, "-m", "pytest_integration_kit", "kept", "remove"],
        env={**os.environ, "INTEGRATION_CACHE_DIR": str(CACHE_DIR)},
        capture_output=True,
        check=False,
        timeout=300,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default="", help="run the cases whose title contains this")
    options = parser.parse_args()
    docker = subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    started = time.time()
    with contextlib.ExitStack() as stack:
        if docker:
            stack.enter_context(peer_image_names())
        floors = {"local": stack.enter_context(floor_servers("local"))}
        if docker:
            floors["docker"] = stack.enter_context(floor_servers("docker"))
        cases = {k: v for k, v in build_cases(floors, docker).items() if options.only in k}
        # One untimed round primes what every tool caches by default (warm data dirs,
        # templates, kept servers for the warm cases), so each repetition is alike.
        for title, tools in cases.items():
            for tool, measure in tools.items():
                _guarded(title, tool, measure)
        for rep in range(options.reps):
            for title, tools in cases.items():
                for tool, measure in tools.items():
                    value = _guarded(title, tool, measure)
                    if value is not None:
                        samples[title][tool].append(value)
            print(
                f"repetition {rep + 1}/{options.reps} done at {time.time() - started:.0f} s",
                file=sys.stderr,
            )
        _kept_remove()
    print(render(samples))
    for key, error in ERRORS.items():
        print(f"\n<details><summary>failed: {key}</summary>\n\n```\n{error}\n```\n</details>")
    return 0


def render(samples: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| case | tool | median | x ours | x floor | n |", "|---|---|---|---|---|---|"]
    for title, tools in samples.items():
        scale = 1000.0 if title.endswith("(ms)") else 1.0
        medians = {tool: statistics.median(v) for tool, v in tools.items() if v}
        ours = medians.get("ours")
        floor = next((m for t, m in medians.items() if t.startswith("floor")), None)
        for tool, median in medians.items():
            x_ours = f"{median / ours:.2f}" if ours else "—"
            x_floor = f"{median / floor:.2f}" if floor else "—"
            lines.append(
                f"| {title} | {tool} | {median * scale:.3g} | {x_ours} | {x_floor} | "
                f"{len(tools[tool])} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
