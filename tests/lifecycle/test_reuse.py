"""--integration-reuse: keep servers, attach on the next run, replace a mismatched or dead
one, and remove them all with the command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from user_project import Project, make_project, using_tests

from pytest_integration_kit.lifecycle.attached import (
    AttachedContainer,
    AttachedProcess,
    attach,
    docker_client,
)
from pytest_integration_kit.lifecycle.kept import REUSE_LABEL, KeptServers

ON_HOST = pytest.mark.parametrize("backend", ["docker", "local"])

MODELS = "import sqlalchemy\nmetadata = sqlalchemy.MetaData()\nother = sqlalchemy.MetaData()\n"


def _addresses(project: Project, since: int = 0) -> dict[str, str]:
    """Each service's one server, by address (docker's own addresses share a port)."""
    reports = project.reports()[since:]
    found: dict[str, set[str]] = {}
    for report in reports:
        found.setdefault(report["service"], set()).add(report["address"])
    assert all(len(addresses) == 1 for addresses in found.values()), found
    return {service: next(iter(addresses)) for service, addresses in found.items()}


def _kept(cache_dir: Path) -> dict[str, AttachedContainer | AttachedProcess]:
    servers = {}
    for record in KeptServers(cache_dir).all():
        server = attach(record)
        assert isinstance(server, (AttachedContainer, AttachedProcess))
        servers[record.service] = server
    return servers


def _kept_command(action: str, cache_dir: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pytest_integration_kit", "kept", action],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "INTEGRATION_CACHE_DIR": str(cache_dir)},
    )
    return result.stdout


@ON_HOST
def test_kept_servers_are_attached_by_the_next_run(
    backend_env: str, pytester: pytest.Pytester, cache_dir: Path
) -> None:
    project = make_project(pytester.path / "app", using_tests(count=2))
    first = project.run("--integration-reuse")
    assert first.returncode == 0, first.stdout
    assert first.stdout.count(", kept") == 3
    addresses = _addresses(project)
    kept = _kept(cache_dir)
    assert set(kept) == {"postgres", "mysql", "redis"}
    assert all(server.is_alive() for server in kept.values())
    if backend_env == "docker":
        labels = docker_client().containers.get(kept["postgres"].container_id).labels
        assert REUSE_LABEL in labels
    else:
        # Local kept servers keep their directory outside the session's temp dirs.
        assert all("pik-kept-" in str(s.handle["workdir"]) for s in kept.values())

    # The next run, with workers, attaches to the same servers: same addresses, data kept.
    seen = len(project.reports())
    second = project.run("--integration-reuse", "-n", "2")
    assert second.returncode == 0, second.stdout
    assert second.stdout.count("reused (kept)") == 3, second.stdout
    assert _addresses(project, since=seen) == addresses

    listing = _kept_command("list", cache_dir)
    assert listing.count("running") == 3

    # Removing them all leaves nothing running.
    assert "removed 3 kept server(s)" in _kept_command("remove", cache_dir)
    assert not any(server.is_alive() for server in kept.values())
    assert "no kept servers" in _kept_command("list", cache_dir)


@ON_HOST
def test_a_mismatched_or_dead_kept_server_is_replaced(
    backend_env: str, pytester: pytest.Pytester, cache_dir: Path
) -> None:
    project = make_project(
        pytester.path / "app",
        using_tests(count=1),
        ini="integration_schema = models:metadata\n",
    )
    (project.path / "models.py").write_text(MODELS)
    assert project.run("--integration-reuse", "-k", "postgres").returncode == 0
    (old,) = _kept(cache_dir).values()

    # Another schema is another configuration: the kept server is replaced.
    seen = len(project.reports())
    changed = project.run(
        "--integration-reuse", "-k", "postgres", "--integration-schema=models:other"
    )
    assert changed.returncode == 0, changed.stdout
    assert "reused" not in changed.stdout
    (new,) = _kept(cache_dir).values()
    assert _addresses(project, since=seen)["postgres"] == new.endpoint.address
    assert new.handle != old.handle  # another server (a container may get the same address)
    assert not old.is_alive()

    # A kept server that died is replaced too.
    if isinstance(new, AttachedContainer):
        docker_client().containers.get(new.container_id).kill()
    else:
        os.kill(new.pid, signal.SIGKILL)
    again = project.run(
        "--integration-reuse", "-k", "postgres", "--integration-schema=models:other"
    )
    assert again.returncode == 0, again.stdout
    assert "reused" not in again.stdout
    (newest,) = _kept(cache_dir).values()
    assert newest.is_alive()
    assert newest.endpoint.address != new.endpoint.address or newest.handle != new.handle


@ON_HOST
def test_without_reuse_nothing_is_kept(
    backend_env: str, pytester: pytest.Pytester, cache_dir: Path
) -> None:
    project = make_project(pytester.path / "app", using_tests(count=1))
    assert project.run("-k", "redis").returncode == 0
    assert KeptServers(cache_dir).all() == []


@pytest.fixture
def read_only_dir() -> Iterator[Path]:
    """A directory no one can write to, root included (a read-only tmpfs, or immutable)."""
    path = Path(tempfile.mkdtemp(prefix="pik-ro-"))
    undo: list[str] = []
    if os.geteuid() != 0:
        path.chmod(0o555)
    elif (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    ):
        undo = ["umount", str(path)]
    elif subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode:
        pytest.skip("no way to make a directory read-only for root here (mount, chattr)")
    else:
        undo = ["chattr", "-i", str(path)]
    yield path
    if undo:
        subprocess.run(undo, capture_output=True, check=False)
    path.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("where", ["itself", "below"])
def test_a_read_only_cache_dir_with_reuse_is_a_usage_error_at_start(
    pytester: pytest.Pytester,
    read_only_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    cache = read_only_dir if where == "itself" else read_only_dir / "cache"
    monkeypatch.setenv("INTEGRATION_CACHE_DIR", str(cache))
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    project = make_project(pytester.path / "app", using_tests(count=2))
    result = project.run("--integration-reuse")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "INTERNALERROR" not in result.stderr
    assert "Traceback" not in result.stderr
    assert f"integration_cache_dir: {cache} cannot be used" in result.stderr, result.stderr
    assert "integration_reuse records kept servers there" in result.stderr
    assert not project.reports()  # no test ran, no server started
    # Without reuse the same cache dir is no obstacle (the warm cache just stays cold).
    plain = project.run("-k", "postgres")
    assert plain.returncode == 0, plain.stdout
