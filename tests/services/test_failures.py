"""Failure paths: each says what was tried and how to fix it, and leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pytest_integration_kit.backends.local import WORKDIR_PREFIX

PG_TEST = """
def test_pg(postgres_server):
    assert postgres_server.port
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio", *args)


@pytest.fixture
def server_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TMPDIR of its own for the inner run, traversable by the server's user."""
    path = Path(tempfile.mkdtemp(prefix="pik-failure-test-"))
    path.chmod(0o755)
    monkeypatch.setenv("TMPDIR", str(path))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def server_dirs(tmpdir: Path) -> list[Path]:
    """The local backend's server directories left in ``tmpdir``."""
    return [p for p in tmpdir.iterdir() if p.name.startswith(WORKDIR_PREFIX)]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if text in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


def test_docker_engine_unreachable_fails_in_strict_mode(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    pytester.makepyfile(PG_TEST)
    result = run(pytester, "--integration-backend=docker", "--integration-missing=fail")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*PostgreSQL unavailable: the Docker engine did not answer at tcp://127.0.0.1:9*",
            "*integration_backend=docker was chosen (from cli), so it must run*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_docker_engine_unreachable_skips_with_the_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    pytester.makepyfile(PG_TEST)
    result = run(pytester, "-rs", "--integration-backend=docker", "--integration-missing=skip")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*Docker engine did not answer*INTEGRATION_BACKEND*"])


def test_auto_falls_back_to_local_when_docker_is_unreachable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    pytester.makepyfile(PG_TEST)
    result = run(pytester, "--integration-backend=auto", "--integration-missing=fail")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["postgres*local*PostgreSQL*ready in*"])


