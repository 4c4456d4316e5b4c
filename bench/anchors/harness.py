"""Running one suite in a fresh project, and the servers the floors stand on.

Shared by the side-by-side run (``run.py``), its cases (``cases.py``) and the other
benchmarks that reuse a suite (``bench_warm_start.py``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import suites
from suites import Suite

if TYPE_CHECKING:
    from collections.abc import Iterator

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
        # Byte-code is written and used, as on a user's machine: without it every run
        # compiles every module of every tool again (this machine sets the variable).
        and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
        # A PYTHONPATH of the caller comes after (a worktree's src/ measured as is).
        PYTHONPATH=os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH")) if p),
        BENCH_OUT=str(directory / "out.json"),
        BENCH_FIRST=str(directory / "first.txt"),
        INTEGRATION_MISSING="fail",
        INTEGRATION_CACHE_DIR=str(CACHE_DIR),
    )
    env.update(suite.env)
    return env


def run_suite(suite: Suite, *args: str, xdist: int = 0, count_containers: bool = False) -> Result:
    reuse = "--integration-reuse" in args
    directory = _project_dir(suite, reuse=reuse)
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
            returncode, ended = _run_timed(cmd, cwd=directory, env=env, log=log)
        if returncode is None:
            return Result(error=f"timed out after {RUN_TIMEOUT} s")
        result = Result(wall=ended - started)
        if returncode != 0:
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
        shutil.rmtree(directory if not reuse else directory / "__pycache__", ignore_errors=True)


#: Seconds one suite's run may take.
RUN_TIMEOUT = 900


def _run_timed(
    cmd: list[str], *, cwd: Path, env: dict[str, str], log: Any
) -> tuple[int | None, float]:
    """Run ``cmd``; its exit status (None when it ran past :data:`RUN_TIMEOUT` and was
    killed) and when it ended.

    A blocking wait, the bound kept by a timer: ``subprocess.run(timeout=…)`` polls,
    sleeping up to 50 ms a turn, and so rounded every wall time measured here up to the
    next such step (the no-server case's two rows came out equal or 50 ms apart).
    """
    process = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        process.kill()

    timer = threading.Timer(RUN_TIMEOUT, kill)
    timer.start()
    try:
        returncode = process.wait()
        ended = time.time()
    finally:
        timer.cancel()
    return (None if killed.is_set() else returncode), ended


def _project_dir(suite: Suite, *, reuse: bool) -> Path:
    """A fresh directory; for ``--integration-reuse`` the suite's own, every time: a
    kept server belongs to a project directory, and a new one per run would start (and
    keep) a server per run."""
    if not reuse:
        return Path(tempfile.mkdtemp(prefix="pik-anchor-"))
    # Its settings too: the docker case's suite differs from the local one only by its
    # image, and in one directory it would attach the local case's kept server (a kept
    # server belongs to the project's slot, whichever backend auto then picked).
    identity = (sorted(suite.files.items()), sorted(suite.env.items()))
    key = hashlib.sha256(repr(identity).encode()).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / f"pik-anchor-reuse-{key}"
    directory.mkdir(exist_ok=True)
    for stale in ("first.txt", "out.json", "log.txt"):
        (directory / stale).unlink(missing_ok=True)
    return directory


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
def floor_servers(backend_name: str) -> Iterator[dict[str, Any]]:
    """A PostgreSQL, a Redis and a MySQL of our own library: the floors, the recipe, noproc.

    Each service's URL by name; ``pg_port``/``pg_password`` for pytest-postgresql noproc,
    ``mysql_connect`` (JSON of ``pymysql.connect`` arguments) for the raw MySQL floor,
    and ``redis_endpoint`` (the Endpoint) for the fault proxy's floor.
    """
    from pytest_integration_kit.backends.base import ServerOptions  # noqa: PLC0415
    from pytest_integration_kit.backends.docker import DockerBackend  # noqa: PLC0415
    from pytest_integration_kit.backends.local import LocalBackend  # noqa: PLC0415
    from pytest_integration_kit.services import spec_for  # noqa: PLC0415

    backend = DockerBackend() if backend_name == "docker" else LocalBackend()
    running = []
    try:
        info: dict[str, Any] = {}
        for service in ("postgres", "redis", "mysql"):
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
            elif service == "mysql":
                info["mysql_connect"] = json.dumps(
                    {
                        "host": endpoint.host,
                        "port": endpoint.port,
                        "user": endpoint.user,
                        "password": endpoint.password,
                        "database": endpoint.database,
                    }
                )
            else:
                info["redis_endpoint"] = endpoint
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


def kept_remove() -> None:
    """Remove the kept servers of the bench's own cache directory (never the user's)."""
    subprocess.run(
        [sys.executable, "-m", "pytest_integration_kit", "kept", "remove"],
        env={**os.environ, "INTEGRATION_CACHE_DIR": str(CACHE_DIR)},
        capture_output=True,
        check=False,
        timeout=300,
    )