def test_auto_with_nothing_available_says_what_it_tried(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    pytester.makepyfile(PG_TEST)
    result = run(
        pytester, "-rs", "--integration-missing=skip", f"--integration-postgres-bin-dir={tmp_path}"
    )
    result.assert_outcomes(skipped=1)
    out = result.stdout.str()
    assert "integration_backend=auto tried docker, then local" in out
    assert "docker: the Docker engine did not answer" in out
    assert "local: no PostgreSQL server binaries" in out


def test_local_binaries_missing_names_the_setting(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(PG_TEST)
    result = run(
        pytester,
        "--integration-backend=local",
        "--integration-missing=fail",
        f"--integration-postgres-bin-dir={tmp_path}",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*no PostgreSQL server binaries (postgres, initdb) found; looked in {tmp_path}*"]
    )
    assert "integration_postgres_bin_dir / INTEGRATION_POSTGRES_BIN_DIR" in result.stdout.str()


@pytest.mark.parametrize("service", ["postgres", "mysql", "redis"])
def test_url_backend_without_url_names_the_setting(pytester: pytest.Pytester, service: str) -> None:
    pytester.makepyfile(f"def test_it({service}_server):\n    pass\n")
    result = run(pytester, "--integration-backend=url", "--integration-missing=fail")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert f"integration_{service}_url (ini)" in out
    assert f"INTEGRATION_{service.upper()}_URL (env)" in out


def test_port_taken_is_a_clear_error_and_leaves_nothing(
    pytester: pytest.Pytester, server_tmpdir: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pytester.makeconftest(
            "from pytest_integration_kit import postgres_server_factory\n"
            f"pg_fixed = postgres_server_factory(backend='local', port={port})\n"
        )
        pytester.makepyfile("def test_it(pg_fixed):\n    pass\n")
        result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*port {port} on 127.0.0.1 is already in use*"])
    assert server_dirs(server_tmpdir) == []


class SilentServer:
    """Accepts TCP connections and never says a word: a server that never gets ready."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_server_that_never_gets_ready_times_out_with_the_last_probe_error(
    pytester: pytest.Pytester,
) -> None:
    silent = SilentServer()
    try:
        pytester.makepyfile("def test_it(redis_server):\n    pass\n")
        result = run(
            pytester,
            "--integration-backend=url",
            "--integration-startup-timeout=1",
            f"--integration-redis-url=redis://:pw@127.0.0.1:{silent.port}/0",
        )
    finally:
        silent.close()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*was not ready after 1 s (setting integration_startup_timeout)*", "*Last probe error: *"]
    )


def test_local_server_that_never_listens_times_out_shows_its_log_and_leaves_nothing(
    pytester: pytest.Pytester, server_tmpdir: Path
) -> None:
    # A redis-server that boots forever: real process handling, a server that never answers.
    bin_dir = Path(tempfile.mkdtemp(prefix="pik-slow-bin-"))
    try:
        bin_dir.chmod(0o755)
        fake = bin_dir / "redis-server"
        fake.write_text("#!/bin/sh\necho 'still loading the dataset'\nexec sleep 987\n")
        fake.chmod(0o755)
        pytester.makepyfile("def test_it(redis_server):\n    pass\n")
        result = run(
            pytester,
            "--integration-backend=local",
            "--integration-startup-timeout=1",
            f"--integration-redis-bin-dir={bin_dir}",
        )
    finally:
        subprocess.run(["rm", "-rf", str(bin_dir)], check=False)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*Redis (local, *) was not ready after 1 s*",
            "*Last probe error: ConnectionError*",
            "*Server log (tail):*",
            "*still loading the dataset*",
        ]
    )
    assert server_dirs(server_tmpdir) == []
    assert processes_mentioning("sleep 987") == []


def session_containers(image: str) -> list[str]:
    """Containers created from the tag ``image`` itself (``ancestor=`` would also match
    every container of an image built on the same base: other sessions' servers)."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"ancestor={image}", "--format", "{{.ID}} {{.Image}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] == [image]]


@pytest.mark.usefixtures("docker_available")
def test_docker_container_that_exits_reports_its_log_and_is_removed(
    pytester: pytest.Pytester,
) -> None:
    # The base image has no postgres on PATH: the container cannot start. A tag of
    # our own tells our containers from anyone else's.
    image = f"pytest-integration-kit/base:exits-{os.getpid()}"
    subprocess.run(["docker", "tag", "pytest-integration-kit/base:bookworm", image], check=True)
    try:
        pytester.makepyfile(PG_TEST)
        result = run(
            pytester, "--integration-backend=docker", f"--integration-postgres-image={image}"
        )
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(
            [f"*PostgreSQL (docker, {image}) failed to start:*postgres*not found*"]
        )
        assert "During handling of the above exception" not in result.stdout.str()
        assert session_containers(image) == []
    finally:
        subprocess.run(["docker", "rmi", image], capture_output=True, check=False)


@pytest.mark.usefixtures("docker_available")
def test_docker_image_absent_and_unpullable_names_the_setting(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(redis_server):\n    pass\n")
    result = run(
        pytester,
        "--integration-backend=docker",
        "--integration-missing=fail",
        "--integration-redis-image=pytest-integration-kit/absent:1",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the image pytest-integration-kit/absent:1 is not present and could not be pulled*",
        ]
    )
    assert "integration_redis_image / INTEGRATION_REDIS_IMAGE" in result.stdout.str()


def test_missing_driver_names_the_extra_at_once_and_leaves_nothing(
    pytester: pytest.Pytester, server_tmpdir: Path
) -> None:
    # As if redis-py were not installed: importing it fails in the inner run.
    pytester.makeconftest("import sys\nsys.modules['redis'] = None\n")
    pytester.makepyfile("def test_it(redis_server):\n    pass\n")
    # An error, not a skip, even with integration_missing=skip: installing it is the fix.
    result = run(pytester, "-rs", "--integration-backend=local", "--integration-missing=skip")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "Redis needs the Python driver 'redis'" in out
    assert "pip install 'pytest-integration-kit[redis]'" in out
    # Not after the 60 s start-up timeout: a missing driver does not appear by waiting.
    assert "was not ready" not in result.stdout.str()
    assert server_dirs(server_tmpdir) == []
